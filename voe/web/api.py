"""The JSON endpoints of the master's HTTP port: what they read, check and answer.

Reads come from the ledger and store files through ``voe.report`` (each call opens
its own connections, so any HTTP thread may run them); actions go to the master's
loop through ``voe.web.control`` and wait for its answer. Bad input is an
``ApiError`` with a 4xx status and a one-line message, never a traceback.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from voe import report
from voe.ledger import STATES, LedgerError
from voe.plan import Plan
from voe.settings import Settings
from voe.store import StoreError
from voe.web.control import CommandRefused, Control, UnknownJob

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# Seconds an action waits for the master's loop to answer (it looks every 20 ms).
COMMAND_TIMEOUT = 10.0
# Jobs listed per page at most, and by default.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
# Job ids listed per kind and cycle by /api/check unless asked otherwise.
DEFAULT_CHECK_LIMIT = 20
# Seconds an audit is reused: it reads the whole ledger and store, and every open
# dashboard asks for it.
AUDIT_TTL = 5.0
# Largest whole number a query parameter may hold (offsets, cycles).
MAX_INTEGER = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")
JSON = "application/json"


class ApiError(Exception):
    """A request the API refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """What a handler sees of a request: its query and the parameters of its path."""

    query: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """An answer: status, body and its content type."""

    status: int
    body: bytes
    content_type: str = JSON


def json_reply(status: int, payload: Any) -> Reply:
    """A JSON answer (indented like ``voe status --json``)."""
    return Reply(status, json.dumps(payload, indent=2).encode() + b"\n")


def error_reply(status: int, message: str) -> Reply:
    """The JSON body of every refusal: ``{"error": message}``."""
    return json_reply(status, {"error": message})


