"""The demo airline's WSGI app: routes a request to a search (HTML, JSON or JavaScript
page; the JSON API's trips and calendar are ``voe.demo.airline.trips``), ``/stats``,
``/captcha`` or the JS page's own requests, and injects the faults it is given (see
``voe.demo.airline.server`` for the options)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlencode

import gevent

from voe.demo.airline import pagefaults, tripquery, trips
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
from voe.demo.airline.limits import BlockAfter, RateLimit
from voe.demo.airline.pages import (
    block_page,
    captcha_page,
    new_layout_page,
    results_page,
    sloppy,
    soft_block_page,
)
from voe.demo.airline.prices import Departed, PriceProcess, SimulatedClock
from voe.demo.airline.responses import (
    StartResponse,
    endless,
    html_error,
    json_body,
    json_response,
    respond,
    trickle,
)
from voe.demo.airline.stats import Stats
from voe.demo.airline.trippages import calendar_page, trip_page
from voe.demo.airline.tripquery import BadQuery
from voe.model import Fare

# URLs whose requests are counted for fault decisions before the count starts over.
MAX_TRACKED_URLS = 1_000_000

# The calendar (the cheapest fare of each day of a month) is a search like the others.
CALENDAR_PATH = "/api/calendar"
HTML_CALENDAR_PATH = "/calendar"
SEARCH_PATHS = ("/search", "/api/search", "/js/search", CALENDAR_PATH, HTML_CALENDAR_PATH)
# The airline's clock, and the answer a search had at a time of it (not searches: no
# latency, no faults, not counted in /stats).
CLOCK_PATH = "/api/clock"
TRUTH_PATH = "/api/truth"
# The JS page's own requests (not searches: counted apart in ``/stats``).
JS_FARES_PATH = "/js/fares"
CONSENT_PATH = "/consent"
STATIC_PREFIX = "/static/"
# Static assets are cacheable for a day, as an airline's scripts, styles and images are.
ASSET_CACHE = "public, max-age=86400"
# The cookie the JS page gives each new visitor (a number), to tell returning ones.
VISITOR_COOKIE = "voe_visitor"
_ERROR_STATUSES = ("500 Internal Server Error", "502 Bad Gateway", "503 Service Unavailable")


class BadRequest(ValueError):
    """A search with a missing or malformed query parameter."""


class ResetConnection(Exception):
    """Raised by the app to have the server drop the connection with a TCP reset."""


def _query(environ: dict[str, Any]) -> tuple[str, str, str]:
    """Return the origin, destination and date of a search query, or raise ``BadRequest``."""
    try:
        return tripquery.route(parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    except BadQuery as error:
        raise BadRequest(str(error)) from None


def _soft_block_route(environ: dict[str, Any]) -> tuple[str, str, str]:
    """The route and date a soft block page names: the search's (a trip's first origin,
    last destination and first date); the search answered, so its query is valid."""
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if not tripquery.asks_trip(params):
        return _query(environ)
    trip = tripquery.trip(params)
    going = trip.legs[0]
    return going.origin, (going if trip.round_trip else trip.legs[-1]).destination, going.date


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
        self.rate_limit = RateLimit(self.faults.rate_limit) if self.faults.rate_limit else None
        self.block_after = (BlockAfter(self.faults.block_after, self.faults.block_seconds)
                            if self.faults.block_after else None)
        self.clock = SimulatedClock(self.faults.clock_speed, self.faults.clock_start or None,
                                    origin=self.faults.clock_origin or None)
        self.prices = (PriceProcess(self.faults.price_changes, self.faults.seed)
                       if self.faults.price_changes else None)

    def __call__(self, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request (WSGI entry point)."""
        path = environ.get("PATH_INFO", "")
        if path.startswith(STATIC_PREFIX) or path in (JS_FARES_PATH, CONSENT_PATH):
            return self._js_page_request(environ, start_response, path)
        if path in (CLOCK_PATH, TRUTH_PATH):
            return self._clock_request(environ, start_response, path)
        if path not in (*SEARCH_PATHS, "/stats", "/captcha"):
            return html_error(start_response, "404 Not Found", f"no page at {path}")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return html_error(start_response, "405 Method Not Allowed",
                              "only GET is allowed here")
        if path == "/stats":
            return json_response(start_response, "200 OK", self.stats.as_dict())
        if path == "/captcha":
            resume = parse_qs(environ.get("QUERY_STRING", "")).get("continue", ["/"])[0]
            return respond(start_response, "200 OK", "text/html; charset=utf-8",
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
            return respond(start_response, "204 No Content", "text/plain", b"", [
                ("Set-Cookie", f"{CONSENT_COOKIE}={CONSENT_VALUE}; Path=/; SameSite=Lax")])
        if path == JS_FARES_PATH:
            self.stats.js_fares += 1
            if self.latency:
                gevent.sleep(self.latency)
            status, content_type, body = self._page(environ, "/api/search")
            return respond(start_response, status, content_type, body)
        found = asset(path)
        if found is None:
            return html_error(start_response, "404 Not Found", f"no page at {path}")
        self.stats.assets[path.split("/")[2]] += 1
        content_type, body = found
        return respond(start_response, "200 OK", content_type, body, cache=ASSET_CACHE)

    def _clock_request(self, environ: dict[str, Any], start_response: StartResponse,
                       path: str) -> Iterable[bytes]:
        """The airline's clock (``/api/clock``), or a search's answer at a time of it
        (``/api/truth?origin=..&destination=..&date=..&at=EPOCH``; ``at`` defaults to now)."""
        now = self.clock.now()
        if path == CLOCK_PATH:
            return json_response(start_response, "200 OK",
                                 {"now": now, "speed": self.clock.speed,
                                  "price_changes": self.faults.price_changes})
        at = parse_qs(environ.get("QUERY_STRING", "")).get("at", [""])[0].strip()
        try:
            when = float(at) if at else now
        except ValueError:
            return json_response(start_response, "400 Bad Request",
                                 {"error": f"bad at {at!r}: expected epoch seconds"})
        status, content_type, body = self._page(environ, "/api/search", at=when)
        return respond(start_response, status, content_type, body)

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
            return json_response(start_response, "429 Too Many Requests",
                                 {"error": "too many requests from your address"},
                                 [("Retry-After", str(retry))])
        if self.block_after is not None and self.block_after.blocks(client):
            self.stats.faults["block_after"] += 1
            return respond(start_response, "403 Forbidden", "text/html; charset=utf-8",
                           block_page().encode())
        if self._fault("throttle", url, nth):
            return json_response(start_response, "429 Too Many Requests",
                                 {"error": "slow down"},
                                 [("Retry-After", str(self.faults.retry_after))])
        if self._fault("error", url, nth):
            code = _ERROR_STATUSES[self.faults.number("error-status", url, nth) % 3]
            return json_response(start_response, code,
                                 {"error": "internal error (injected)"})
        if self._fault("reset", url, nth):
            raise ResetConnection(url)
        if self._fault("block", url, nth):
            return respond(start_response, "403 Forbidden", "text/html; charset=utf-8",
                           block_page().encode())
        if self._fault("captcha", url, nth):
            return respond(start_response, "302 Found", "text/html; charset=utf-8", b"",
                           [("Location", f"/captcha?{urlencode({'continue': url})}")])
        if self._fault("slow", url, nth):
            gevent.sleep(self.faults.slow_ms / 1000)
        status, content_type, body = self._answer(environ, path, url, nth)
        if status.startswith("200"):
            if (path == "/search" and self._fault("soft_block", url, nth)
                    and not content_type.startswith("application/json")):
                body = soft_block_page(*_soft_block_route(environ)).encode()
            if content_type.startswith("text/html") and path == "/search":
                if self._fault("malformed", url, nth):
                    body = sloppy(body.decode()).encode()
            if self._fault("truncate", url, nth):
                cut = 0.1 + 0.8 * (self.faults.number("truncate-at", url, nth) % 1000) / 1000
                body = body[:int(len(body) * cut)]
            if self._fault("endless", url, nth):
                return self._stream(start_response, content_type, endless(body), None)
            if self._fault("trickle", url, nth):
                return self._stream(start_response, content_type, trickle(body), len(body))
        cookies = self._visitor(environ) if path == "/js/search" else []
        return respond(start_response, status, content_type, body, cookies)

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

    def _fares(self, origin: str, destination: str, date: str,
               at: float | None) -> list[Fare]:
        """The one-way fares of a route and date as searches give them: the timetable's,
        drifted, then (with the price process on) at ``at`` on the airline's clock."""
        fares = drift_prices(fares_for(origin, destination, date, self.flights),
                             f"{origin}-{destination}:{date}", self.faults.seed,
                             self.faults.price_drift)
        if self.prices is not None and at is not None:
            fares = self.prices.fares_at(origin, destination, date, fares, at)
        return fares

    def _answer(self, environ: dict[str, Any], path: str, url: str,
                nth: int) -> tuple[str, str, bytes]:
        """A search's status, content type and body: a trip search of the JSON API or the
        site (a parameter of ``tripquery.TRIP_PARAMETERS`` given) or a calendar, else
        ``_page``."""
        params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if path in (CALENDAR_PATH, HTML_CALENDAR_PATH) or (
                path in ("/api/search", "/search") and tripquery.asks_trip(params)):
            return self._trip_page(params, path)
        return self._page(environ, path, url, nth)

    def _trip_page(self, params: dict[str, list[str]], path: str) -> tuple[str, str, bytes]:
        """The answer of a round-trip, multi-city or priced one-way search, or of a calendar
        (see ``voe.demo.airline.trips``): JSON from the API, the same drawn as a page by the
        site (``voe.demo.airline.trippages``); every leg's fares move like a one-way's.
        ``/api/truth`` and ``/js/fares`` still answer plain one-way searches only."""
        at = self.clock.now() if self.prices is not None else None
        try:
            if path in (CALENDAR_PATH, HTML_CALENDAR_PATH):
                origin, destination, month, pricing = tripquery.calendar(params)
                routes = [f"{origin}-{destination}"]
                answer_of = partial(trips.calendar, origin, destination, month, pricing)
            else:
                trip = tripquery.trip(params)
                routes = [f"{leg.origin}-{leg.destination}" for leg in trip.legs]
                answer_of = partial(trips.search, trip)
        except BadQuery as error:
            return json_body("400 Bad Request", {"error": str(error)})
        for route in routes:
            if route in self.fail_routes:
                return json_body("503 Service Unavailable",
                                 {"error": f"route {route} is temporarily unavailable"})

        def fares_of(origin: str, destination: str, date: str) -> list[Fare]:
            return self._fares(origin, destination, date, at)

        try:
            answer = answer_of(fares_of)
        except (UnknownRoute, Departed) as error:
            return json_body("404 Not Found", {"error": str(error)})
        except ValueError as error:
            return json_body("400 Bad Request", {"error": str(error)})
        if at is not None:
            answer["at"] = at
        if path == "/search":
            return "200 OK", "text/html; charset=utf-8", trip_page(answer).encode()
        if path == HTML_CALENDAR_PATH:
            return "200 OK", "text/html; charset=utf-8", calendar_page(answer).encode()
        return json_body("200 OK", answer)

    def _page(self, environ: dict[str, Any], path: str, url: str = "",
              nth: int = 0, at: float | None = None) -> tuple[str, str, bytes]:
        """The status, content type and body of a search, with page faults (if any) but no
        other fault; ``url`` and ``nth`` identify the request for the page faults. With
        the price process on, prices are those at ``at`` on the airline's clock (now)."""
        try:
            origin, destination, date = _query(environ)
        except BadRequest as error:
            return json_body("400 Bad Request", {"error": str(error)})
        if f"{origin}-{destination}" in self.fail_routes:
            return json_body("503 Service Unavailable",
                             {"error": f"route {origin}-{destination} is temporarily unavailable"})
        try:
            check_date(date)
            if self.prices is not None and at is None:
                at = self.clock.now()
            fares = self._fares(origin, destination, date, at)
        except (UnknownRoute, Departed) as error:
            return json_body("404 Not Found", {"error": str(error)})
        except ValueError as error:
            return json_body("400 Bad Request", {"error": str(error)})
        if path == "/api/search":
            search = {"origin": origin, "destination": destination, "date": date}
            answer = {"search": search, "fares": [fare._asdict() for fare in fares]}
            if self.prices is not None:
                answer["at"] = at
            return json_body("200 OK", answer)
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
                return json_body("404 Not Found", {"error": str(error)})
        else:
            page = results_page(origin, destination, date, fares)
        return "200 OK", "text/html; charset=utf-8", page.encode()

