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
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import gevent
from gevent.event import Event
from gevent.pywsgi import LoggingLogAdapter, WSGIHandler, WSGIServer

from voe.demo.airline import pagefaults
from voe.demo.airline.fares import UnknownRoute, check_date, drift_prices, fares_for
from voe.demo.airline.faults import Faults
from voe.demo.airline.jspage import (
    CONSENT_COOKIE,
    CONSENT_VALUE,
    asset,
    consent_page,
    has_consent,
    js_results_page,
)
from voe.demo.airline.pages import (
    block_page,
    captcha_page,
    error_page,
    new_layout_page,
    results_page,
    sloppy,
    soft_block_page,
)

logger = logging.getLogger("voe.demoairline")

BACKLOG = 2048
MAX_CONNECTIONS = 4096
STOP_TIMEOUT = 2.0
# Seconds of the sliding window behind ``/stats``'s ``rate``.
RATE_WINDOW = 5.0
# Seconds of per-second request counts that ``/stats`` keeps.
PER_SECOND_KEPT = 60
# URLs whose requests are counted for fault decisions before the count starts over.
MAX_TRACKED_URLS = 1_000_000
# Client addresses tracked for the rate limit and per-client stats before they start over.
MAX_TRACKED_CLIENTS = 10_000
# Seconds between two bytes of a trickled body (the "trickle" fault).
TRICKLE_SECONDS = 1.0
# Bytes of each write of a body that never ends (the "endless" fault).
ENDLESS_CHUNK = 64 * 1024

SEARCH_PATHS = ("/search", "/api/search", "/js/search")
# The JS page's own requests (not searches: counted apart in ``/stats``).
JS_FARES_PATH = "/js/fares"
CONSENT_PATH = "/consent"
STATIC_PREFIX = "/static/"
# Static assets are cacheable for a day, as an airline's scripts, styles and images are.
ASSET_CACHE = "public, max-age=86400"
# The cookie the JS page gives each new visitor (a number), to tell returning ones.
VISITOR_COOKIE = "voe_visitor"
_AIRPORT_CODE = re.compile(r"[A-Z]{3}")
_ERROR_STATUSES = ("500 Internal Server Error", "502 Bad Gateway", "503 Service Unavailable")

StartResponse = Callable[..., Any]


class BadRequest(ValueError):
    """A search with a missing or malformed query parameter."""


class ResetConnection(Exception):
    """Raised by the app to have the server drop the connection with a TCP reset."""


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


class Stats:
    """Load counters of the search endpoints, overall and per client address."""

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.clients: dict[str, dict[str, int]] = {}
        self.recent: deque[float] = deque()
        self.per_second: dict[int, int] = {}
        # Trickled or endless bodies still being sent (each stops when its client leaves).
        self.streaming = 0
        # The JS page's sub-resources served, by kind; its fare requests; its consents;
        # and its searches that came with a visitor cookie from an earlier visit.
        self.assets: Counter[str] = Counter()
        self.js_fares = 0
        self.consents = 0
        self.returning = 0

    def begin(self, client: str) -> None:
        """Count a search request that starts now."""
        now = time.time()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if client not in self.clients and len(self.clients) >= MAX_TRACKED_CLIENTS:
            self.clients.clear()
        mine = self.clients.setdefault(client, {"requests": 0, "in_flight": 0,
                                                "max_in_flight": 0})
        mine["requests"] += 1
        mine["in_flight"] += 1
        mine["max_in_flight"] = max(mine["max_in_flight"], mine["in_flight"])
        self.recent.append(now)
        second = int(now)
        self.per_second[second] = self.per_second.get(second, 0) + 1
        if len(self.per_second) > PER_SECOND_KEPT:
            for old in [s for s in self.per_second if s <= second - PER_SECOND_KEPT]:
                del self.per_second[old]

    def end(self, client: str, status: str) -> None:
        """Count the end of a search request and its answer's status (``reset`` if none)."""
        self.in_flight -= 1
        mine = self.clients.get(client)
        if mine is not None:
            mine["in_flight"] -= 1
        self.statuses[status.split(" ", 1)[0]] += 1

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        now = time.time()
        while self.recent and self.recent[0] <= now - RATE_WINDOW:
            self.recent.popleft()
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "rate": round(len(self.recent) / RATE_WINDOW, 3),
            "per_second": [[second, count] for second, count in sorted(self.per_second.items())
                           if second > now - PER_SECOND_KEPT],
            "statuses": dict(sorted(self.statuses.items())),
            "faults": dict(sorted(self.faults.items())),
            "streaming": self.streaming,
            "js_page": {"assets": dict(sorted(self.assets.items())), "fares": self.js_fares,
                        "consents": self.consents, "returning": self.returning},
            "clients": self.clients,
        }


