"""The API's strictness: one JSON shape for refusals, whole numbers as plain digits, and
routes that refuse query parameters they do not take (or take twice) with 400."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from voe.web import models
from voe.web.guard import render

log = logging.getLogger("voe.web")

# Largest whole number a parameter may hold (offsets, cycles).
MAX_INTEGER = 2**31 - 1
# Query fields a request may carry at most.
MAX_QUERY_FIELDS = 20
_DIGITS = re.compile(r"[0-9]{1,10}")


class ApiError(Exception):
    """A request the API refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Answer(JSONResponse):
    """A JSON answer, indented like ``voe status --json``."""

    def render(self, content: Any) -> bytes:
        """The body."""
        return render(content)


def _digits(value: Any) -> Any:
    """Only plain decimal digits make a number here (no sign, no spaces, no ``1_0``)."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("expected a whole number")
    return value


Digits = BeforeValidator(_digits)
CycleQuery = Annotated[int | None, Query(ge=1, le=MAX_INTEGER, description="Only this cycle."),
                       Digits]


class StrictRoute(APIRoute):
    """A route that refuses query parameters it does not take, or takes once, with 400."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, checking the query's names first."""
        handler = super().get_route_handler()
        names = {param.alias for param in self.dependant.query_params}

        async def strict(request: Request) -> Response:
            fields = [name for name, _ in request.query_params.multi_items()]
            if len(fields) > MAX_QUERY_FIELDS:
                raise ApiError(400, f"more than {MAX_QUERY_FIELDS} query fields")
            for name in fields:
                if name not in names:
                    allowed = ", ".join(sorted(names)) or "none"
                    raise ApiError(400, f"unknown query parameter {name} (allowed: {allowed})")
                if fields.count(name) > 1:
                    raise ApiError(400, f"query parameter {name} given {fields.count(name)} "
                                        "times")
            try:
                return await handler(request)
            except (ApiError, HTTPException, RequestValidationError):
                raise  # answered by the app's handlers
            except Exception:
                log.exception("HTTP %s %s failed", request.method, request.url.path)
                return Answer({"error": "internal error; see the log"}, status_code=500)

        return strict


def refusal(description: str) -> dict[str, Any]:
    """An OpenAPI refusal: its description and the one JSON shape of every refusal."""
    return {"model": models.Error, "description": description}


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: refusal("Bad input (a parameter, or an unknown one)."),
    401: refusal("VOE_HTTP_TOKEN is set and the request lacks Authorization: Bearer TOKEN."),
    403: refusal("A browser request from another origin, or (without a token) a Host that "
                "is not loopback."),
    429: refusal("Too many wrong tokens from this address."),
    503: refusal("The ledger or store cannot be read, or the master did not answer in time."),
}
"""The refusals every protected endpoint may answer."""


def ok(model: type, description: str, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answers of an endpoint: its success, and every refusal."""
    return {status: {"model": model, "description": description}, **REFUSALS}
