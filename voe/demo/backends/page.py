"""The demo backend: search the demo airline's HTML results page (``/search``).

The page is read by ``voe.demo.backends.parse`` (its prices by
``voe.demo.backends.price``); here it is fetched, failures mapped to error kinds,
and a result spread over pages ("Página 1 de 3" and a next link) followed page by
page through the same session (at most the parser's ``MAX_PAGES``).
"""

from __future__ import annotations

from urllib.parse import urlencode, urljoin, urlsplit

import requests

from voe.backends.base import ParseError, PermanentError, TransientError
from voe.demo.backends.parse import check_count, parse_results, read_page
from voe.model import Answer, SearchJob
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

    The demo airline's site sells one adult's economy one-way fares only: no
    ``round_trips`` nor ``search_options``, so the worker refuses a round-trip job or one
    with search options (``voe.backends.base.check_search``) before it is searched.
    A result the airline spreads over pages is read page by page through the same
    session, following each page's next link (on the airline's own site only).
    """

    name = "demo"
    # Words of the demo airline's block pages (captcha, 403 page, "0 voos" with a banner):
    # a page holding one is a block, never a result (see voe.worker.fetch.blocks).
    block_markers = ("captcha", "acesso negado", "access denied",
                     "acesso temporariamente bloqueado", "muitas requisições")

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/search"
        self.timeout = (settings.voe_http_connect_timeout, settings.voe_http_timeout)

    def search(self, job: SearchJob, http: requests.Session) -> Answer:
        """Fetch and parse the fares of ``job``; raise a ``BackendError`` on failure."""
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
        return parse_results(page)

    def _next_url(self, href: str, page: bytes) -> str:
        """The absolute URL of a next-page link; ``ParseError`` if it leaves the search page."""
        url = urljoin(self.url, href)
        target, own = urlsplit(url), urlsplit(self.url)
        if (target.scheme, target.netloc, target.path) != (own.scheme, own.netloc, own.path):
            raise ParseError(f"a next-page link off the airline's search: {href[:200]!r}",
                             page=page)
        return url