class _RateLimit:
    """A token bucket per client address: ``rate`` searches a second, bursts of one second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        """Spend a token of ``client``; False when it asks faster than the limit."""
        now = time.monotonic()
        capacity = max(1.0, self.rate)
        if client not in self.buckets and len(self.buckets) >= MAX_TRACKED_CLIENTS:
            self.buckets.clear()
        tokens, then = self.buckets.get(client, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


class _BlockAfter:
    """Per client address: ``limit`` searches answered, then every request blocked for
    ``seconds``, after which the address starts over (an airline's anti-bot quota)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clients: dict[str, tuple[int, float]] = {}  # address -> (searches, blocked until)

    def blocks(self, client: str) -> bool:
        """Count a search of ``client``; True when it is (now) blocked."""
        now = time.monotonic()
        if client not in self.clients and len(self.clients) >= MAX_TRACKED_CLIENTS:
            self.clients.clear()
        searches, until = self.clients.get(client, (0, 0.0))
        if until:
            if now < until:
                return True
            searches, until = 0, 0.0  # the block is over: a fresh quota
        searches += 1
        if searches > self.limit:
            until = now + self.seconds
        self.clients[client] = (searches, until)
        return bool(until)


class DemoAirline:
    """The WSGI application; ``stats`` counts search requests (see ``Stats``)."""

    def __init__(self, latency_ms: int = 0, fail_routes: Iterable[str] = (),
                 flights: int | None = None, faults: Faults | None = None) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if flights is not None and flights < 0:
            raise ValueError("flights must not be negative")
        self.latency = latency_ms / 1000
        self.fail_routes = frozenset(route.strip().upper() for route in fail_routes)
        self.flights = flights
        self.faults = faults or Faults()
        self.stats = Stats()
        self.seen: Counter[str] = Counter()
        self.rate_limit = _RateLimit(self.faults.rate_limit) if self.faults.rate_limit else None
        self.block_after = (_BlockAfter(self.faults.block_after, self.faults.block_seconds)
                            if self.faults.block_after else None)

    def __call__(self, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request (WSGI entry point)."""
        path = environ.get("PATH_INFO", "")
        if path.startswith(STATIC_PREFIX) or path in (JS_FARES_PATH, CONSENT_PATH):
            return self._js_page_request(environ, start_response, path)
        if path not in (*SEARCH_PATHS, "/stats", "/captcha"):
            return _html(start_response, "404 Not Found", f"no page at {path}")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _html(start_response, "405 Method Not Allowed", "only GET is allowed here")
        if path == "/stats":
            return _json(start_response, "200 OK", self.stats.as_dict())
        if path == "/captcha":
            resume = parse_qs(environ.get("QUERY_STRING", "")).get("continue", ["/"])[0]
            return _respond(start_response, "200 OK", "text/html; charset=utf-8",
                            captcha_page(resume).encode())
        client = environ.get("REMOTE_ADDR") or "?"
        status = ["reset"]

        def answer(code: str, headers: list[tuple[str, str]], *more: Any) -> Any:
            status[0] = code
            return start_response(code, headers, *more)

        self.stats.begin(client)
        try:
            if self.latency:
                gevent.sleep(self.latency)
            return self._search(environ, answer, path, client)
        finally:
            self.stats.end(client, status[0])

    def _js_page_request(self, environ: dict[str, Any], start_response: StartResponse,
                         path: str) -> Iterable[bytes]:
        """Answer what the JS page asks by itself: a sub-resource, its fares, the consent."""
        if path == CONSENT_PATH:
            self.stats.consents += 1
            return _respond(start_response, "204 No Content", "text/plain", b"", [
                ("Set-Cookie", f"{CONSENT_COOKIE}={CONSENT_VALUE}; Path=/; SameSite=Lax")])
        if path == JS_FARES_PATH:
            self.stats.js_fares += 1
            if self.latency:
                gevent.sleep(self.latency)
            status, content_type, body = self._page(environ, "/api/search")
            return _respond(start_response, status, content_type, body)
        found = asset(path)
        if found is None:
            return _html(start_response, "404 Not Found", f"no page at {path}")
        self.stats.assets[path.split("/")[2]] += 1
        content_type, body = found
        return _respond(start_response, "200 OK", content_type, body, cache=ASSET_CACHE)

    def _visitor(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        """A JS search's visitor cookie: counted when it came back, else given anew."""
        if f"{VISITOR_COOKIE}=" in environ.get("HTTP_COOKIE", ""):
            self.stats.returning += 1
            return []
        number = self.stats.requests
        return [("Set-Cookie", f"{VISITOR_COOKIE}={number}; Path=/; SameSite=Lax")]

    def _fault(self, name: str, url: str, nth: int) -> bool:
        if self.faults.hits(name, url, nth):
            self.stats.faults[name] += 1
            return True
        return False

    def _search(self, environ: dict[str, Any], start_response: StartResponse, path: str,
                client: str) -> Iterable[bytes]:
        url = f"{path}?{environ.get('QUERY_STRING', '')}"
        nth = 0
        if self.faults.seeded:
            if url not in self.seen and len(self.seen) >= MAX_TRACKED_URLS:
                self.seen.clear()
            self.seen[url] += 1
            nth = self.seen[url]
        if self.rate_limit is not None and not self.rate_limit.allow(client):
            self.stats.faults["rate_limit"] += 1
            retry = max(1, math.ceil(1 / self.faults.rate_limit))
            return _json(start_response, "429 Too Many Requests",
                         {"error": "too many requests from your address"},
                         [("Retry-After", str(retry))])
        if self.block_after is not None and self.block_after.blocks(client):
            self.stats.faults["block_after"] += 1
            return _respond(start_response, "403 Forbidden", "text/html; charset=utf-8",
                            block_page().encode())
        if self._fault("throttle", url, nth):
            return _json(start_response, "429 Too Many Requests", {"error": "slow down"},
                         [("Retry-After", str(self.faults.retry_after))])
        if self._fault("error", url, nth):
            code = _ERROR_STATUSES[self.faults.number("error-status", url, nth) % 3]
            return _json(start_response, code, {"error": "internal error (injected)"})
        if self._fault("reset", url, nth):
            raise ResetConnection(url)
        if self._fault("block", url, nth):
            return _respond(start_response, "403 Forbidden", "text/html; charset=utf-8",
                            block_page().encode())
        if self._fault("captcha", url, nth):
            return _respond(start_response, "302 Found", "text/html; charset=utf-8", b"",
                            [("Location", f"/captcha?{urlencode({'continue': url})}")])
        if self._fault("slow", url, nth):
            gevent.sleep(self.faults.slow_ms / 1000)
        status, content_type, body = self._page(environ, path, url, nth)
        if status.startswith("200"):
            if path == "/search" and self._fault("soft_block", url, nth):
                body = soft_block_page(*_query(environ)).encode()
            if content_type.startswith("text/html") and path == "/search":
                if self._fault("malformed", url, nth):
                    body = sloppy(body.decode()).encode()
            if self._fault("truncate", url, nth):
                cut = 0.1 + 0.8 * (self.faults.number("truncate-at", url, nth) % 1000) / 1000
                body = body[:int(len(body) * cut)]
            if self._fault("endless", url, nth):
                return self._stream(start_response, content_type, _endless(body), None)
            if self._fault("trickle", url, nth):
                return self._stream(start_response, content_type, _trickle(body), len(body))
        cookies = self._visitor(environ) if path == "/js/search" else []
        return _respond(start_response, status, content_type, body, cookies)

    def _stream(self, start_response: StartResponse, content_type: str,
                pieces: Iterator[bytes], length: int | None) -> Iterator[bytes]:
        """Answer 200 with a body sent piece by piece (chunked when ``length`` is None)."""
        headers = [("Content-Type", content_type), ("Cache-Control", "no-store")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        start_response("200 OK", headers)
        return self._streaming(pieces)

    def _streaming(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """Yield ``pieces``, counted in ``/stats`` while they flow.

        pywsgi writes each piece before asking for the next, so nothing is buffered; when
        the client leaves, a write fails and pywsgi closes this generator.
        """
        self.stats.streaming += 1
        try:
            yield from pieces
        finally:
            self.stats.streaming -= 1

    def _page(self, environ: dict[str, Any], path: str, url: str = "",
              nth: int = 0) -> tuple[str, str, bytes]:
        """The status, content type and body of a search, with page faults (if any) but no
        other fault; ``url`` and ``nth`` identify the request for the page faults."""
        try:
            origin, destination, date = _query(environ)
        except BadRequest as error:
            return _json_body("400 Bad Request", {"error": str(error)})
        if f"{origin}-{destination}" in self.fail_routes:
            return _json_body("503 Service Unavailable",
                              {"error": f"route {origin}-{destination} is temporarily unavailable"})
        try:
            check_date(date)
            fares = drift_prices(fares_for(origin, destination, date, self.flights),
                                 f"{origin}-{destination}:{date}", self.faults.seed,
                                 self.faults.price_drift)
        except UnknownRoute as error:
            return _json_body("404 Not Found", {"error": str(error)})
        except ValueError as error:
            return _json_body("400 Bad Request", {"error": str(error)})
        if path == "/api/search":
            search = {"origin": origin, "destination": destination, "date": date}
            return _json_body("200 OK", {"search": search,
                                         "fares": [fare._asdict() for fare in fares]})
        if path == "/js/search":
            if (not has_consent(environ.get("HTTP_COOKIE", ""))
                    and self._fault("consent_wall", url, nth)):
                page = consent_page(origin, destination)
            else:
                page = js_results_page(origin, destination, date, self.faults.js_assets)
        elif self.faults.layout == "new":
            page = new_layout_page(origin, destination, date, fares)
        elif pagefaults.active(self.faults):
            try:
                page = pagefaults.render(self, environ.get("QUERY_STRING", ""), url, nth,
                                         origin, destination, date, fares)
            except pagefaults.NoSuchPage as error:
                return _json_body("404 Not Found", {"error": str(error)})
        else:
            page = results_page(origin, destination, date, fares)
        return "200 OK", "text/html; charset=utf-8", page.encode()


def _trickle(body: bytes) -> Iterator[bytes]:
    """``body`` one byte at a time, ``TRICKLE_SECONDS`` apart."""
    for index in range(len(body)):
        if index:
            gevent.sleep(TRICKLE_SECONDS)
        yield body[index:index + 1]


def _endless(body: bytes) -> Iterator[bytes]:
    """The page's start, then the same ``ENDLESS_CHUNK`` bytes of markup forever."""
    yield body[:len(body) // 2]
    filler = (b"<!-- " + b"voos " * (ENDLESS_CHUNK // 5))[:ENDLESS_CHUNK - 4] + b" -->"
    while True:
        yield filler


def _respond(start_response: StartResponse, status: str, content_type: str,
             body: bytes, extra: Iterable[tuple[str, str]] = (),
             cache: str = "no-store") -> list[bytes]:
    start_response(status, [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", cache),
        *extra,
    ])
    return [body]


def _json_body(status: str, payload: Any) -> tuple[str, str, bytes]:
    return status, "application/json", json.dumps(payload, ensure_ascii=False).encode()


def _json(start_response: StartResponse, status: str, payload: Any,
          extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    _, content_type, body = _json_body(status, payload)
    return _respond(start_response, status, content_type, body, extra)


def _html(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    return _respond(start_response, status, "text/html; charset=utf-8",
                    error_page(status, message).encode())


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
