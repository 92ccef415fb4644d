"""The demo airline's web server: a gevent WSGI app with HTML, JSON and JavaScript searches.

It is the target of every run, test and benchmark, so it can be slowed down
(``latency_ms``), made to fail on chosen routes (``fail_routes``), made to answer
big pages (``flights``) and made hostile (``faults``: 5xx, 429 with Retry-After,
slow answers, connection resets, truncated or sloppy pages, a redesigned layout, a
per-client rate limit, a per-client quota then a 403 for a while (``block_after``),
blocks (403, a redirect to ``/captcha``, a "0 voos" page with a block banner), bodies
trickled or endless; see ``voe.demo.airline.faults``). ``/stats``
reports what tests measure: requests, concurrency (overall and per client address), a
sliding request rate, answers by status, faults injected and bodies still streaming.

This module serves the app (``voe.demo.airline.app``) with pywsgi; the counters are
``voe.demo.airline.stats``, the per-client limits ``voe.demo.airline.limits``.
"""

from __future__ import annotations

import logging
import signal
import socket
import struct
from collections.abc import Iterable
from typing import Any

import gevent
from gevent.event import Event
from gevent.pywsgi import LoggingLogAdapter, WSGIHandler, WSGIServer

from voe.demo.airline.app import DemoAirline, ResetConnection
from voe.demo.airline.faults import Faults

logger = logging.getLogger("voe.demoairline")

BACKLOG = 2048
MAX_CONNECTIONS = 4096
STOP_TIMEOUT = 2.0


class _Handler(WSGIHandler):
    """pywsgi's handler, plus the connection reset the app asks for with ``ResetConnection``."""

    def run_application(self) -> None:
        """Run the app; on ``ResetConnection`` close the socket so the peer gets a TCP RST."""
        try:
            super().run_application()
        except ResetConnection:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True


class _Server(WSGIServer):
    """pywsgi with Nagle off: it sends headers and body in two writes, and Nagle plus the
    client's delayed ACK would stall every keep-alive response by 40 ms."""

    handler_class = _Handler

    def handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Handle one connection after switching off Nagle's algorithm on it."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def make_app(latency_ms: int = 0, fail_routes: Iterable[str] = (),
             flights: int | None = None, faults: Faults | None = None,
             **fault_options: Any) -> DemoAirline:
    """Build the airline's WSGI app; see the module docstring for the options.

    Faults come as a ``Faults`` or as its fields by keyword (``error_rate=0.2, seed=7``);
    a bad value raises ``ValueError``.
    """
    if fault_options:
        if faults is not None:
            raise ValueError("give faults either as a Faults or as keywords, not both")
        faults = Faults(**fault_options)
    return DemoAirline(latency_ms=latency_ms, fail_routes=fail_routes, flights=flights,
                       faults=faults)


def serve(host: str = "127.0.0.1", port: int = 8800, latency_ms: int = 0,
          fail_routes: Iterable[str] = (), flights: int | None = None,
          faults: Faults | None = None, **fault_options: Any) -> None:
    """Serve the demo airline until SIGTERM or SIGINT, then stop cleanly and return."""
    app = make_app(latency_ms=latency_ms, fail_routes=fail_routes, flights=flights,
                   faults=faults, **fault_options)
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
        if app.faults != Faults():
            logger.info("demo airline faults: %s", app.faults)
        stop.wait()
        logger.info("demo airline stopping")
    finally:
        server.stop(timeout=STOP_TIMEOUT)
        for handler in handlers:
            handler.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
