"""The demo airline's web server: a gevent WSGI app with an HTML and a JSON search.

It is the target of every run, test and benchmark, so it can be slowed down
(``latency_ms``), made to fail on chosen routes (``fail_routes``) and made to
answer big pages (``flights``). ``/stats`` reports load for tests.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import gevent
from gevent.event import Event
from gevent.pywsgi import LoggingLogAdapter, WSGIServer

from voe.demoairline.fares import UnknownRoute, check_date, fares_for
from voe.demoairline.pages import error_page, results_page

logger = logging.getLogger("voe.demoairline")

BACKLOG = 2048
MAX_CONNECTIONS = 4096
STOP_TIMEOUT = 2.0

_AIRPORT_CODE = re.compile(r"[A-Z]{3}")

StartResponse = Callable[..., Any]


class BadRequest(ValueError):
    """A search with a missing or malformed query parameter."""


def _query(environ: dict[str, Any]) -> tuple[str, str, str]:
    """Return the origin, destination and date of a search query, or raise ``BadRequest``."""
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    values = []
    for name in ("origin", "destination", "date"):
        given = params.get(name)
        if not given or not given[0].strip():
            raise BadRequest(f"missing parameter {name}")
        if len(given) > 1:
            raise BadRequest(f"parameter {name} given more than once")
        values.append(given[0].strip())
    origin, destination, date = values[0].upper(), values[1].upper(), values[2]
    for name, code in (("origin", origin), ("destination", destination)):
        if not _AIRPORT_CODE.fullmatch(code):
            raise BadRequest(f"bad {name} {code!r}: expected a three-letter airport code")
    return origin, destination, date


class DemoAirline:
    """The WSGI application; ``stats`` counts search requests (total, in flight, peak)."""

    def __init__(self, latency_ms: int = 0, fail_routes: Iterable[str] = (),
                 flights: int | None = None) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if flights is not None and flights < 0:
            raise ValueError("flights must not be negative")
        self.latency = latency_ms / 1000
        self.fail_routes = frozenset(route.strip().upper() for route in fail_routes)
        self.flights = flights
        self.stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Answer one request (WSGI entry point)."""
        path = environ.get("PATH_INFO", "")
        if path not in ("/search", "/api/search", "/stats"):
            return _html(start_response, "404 Not Found", f"no page at {path}")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _html(start_response, "405 Method Not Allowed", "only GET is allowed here")
        if path == "/stats":
            return _json(start_response, "200 OK", self.stats)
        stats = self.stats
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            if self.latency:
                gevent.sleep(self.latency)
            return self._search(environ, start_response, as_json=path == "/api/search")
        finally:
            stats["in_flight"] -= 1

    def _search(self, environ: dict[str, Any], start_response: StartResponse,
                as_json: bool) -> list[bytes]:
        try:
            origin, destination, date = _query(environ)
        except BadRequest as error:
            return _json(start_response, "400 Bad Request", {"error": str(error)})
        if f"{origin}-{destination}" in self.fail_routes:
            return _json(start_response, "503 Service Unavailable",
                         {"error": f"route {origin}-{destination} is temporarily unavailable"})
        try:
            check_date(date)
            fares = fares_for(origin, destination, date, self.flights)
        except UnknownRoute as error:
            return _json(start_response, "404 Not Found", {"error": str(error)})
        except ValueError as error:
            return _json(start_response, "400 Bad Request", {"error": str(error)})
        if as_json:
            return _json(start_response, "200 OK", {"fares": [fare._asdict() for fare in fares]})
        body = results_page(origin, destination, date, fares).encode()
        return _respond(start_response, "200 OK", "text/html; charset=utf-8", body)


def _respond(start_response: StartResponse, status: str, content_type: str,
             body: bytes) -> list[bytes]:
    start_response(status, [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ])
    return [body]


def _json(start_response: StartResponse, status: str, payload: Any) -> list[bytes]:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return _respond(start_response, status, "application/json", body)


def _html(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    return _respond(start_response, status, "text/html; charset=utf-8",
                    error_page(status, message).encode())


class _Server(WSGIServer):
    """pywsgi with Nagle off: it sends headers and body in two writes, and Nagle plus the
    client's delayed ACK would stall every keep-alive response by 40 ms."""

    def handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Handle one connection after switching off Nagle's algorithm on it."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def make_app(latency_ms: int = 0, fail_routes: Iterable[str] = (),
             flights: int | None = None) -> DemoAirline:
    """Build the airline's WSGI app; see the module docstring for the options."""
    return DemoAirline(latency_ms=latency_ms, fail_routes=fail_routes, flights=flights)


def serve(host: str = "127.0.0.1", port: int = 8800, latency_ms: int = 0,
          fail_routes: Iterable[str] = (), flights: int | None = None) -> None:
    """Serve the demo airline until SIGTERM or SIGINT, then stop cleanly and return."""
    app = make_app(latency_ms=latency_ms, fail_routes=fail_routes, flights=flights)
    server = _Server(
        (host, port), app,
        backlog=BACKLOG,
        spawn=MAX_CONNECTIONS,
        log=LoggingLogAdapter(logger, logging.DEBUG),
        error_log=LoggingLogAdapter(logger, logging.ERROR),
    )
    stop = Event()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    handlers = [gevent.signal_handler(signum, stop.set) for signum in previous]
    try:
        server.start()
        logger.info("demo airline listening on http://%s:%s", host, server.server_port)
        stop.wait()
        logger.info("demo airline stopping")
    finally:
        server.stop(timeout=STOP_TIMEOUT)
        for handler in handlers:
            handler.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
