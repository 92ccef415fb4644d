"""The master's and the sink's HTTP apps (FastAPI): typed routes, the OpenAPI document
generated from them, and refusals in one JSON shape.

Reads come from the ledger and store files through ``voe.cli.report`` (each call opens its
own connections; FastAPI runs these handlers in its worker threads); actions go to the
master's loop through ``voe.web.control`` and wait for its answer. Bad input is a 4xx
with ``{"error": "..."}``, never a traceback. ``voe.web.guard`` wraps both apps.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from voe import __version__
from voe.cli import fares, report
from voe.master.ledger import LedgerError
from voe.master.plan import Plan
from voe.settings import Settings
from voe.store import StoreError
from voe.web import models
from voe.web.control import COMMAND_TIMEOUT, CommandRefused, Control, UnknownJob
from voe.web.guard import Guard
from voe.web.strict import (
    MAX_INTEGER,
    REFUSALS,
    Answer,
    ApiError,
    CycleQuery,
    Digits,
    StrictRoute,
    ok,
    refusal,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("voe.web")

# Jobs listed per page at most, and by default.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
# Job ids listed per kind and cycle by /api/check unless asked otherwise.
DEFAULT_CHECK_LIMIT = 20
# Seconds an audit is reused: it reads the whole ledger and store, and every open
# dashboard asks for it.
AUDIT_TTL = 5.0
# The dashboard's files: URL path -> (file in voe/web/static, content type).
STATIC = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
def redacted_store(settings: Settings) -> str:
    """Where the sink stores, without a password (``VOE_STORE_URL`` is a secret)."""
    target = report.store_target(settings)
    if not isinstance(target, str):
        return str(target.resolve())
    if target.startswith("sqlite:///"):
        return target
    parts = urlsplit(target)  # PostgreSQL: keep user, host, port and database only
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{parts.hostname or ''}{port}", parts.path, "", ""))


class Endpoints:
    """The master's endpoints: its settings for reads, its ``Control`` for actions."""

    def __init__(self, settings: Settings, control: Control, plan: Plan | None = None) -> None:
        self.settings = settings
        self.control = control
        # The plan the master runs: an open cycle of another plan is reported as changed.
        self.plan = plan
        self._audit_lock = threading.Lock()
        self._audit: tuple[float, dict[str, Any]] | None = None

    # Reads ------------------------------------------------------------------

    def status(self) -> Answer:
        """Jobs by state (latest cycle), fares stored, master and workers: exactly
        `voe status --json`."""
        return Answer(self._read(report.status, self.settings, self.plan))

    def master(self) -> Answer:
        """The running master's live state: paused or not, jobs in flight, counters and
        their samples (throughput)."""
        state = self.control.snapshot()
        state["store"] = redacted_store(self.settings)
        return Answer(state)

    def jobs(self, state: Annotated[models.State | None, Query(
                 description="Only jobs in this state.")] = None,
             cycle: CycleQuery = None,
             limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Jobs per page."),
                              Digits] = DEFAULT_LIMIT,
             offset: Annotated[int, Query(ge=0, le=MAX_INTEGER, description="Jobs skipped."),
                               Digits] = 0) -> Answer:
        """A page of jobs, newest cycle first; `state=failed` lists the dead letters with
        their last error."""
        page = self._read(report.jobs, self.settings, state, cycle, limit, offset)
        return Answer({"state": state, "cycle": cycle, "limit": limit, "offset": offset,
                       **page})

    def check(self, limit: Annotated[int, Query(
                  ge=0, le=MAX_LIMIT, description="Job ids listed per kind and cycle (0: all)."),
                  Digits] = DEFAULT_CHECK_LIMIT) -> Answer:
        """The delivery audit of `voe check`: per cycle, jobs lost, stored but not done,
        duplicated and failed."""
        with self._audit_lock:  # one audit at a time, reused for AUDIT_TTL seconds
            if self._audit is None or time.monotonic() - self._audit[0] > AUDIT_TTL:
                self._audit = (time.monotonic(), self._read(report.check, self.settings))
            audit = copy.deepcopy(self._audit[1])
        if limit:
            for entry in audit["cycles"]:
                for kind in entry["counts"]:
                    entry[kind] = entry[kind][:limit]
        return Answer(audit)

    def routes(self) -> Answer:
        """The routes (ORIG-DEST) of the latest cycle."""
        return Answer({"routes": self._read(report.routes, self.settings)})

    def prices(self, route: Annotated[str, Query(
                   pattern=r"^[A-Z0-9]{3}-[A-Z0-9]{3}$", description="ORIG-DEST, e.g. GRU-REC.")],
               date: Annotated[str | None, Query(
                   description="Only this departure date.",
                   json_schema_extra={"format": "date"})] = None) -> Answer:
        """A route's price history: its cheapest fare per date and cycle, flagging drops,
        like `voe prices ROUTE --json`."""
        try:
            origin, destination = fares.parse_route(route)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        if date is not None:
            from voe.model import check_date

            try:
                check_date(date)
            except ValueError as error:
                raise ApiError(400, f"date: {error}") from None
        rows = self._read(fares.prices, self.settings, origin, destination, date)
        return Answer({"route": route, "date": date, "prices": rows})

    def _read(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except (LedgerError, StoreError) as error:
            raise ApiError(503, str(error)) from None

    # Actions ----------------------------------------------------------------

    def start_cycle(self) -> Answer:
        """Start the plan's next cycle now, without waiting for its interval (409 while a
        cycle is still running)."""
        return Answer(self._ask("start_cycle"), status_code=201)

    def pause(self) -> Answer:
        """Pause leasing: no job is sent to workers (leases out finish or expire)."""
        return Answer(self._ask("pause"))

    def resume(self) -> Answer:
        """Resume leasing."""
        return Answer(self._ask("resume"))

    def retry(self, cycle: CycleQuery = None) -> Answer:
        """Send every failed job (or those of one cycle) back to pending with fresh
        attempts, like `voe failed retry`."""
        return Answer(self._ask("retry", cycle=cycle, job_id=None))

    def retry_job(self, cycle: Annotated[int, Path(ge=1, le=MAX_INTEGER), Digits],
                  job_id: Annotated[str, Path(min_length=1)]) -> Answer:
        """Send one failed job (dead letter) back to pending with fresh attempts (404
        unless it is failed)."""
        answer = self._ask("retry", cycle=cycle, job_id=job_id)
        if not answer["retried"]:
            raise ApiError(404, f"no failed job {job_id!r} in cycle {cycle}")
        return Answer(answer)

    def outbox_retry(self, destination: Annotated[str | None, Query(
                         min_length=1, description="Only this destination, as `voe status` "
                         "names it, e.g. webhook:https://example.com/hook.")] = None) -> Answer:
        """Send the outbox's dead letters (events a webhook gave up on) back to the sink's
        publishers, like `voe outbox retry`; a running sink delivers them."""
        count = self._read(report.retry_dead_letters, self.settings, destination)
        return Answer({"retried": count})

    def _ask(self, name: str, **args: Any) -> dict[str, Any]:
        future = self.control.submit(name, **args)
        try:
            return future.result(timeout=COMMAND_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            raise ApiError(503, f"the master did not answer within {COMMAND_TIMEOUT:.0f}s "
                                "(is it stopping?)") from None
        except CommandRefused as refused:
            raise ApiError(409, str(refused)) from None
        except UnknownJob as unknown:
            raise ApiError(404, str(unknown)) from None


def _static(name: str, content_type: str) -> Callable[[], Response]:
    body = resources.files("voe.web").joinpath("static", name).read_bytes()
    return lambda: Response(body, media_type=content_type)


def _metrics(registry: CollectorRegistry) -> Callable[[], Response]:
    def metrics() -> Response:
        """The Prometheus metrics of this process."""
        from voe import metrics

        body, content_type = metrics.exposition(registry)
        return Response(body, media_type=content_type)

    return metrics


_METRICS_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format.",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    **{status: answer for status, answer in REFUSALS.items() if status != 400}}


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return Answer({"error": error.message}, status_code=error.status)


async def _invalid(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    where, *names = first.get("loc", ("request",))
    name = ".".join(str(part) for part in names) or where
    kind = {"query": "query parameter", "path": "path parameter"}.get(where, where)
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return Answer({"error": f"{kind} {name}: {message}"}, status_code=400)


async def _http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no such endpoint: {request.url.path}"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed here (use {allowed})"
    else:
        message = str(error.detail)
    return Answer({"error": message}, status_code=error.status_code, headers=error.headers)


def _app(title: str, description: str, openapi_url: str | None) -> FastAPI:
    app = FastAPI(title=title, version=__version__, description=description,
                  docs_url=None, redoc_url=None, openapi_url=openapi_url,
                  default_response_class=Answer)
    app.router.route_class = StrictRoute
    app.add_exception_handler(ApiError, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated document, with bearer auth, without FastAPI's 422 (a bad
        parameter is a 400 here) and without HEAD (every GET's, answered without body)."""
        if app.openapi_schema is None:
            document = original()
            for operations in document.get("paths", {}).values():
                operations.pop("head", None)
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            document.setdefault("components", {})["securitySchemes"] = {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "VOE_HTTP_TOKEN; required when it is set (always when "
                               "VOE_HTTP_HOST is not loopback)."}}
            document["security"] = [{}, {"bearer": []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def master_app(settings: Settings, control: Control, plan: Plan | None = None) -> Guard:
    """The master's HTTP app: dashboard, control API, /metrics and /openapi.json."""
    from voe import metrics

    app = _app("voe master", "The master's dashboard data and control API (VOE_HTTP_PORT). "
                             "Every answer is JSON; refusals are {\"error\": \"...\"}.",
               "/openapi.json")
    api = Endpoints(settings, control, plan)
    get: list[tuple[str, Callable[..., Any], type]] = [
        ("/api/status", api.status, models.Status),
        ("/api/master", api.master, models.Master),
        ("/api/jobs", api.jobs, models.JobPage),
        ("/api/check", api.check, models.Check),
        ("/api/routes", api.routes, models.Routes),
        ("/api/prices", api.prices, models.Prices),
    ]
    for path, endpoint, model in get:
        app.add_api_route(path, endpoint, methods=["GET", "HEAD"],
                          responses=ok(model, "The answer."))
    not_failed = {404: refusal("No failed job with that id in that cycle.")}
    running = {409: refusal("A cycle is still running.")}
    post: list[tuple[str, Callable[..., Any], dict[int | str, dict[str, Any]]]] = [
        ("/api/jobs/{cycle}/{job_id}/retry", api.retry_job,
         {**ok(models.Retried, "Re-queued."), **not_failed}),
        ("/api/retry", api.retry, ok(models.Retried, "How many.")),
        ("/api/outbox/retry", api.outbox_retry, ok(models.Retried, "How many.")),
        ("/api/cycles", api.start_cycle,
         {**ok(models.Cycle, "The cycle started.", 201), **running}),
        ("/api/pause", api.pause, ok(models.Paused, "Paused.")),
        ("/api/resume", api.resume, ok(models.Paused, "Leasing again.")),
    ]
    for path, endpoint, responses in post:
        status = 201 if path == "/api/cycles" else 200
        app.add_api_route(path, endpoint, methods=["POST"], responses=responses,
                          status_code=status)
    app.add_api_route("/metrics", _metrics(metrics.MASTER), methods=["GET", "HEAD"],
                      response_class=PlainTextResponse, responses=_METRICS_DOC,
                      summary="The master's Prometheus metrics.")
    for path, (name, content_type) in STATIC.items():
        app.router.add_api_route(path, _static(name, content_type), methods=["GET", "HEAD"],
                                 include_in_schema=False, route_class_override=APIRoute)
    return Guard(app, settings.voe_http_token, frozenset(STATIC))


def metrics_app(registry: CollectorRegistry, token: str) -> Guard:
    """The sink's HTTP app: nothing but /metrics."""
    app = _app("voe sink", "The sink's Prometheus metrics (VOE_SINK_HTTP_PORT).", None)
    app.add_api_route("/metrics", _metrics(registry), methods=["GET", "HEAD"],
                      response_class=PlainTextResponse, responses=_METRICS_DOC)
    return Guard(app, token)
