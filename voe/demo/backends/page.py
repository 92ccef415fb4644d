"""The demo backend: search the demo airline's HTML results page (``/search``).

The page is read by ``voe.demo.backends.parse`` (its prices by
``voe.demo.backends.price``); here it is fetched, failures mapped to error kinds,
and a result spread over pages ("Página 1 de 3" and a next link) followed page by
page through the same session (at most the parser's ``MAX_PAGES``). Trip searches
(round trips, multi-city trips, search options) and calendars have pages of their
own, read by ``voe.demo.backends.trippage``.
"""

from __future__ import annotations

from urllib.parse import urlencode, urljoin, urlsplit

import requests

from voe.backends.base import ParseError, PermanentError, TransientError
from voe.demo.backends.parse import check_count, parse_results, read_page
from voe.demo.backends.trippage import parse_calendar_page, parse_trip_page
from voe.model import Answer, SearchJob, SearchOptions, parse_options
from voe.settings import Settings

_ERROR_TEXT_LIMIT = 200

_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.RetryError,
)


def _airline_error(response: requests.Response) -> str:
    """Return the error text the airline gave: the JSON ``error`` or the start of the body."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"]
    return response.text[:_ERROR_TEXT_LIMIT].strip() or response.reason or "no details"


def search_params(job: SearchJob) -> dict[str, str] | None:
    """The demo airline's query for ``job`` beyond a plain one-way search (None for that:
    ``fetch`` sends origin, destination and date): a calendar's month, a round trip's
    return, a multi-city trip's legs, and the search options it asks (only those not the
    defaults)."""
    options = {name: str(value) for name, value, default in zip(
        SearchOptions._fields, parse_options(job.options), SearchOptions(), strict=True)
        if value != default} if job.options else {}
    if job.calendar:
        return {"origin": job.origin, "destination": job.destination, "month": job.date,
                **options}
    if job.legs:
        return {"legs": job.legs, **options}
    if not job.return_date and not options:
        return None
    params = {"origin": job.origin, "destination": job.destination, "date": job.date}
    if job.return_date:
        params["return"] = job.return_date
    return {**params, **options}


def fetch(http: requests.Session, url: str, job: SearchJob,
          timeout: float | tuple[float, float], params: dict[str, str] | None = None) -> bytes:
    """GET one search of the demo airline and return the page, mapping failures to error kinds.

    The session retries transient failures first (see ``voe.worker.fetch.retry``), and its fetch
    chain raises ``BlockedError`` for a block (403, a 429 still there, a page with the
    backend's ``block_markers``) and a transient error for a fetch past its deadline or
    body cap (see ``voe.worker.fetch``); what is left here (connection errors, timeouts, 429
    and 5xx) is transient; 404 and other 4xx are permanent. Shared by the HTML and the
    JSON backends of the demo airline. ``timeout`` is seconds or a (connect, read)
    pair; ``params`` replaces the job's search parameters (``{}`` for a URL that
    carries its own query, such as the next page of a result).
    """
    if params is None:
        params = {"origin": job.origin, "destination": job.destination, "date": job.date}
    if params and "?" not in url and "#" not in url:
        # The query requests would build from ``params`` (the same URL), built here once
        # instead of through requests' generic parameter encoding.
        url, params = f"{url}?{urlencode(params, doseq=True)}", None
    try:
        # The response is closed on every path: an error's traceback keeps this frame
        # alive, and it must not hold an open stream.
        with http.get(url, params=params, timeout=timeout) as response:
            status = response.status_code
            if 200 <= status < 300:
                return response.content
            message = f"demo airline: {_airline_error(response)} (HTTP {status})"
    except _TRANSIENT_ERRORS as error:
        raise TransientError(f"demo airline unreachable: {error}") from error
    except requests.RequestException as error:
        raise PermanentError(f"demo airline request failed: {error}") from error
    if status == 429 or status >= 500:
        raise TransientError(message)
    if 400 <= status < 500:
        raise PermanentError(message)
    raise TransientError(message)


class DemoBackend:
    """Search the demo airline's HTML site (``/search``), as a scraper of a real airline would.

    A plain one-way search's result, which the airline may spread over pages, is read
    page by page through the same session, following each page's next link (on the
    airline's own site only). Round trips, multi-city trips and searches with options are
    one trip page each, and a calendar job the month's calendar page
    (``voe.demo.backends.trippage``).
    """

    name = "demo"
    # Words of the demo airline's block pages (captcha, 403 page, "0 voos" with a banner):
    # a page holding one is a block, never a result (see voe.worker.fetch.blocks).
    block_markers = ("captcha", "acesso negado", "access denied",
                     "acesso temporariamente bloqueado", "muitas requisições")

    round_trips = True
    multi_city = True
    calendars = True
    search_options = frozenset(SearchOptions._fields)

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/search"
        self.calendar_url = f"{settings.voe_demo_airline_url}/calendar"
        self.timeout = (settings.voe_http_connect_timeout, settings.voe_http_timeout)

    def search(self, job: SearchJob, http: requests.Session) -> Answer:
        """Fetch and parse the fares of ``job``; raise a ``BackendError`` on failure."""
        params = search_params(job)
        if job.calendar:
            return parse_calendar_page(fetch(http, self.calendar_url, job, self.timeout, params))
        if params is not None:  # a trip page: one page, every offer on it
            return parse_trip_page(fetch(http, self.url, job, self.timeout, params))
        page = fetch(http, self.url, job, self.timeout)
        first = read_page(page)
        if first.pages == 1:
            check_count(first.count, len(first.fares), page)
            return Answer(first.fares, first.answered, page)
        if first.number != 1:
            raise ParseError(f"the search answered page {first.number} of {first.pages}, "
                             "not the first", page=page)
        fares, pages, read = list(first.fares), [page], first
        while read.next is not None:
            url = self._next_url(read.next, page)
            page = fetch(http, url, job, self.timeout, params={})
            pages.append(page)
            read = read_page(page)
            expected = len(pages)
            if (read.number, read.pages) != (expected, first.pages):
                raise ParseError(f"the next page says page {read.number} of {read.pages}, "
                                 f"not {expected} of {first.pages}", page=page)
            if read.answered != first.answered or read.count != first.count:
                raise ParseError(f"page {expected} answers {read.answered} ({read.count} "
                                 f"flights), page 1 {first.answered} ({first.count} flights)",
                                 page=page)
            fares.extend(read.fares)
        whole = b"".join(pages)
        check_count(first.count, len(fares), whole)
        return Answer(fares, first.answered, whole)

    def parse(self, job: SearchJob, page: bytes) -> Answer:
        """Re-read one kept page (`voe reparse`): a one-page result, without any request.

        A result spread over several pages cannot be re-read from one file: that is a
        ``ParseError`` saying so (`voe failed retry` searches again).
        """
        if job.calendar:
            return parse_calendar_page(page)
        if search_params(job) is not None:
            return parse_trip_page(page)
        return parse_results(page)

    def _next_url(self, href: str, page: bytes) -> str:
        """The absolute URL of a next-page link; ``ParseError`` if it leaves the search page."""
        url = urljoin(self.url, href)
        target, own = urlsplit(url), urlsplit(self.url)
        if (target.scheme, target.netloc, target.path) != (own.scheme, own.netloc, own.path):
            raise ParseError(f"a next-page link off the airline's search: {href[:200]!r}",
                             page=page)
        return url