def _one(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise ApiError(400, f"query parameter {name} given {len(values)} times")
    return values[0]


def _integer(request: Request, name: str, default: int | None, minimum: int,
             maximum: int = MAX_INTEGER) -> int | None:
    text = _one(request, name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise ApiError(400, f"query parameter {name}={text!r}: expected a whole number from "
                            f"{minimum} to {maximum}")
    return int(text)


def _path_integer(request: Request, name: str) -> int:
    text = request.params[name]
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_INTEGER:
        raise ApiError(400, f"{name} {text!r}: expected a whole number of at least 1")
    return int(text)


def _only(request: Request, *names: str) -> None:
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        allowed = ", ".join(names) if names else "none"
        raise ApiError(400, f"unknown query parameter {unknown[0]} (allowed: {allowed})")


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


class Api:
    """The endpoints of one master: its settings for reads, its ``Control`` for actions."""

    def __init__(self, settings: Settings, control: Control, plan: Plan | None = None) -> None:
        self.settings = settings
        self.control = control
        # The plan the master runs: an open cycle of another plan is reported as changed.
        self.plan = plan
        self._audit_lock = threading.Lock()
        self._audit: tuple[float, dict[str, Any]] | None = None

    # Reads ------------------------------------------------------------------

    def status(self, request: Request) -> Reply:
        """Exactly what ``voe status --json`` prints."""
        _only(request)
        return json_reply(200, self._read(report.status, self.settings, self.plan))

    def master(self, request: Request) -> Reply:
        """The running master's live state: paused, leases, counters and their samples."""
        _only(request)
        state = self.control.snapshot()
        state["store"] = redacted_store(self.settings)
        return json_reply(200, state)

    def jobs(self, request: Request) -> Reply:
        """A page of jobs, by state and cycle (newest cycle first)."""
        _only(request, "state", "cycle", "limit", "offset")
        state = _one(request, "state")
        if state is not None and state not in STATES:
            raise ApiError(400, f"state {state!r}: expected one of {', '.join(STATES)}")
        cycle = _integer(request, "cycle", None, 1)
        limit = _integer(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _integer(request, "offset", 0, 0)
        page = self._read(report.jobs, self.settings, state, cycle, limit, offset)
        return json_reply(200, {"state": state, "cycle": cycle, "limit": limit,
                                "offset": offset, **page})

    def check(self, request: Request) -> Reply:
        """The delivery audit of ``voe check``, with at most ``limit`` job ids per list."""
        _only(request, "limit")
        limit = _integer(request, "limit", DEFAULT_CHECK_LIMIT, 0, MAX_LIMIT)
        with self._audit_lock:  # one audit at a time, reused for AUDIT_TTL seconds
            if self._audit is None or time.monotonic() - self._audit[0] > AUDIT_TTL:
                self._audit = (time.monotonic(), self._read(report.check, self.settings))
            audit = copy.deepcopy(self._audit[1])
        if limit:
            for entry in audit["cycles"]:
                for kind in entry["counts"]:
                    entry[kind] = entry[kind][:limit]
        return json_reply(200, audit)

    def routes(self, request: Request) -> Reply:
        """The routes of the latest cycle (ORIG-DEST), to pick a price history."""
        _only(request)
        return json_reply(200, {"routes": self._read(report.routes, self.settings)})

    def prices(self, request: Request) -> Reply:
        """A route's cheapest fare per date and cycle (``voe prices ROUTE --json``)."""
        _only(request, "route", "date")
        route = _one(request, "route")
        try:
            origin, destination = report.parse_route(route or "")
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        date = _one(request, "date")
        if date is not None:
            from voe.demoairline.fares import check_date

            try:
                check_date(date)
            except ValueError as error:
                raise ApiError(400, f"date: {error}") from None
        rows = self._read(report.prices, self.settings, origin, destination, date)
        return json_reply(200, {"route": route, "date": date, "prices": rows})

    def _read(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except (LedgerError, StoreError) as error:
            raise ApiError(503, str(error)) from None

    # Actions ----------------------------------------------------------------

    def start_cycle(self, request: Request) -> Reply:
        """Start the plan's next cycle now (409 while a cycle is still running)."""
        _only(request)
        return json_reply(201, self._ask("start_cycle"))

    def pause(self, request: Request) -> Reply:
        """Stop leasing jobs (leases out keep running; nothing new is sent)."""
        _only(request)
        return json_reply(200, self._ask("pause"))

    def resume(self, request: Request) -> Reply:
        """Lease jobs again."""
        _only(request)
        return json_reply(200, self._ask("resume"))

    def retry(self, request: Request) -> Reply:
        """Send every dead letter (or those of one cycle) back to pending."""
        _only(request, "cycle")
        cycle = _integer(request, "cycle", None, 1)
        return json_reply(200, self._ask("retry", cycle=cycle, job_id=None))

    def retry_job(self, request: Request) -> Reply:
        """Send one dead letter back to pending (404 unless it is failed)."""
        _only(request)
        cycle = _path_integer(request, "cycle")
        job_id = request.params["job_id"]
        answer = self._ask("retry", cycle=cycle, job_id=job_id)
        if not answer["retried"]:
            raise ApiError(404, f"no failed job {job_id!r} in cycle {cycle}")
        return json_reply(200, answer)

    def outbox_retry(self, request: Request) -> Reply:
        """Re-send the outbox's dead letters (all, or one destination's), as `voe outbox retry`."""
        _only(request, "destination")
        destination = _one(request, "destination")
        if destination == "":  # the URL's length (MAX_URL) bounds it otherwise
            raise ApiError(400, "query parameter destination is empty: give a destination's "
                                "name as `voe status` shows it, or leave it out for all")
        count = self._read(report.retry_dead_letters, self.settings, destination)
        return json_reply(200, {"retried": count})

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

    # Others -----------------------------------------------------------------

    def metrics(self, request: Request) -> Reply:
        """The master's Prometheus metrics (``voe.metrics.MASTER``)."""
        from voe import metrics

        return metrics_reply(metrics.MASTER, request)

    def openapi(self, request: Request) -> Reply:
        """The OpenAPI 3 document of this API."""
        _only(request)
        from voe.web.openapi import document

        return json_reply(200, document())


def metrics_reply(registry: CollectorRegistry, request: Request) -> Reply:
    """A Prometheus registry in the text format."""
    _only(request)
    from voe import metrics

    body, content_type = metrics.exposition(registry)
    return Reply(200, body, content_type)


class MetricsApi:
    """The only endpoint of the sink's HTTP port: its Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def metrics(self, request: Request) -> Reply:
        """The registry's metrics."""
        return metrics_reply(self.registry, request)


METRICS_ROUTES: dict[str, dict[str, Callable[[Any, Request], Reply]]] = {
    "/metrics": {"GET": MetricsApi.metrics}}
"""The sink's HTTP port: nothing but /metrics."""

Handler = Callable[[Api, Request], Reply]

ROUTES: dict[str, dict[str, Handler]] = {
    "/api/status": {"GET": Api.status},
    "/api/master": {"GET": Api.master},
    "/api/jobs": {"GET": Api.jobs},
    "/api/jobs/{cycle}/{job_id}/retry": {"POST": Api.retry_job},
    "/api/retry": {"POST": Api.retry},
    "/api/outbox/retry": {"POST": Api.outbox_retry},
    "/api/cycles": {"POST": Api.start_cycle},
    "/api/pause": {"POST": Api.pause},
    "/api/resume": {"POST": Api.resume},
    "/api/check": {"GET": Api.check},
    "/api/routes": {"GET": Api.routes},
    "/api/prices": {"GET": Api.prices},
    "/metrics": {"GET": Api.metrics},
    "/openapi.json": {"GET": Api.openapi},
}
"""Every protected endpoint: path template, then method, then handler."""


def match(routes: dict[str, dict[str, Handler]], segments: list[str]
          ) -> tuple[dict[str, Handler], dict[str, str]] | None:
    """The methods of the route of ``routes`` whose path has these (unquoted) segments,
    and its parameters; None when no route has that shape."""
    for template, methods in routes.items():
        parts = template.split("/")
        if len(parts) != len(segments):
            continue
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                if not segment:
                    break
                params[part[1:-1]] = segment
            elif part != segment:
                break
        else:
            return methods, params
    return None
