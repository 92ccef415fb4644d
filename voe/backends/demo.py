"""The demo backend: search the demo airline's HTML results page and parse it with lxml.

Parsing is the hot path (hundreds of pages per CPU-second), so the XPath
expressions are compiled once, the page is parsed from the raw bytes with one
shared HTML parser, and each row is read by walking its cells once.

Hostile pages end as ``ParseError``, never as wrong fares: the page must hold
exactly one results table and one flight count, the count must match the rows (a
page cut short shows fewer), each row must have each field once, and a price must
read exactly as ``R$ 1.234,56``.
"""

from __future__ import annotations

import re
from decimal import Decimal

import requests
from lxml import etree

from voe.backends.base import ParseError, PermanentError, TransientError
from voe.model import Fare, SearchJob
from voe.settings import Settings

CURRENCY = "BRL"
_ERROR_TEXT_LIMIT = 200
# A price at or above this is a misread, not a fare (reais).
MAX_PRICE = Decimal(10_000_000)
# Largest results page read (a 60-flight page is about 35 KB); bigger is not a results page.
MAX_PAGE_BYTES = 4 << 20

# lxml.etree's HTMLParser is the same libxml2 parser as lxml.html's, minus the
# HtmlElement class lookup that costs about 15% on a 60-row page. One parser per
# process is fine for gevent workers (one thread); lxml parsers must not be shared
# between threads.
_PARSER = etree.HTMLParser()
_TABLE = etree.XPath("//table[@id='results']")
_SUMMARY = etree.XPath("//p[@class='summary']")
_COUNT = re.compile(r"\s*([0-9]{1,6})\s+voos?\b")
_ROWS = etree.XPath("tr[@class='flight'] | tbody/tr[@class='flight']")
_FIELDS = ("flight", "departure", "arrival", "price")
# Elements whose text is not what a reader sees: injected into a cell, they void the row.
_NOT_TEXT = frozenset({"script", "style", "template", "noscript", "iframe", "object", "embed",
                       "svg", "math", "textarea", "select", "title"})
_PRICE = re.compile(r"R\$\s*([0-9]{1,3}(?:\.[0-9]{3})*|[0-9]+),([0-9]{2})")

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
          timeout: float | tuple[float, float]) -> bytes:
    """GET one search of the demo airline and return the page, mapping failures to error kinds.

    The session retries transient failures first (see ``voe.http``); what is left
    of them here (connection errors, timeouts, 429 and 5xx) is transient; 404 and
    other 4xx are permanent. Shared by the HTML and the JSON backends of the demo
    airline. ``timeout`` is seconds or a (connect, read) pair.
    """
    params = {"origin": job.origin, "destination": job.destination, "date": job.date}
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


def parse_price(text: str) -> str:
    """Turn ``R$ 1.234,56`` into the exact decimal string ``1234.56``; ``ValueError`` if odd."""
    match = _PRICE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"unreadable price {text!r}")
    amount = Decimal(f"{match[1].replace('.', '')}.{match[2]}")
    if amount <= 0:
        raise ValueError(f"price {text!r} is not positive")
    if amount >= MAX_PRICE:
        raise ValueError(f"price {text!r} is beyond any fare")
    return str(amount)


def _cell_text(cell: etree._Element) -> str:
    """The visible text of a cell; ``ValueError`` if it holds code or embedded content."""
    if len(cell) == 0:
        return (cell.text or "").strip()
    for element in cell.iter():
        if element.tag in _NOT_TEXT:
            raise ValueError(f"a {element.tag} element inside the {cell.get('class')} cell")
    return "".join(cell.itertext()).strip()


def parse_results(page: bytes) -> list[Fare]:
    """Parse the demo airline's results page into fares; ``ParseError`` (with the page) if odd.

    A results table without flights is a valid empty result; a page without the
    table or its flight count, with more than one of either, whose count differs from
    its rows, or with a row missing a cell, repeating one or showing an unreadable
    price, is not.
    """
    if len(page) > MAX_PAGE_BYTES:
        raise ParseError(f"page of {len(page)} bytes, over the {MAX_PAGE_BYTES} limit",
                         page=page)
    if not page.strip():
        raise ParseError("empty page", page=page)
    try:
        root = etree.fromstring(page, _PARSER)
    except (etree.LxmlError, ValueError) as error:
        raise ParseError(f"unreadable page: {error}", page=page) from None
    tables = _TABLE(root) if root is not None else []
    if not tables:
        raise ParseError("no results table on the page", page=page)
    if len(tables) > 1:
        raise ParseError(f"{len(tables)} results tables on the page", page=page)
    expected = _flight_count(root, page)
    fares = []
    for number, row in enumerate(_ROWS(tables[0]), start=1):
        cells = {}
        for cell in row:
            name = cell.get("class")
            if name in _FIELDS:
                if name in cells:
                    raise ParseError(f"row {number}: more than one {name}", page=page)
                try:
                    cells[name] = _cell_text(cell)
                except ValueError as error:
                    raise ParseError(f"row {number}: {error}", page=page) from None
        missing = [name for name in _FIELDS if not cells.get(name)]
        if missing:
            raise ParseError(f"row {number}: no {', '.join(missing)}", page=page)
        try:
            price = parse_price(cells["price"])
        except ValueError as error:
            raise ParseError(f"row {number}: {error}", page=page) from None
        fares.append(Fare(cells["flight"], cells["departure"], cells["arrival"], price, CURRENCY))
    if len(fares) != expected:
        raise ParseError(f"the page announces {expected} flights but lists {len(fares)} "
                         "(cut short?)", page=page)
    return fares


def _flight_count(root: etree._Element, page: bytes) -> int:
    """The number of flights the page announces (``<p class="summary">N voos ...``)."""
    summaries = _SUMMARY(root)
    if len(summaries) != 1:
        raise ParseError("no flight count on the page" if not summaries else
                         f"{len(summaries)} flight counts on the page", page=page)
    match = _COUNT.match("".join(summaries[0].itertext()))
    if match is None:
        raise ParseError("unreadable flight count on the page", page=page)
    return int(match[1])


class DemoBackend:
    """Search the demo airline's HTML site (``/search``), as a scraper of a real airline would.

    The demo airline sells one-way fares only, so a job's ``return_date`` is ignored.
    """

    name = "demo"

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/search"
        self.timeout = (settings.voe_http_connect_timeout, settings.voe_http_timeout)

    def search(self, job: SearchJob, http: requests.Session) -> list[Fare]:
        """Fetch and parse the fares of ``job``; raise a ``BackendError`` on failure."""
        return parse_results(fetch(http, self.url, job, self.timeout))
