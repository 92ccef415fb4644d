"""The demo backend: search the demo airline's HTML results page and parse it with lxml.

Parsing is the hot path (hundreds of pages per CPU-second), so the XPath
expressions are compiled once, the page is parsed from the raw bytes with one
shared HTML parser, and each row is read by walking its cells once.

The parser reads what a person sees. Elements hidden from the reader (an inline
``style`` with ``display:none`` or ``visibility:hidden``, the ``hidden`` attribute,
``aria-hidden="true"``) are skipped, with their text: decoy tables, rows, counts
and digits planted inside a price. An old price struck through beside the new one
(``<s>``, ``<del>``, ``<strike>``, or a class containing ``old`` or ``was``) is not
read. Whether a page needs this careful reading is decided once per page by one
scan of its bytes, so the usual page costs what it always did. Hiding done by a
style sheet's class rules cannot be seen without a CSS engine: such a decoy still
ends as a ``ParseError`` (its row breaks the flight count), never as a fare.

Hostile pages end as ``ParseError``, never as wrong fares: the page must hold
exactly one visible results table, one flight count and one route heading, the
count must match the rows (a page cut short shows fewer), each row must have each
field once, and a price must read as an amount in reais and nothing else (see
``parse_price``). The page also says which search it answers (route heading and
date): the fare pipeline compares that with the job (``voe.worker.farepipeline``). A
result spread over pages ("Página 1 de 3" and a next link) is followed page by
page through the same session, at most ``MAX_PAGES``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import NamedTuple
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from lxml import etree
from price_parser import Price

from voe.backends.base import ParseError, PermanentError, TransientError
from voe.model import Answer, Fare, Searched, SearchJob
from voe.settings import Settings

CURRENCY = "BRL"
_ERROR_TEXT_LIMIT = 200
# A price at or above this is a misread, not a fare (reais).
MAX_PRICE = Decimal(10_000_000)
# Largest results page read (a 60-flight page is about 35 KB); bigger is not a results page.
MAX_PAGE_BYTES = 4 << 20
# Most pages of one result followed; a pager announcing more is a parse error.
MAX_PAGES = 20
# Deepest markup read inside one cell (libxml2 caps a whole page at 256 levels anyway).
MAX_CELL_DEPTH = 64

# lxml.etree's HTMLParser is the same libxml2 parser as lxml.html's, minus the
# HtmlElement class lookup that costs about 15% on a 60-row page. One parser per
# process is fine for gevent workers (one thread); lxml parsers must not be shared
# between threads.
_PARSER = etree.HTMLParser()
_NEXT = etree.XPath(".//a[@rel='next']")
_COUNT = re.compile(r"\s*([0-9]{1,6})\s+voos?\b(?:\s+em\s+([0-9]{4}-[0-9]{2}-[0-9]{2})\b)?")
_AIRPORT = re.compile(r"\(([A-Z]{3})\)")
_PAGE_OF = re.compile(r"p[áa]gina\s+([0-9]{1,4})\s+de\s+([0-9]{1,4})", re.IGNORECASE)
_ROWS = etree.XPath("tr[@class='flight'] | tbody/tr[@class='flight']")
_FIELDS = ("flight", "departure", "arrival", "price")
# Elements whose text is not what a reader sees: injected into a cell, they void the row.
_NOT_TEXT = frozenset({"script", "style", "template", "noscript", "iframe", "object", "embed",
                       "svg", "math", "textarea", "select", "title"})

# Whether a page may hide elements is decided once per page by counting words in
# its raw bytes (memchr-fast; a regular expression over the page costs more than the
# rest of the parse): every ``style``, ``hidden`` or ``aria-hidden`` attribute adds a
# word that the page's ``<style>`` elements and ``type="hidden"`` inputs do not
# explain. Only then is every table, row and cell looked at. The markup inside a
# cell is always read carefully: cells with markup inside are rare.


def _may_hide(page: bytes) -> bool:
    """Whether the page may carry a hiding attribute (a superset: false alarms cost time only)."""
    low = page.lower()
    # A "style" that does not open or close a <style> element (one scan: pages hold few).
    at = low.find(b"style")
    while at >= 0:
        if low[at - 1:at] != b"<" and low[at - 2:at] != b"</":
            return True
        at = low.find(b"style", at + 5)
    return low.count(b"hidden") > low.count(b'type="hidden"')


_HIDING_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)",
                           re.IGNORECASE)
_STRUCK_TAGS = frozenset({"s", "del", "strike"})
_STRUCK_CLASS = re.compile(r"old|was", re.IGNORECASE)

# Prices. The airline's own format (``R$ 1.234,56``) is read by one regular
# expression, the hot path; anything else goes through price-parser (a library made
# for price strings) and is accepted only when its shape is unambiguous.
_PRICE = re.compile(r"R\$\s*([0-9]{1,3}(?:\.[0-9]{3})*|[0-9]+),([0-9]{2})")
_CURRENCY_SIGNS = {"R$": "BRL", "BRL": "BRL"}
_SPACES = str.maketrans({"\xa0": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ",
                         "\t": " ", "\n": " ", "\r": " "})
# (shape of the amount, its decimal separator) in the order tried; the same grouping
# separator throughout a number, two decimals or none (whole reais).
_AMOUNT_SHAPES = (
    (re.compile(r"[0-9]{1,3}([. ])[0-9]{3}(?:\1[0-9]{3})*,[0-9]{2}|[0-9]+,[0-9]{2}"), ","),
    (re.compile(r"[0-9]+\.[0-9]{2}"), "."),
    (re.compile(r"[0-9]{1,3}([. ])[0-9]{3}(?:\1[0-9]{3})*|[0-9]+"), ","),
)
_CENTS = Decimal("0.01")
# Whole reais of fewer digits than this are below MAX_PRICE whatever they are.
_FAST_DIGITS = len(str(int(MAX_PRICE)))

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


def parse_price(text: str) -> str:
    """Read a price in reais as an exact decimal string with cents (``"1234.56"``).

    Accepted: ``R$ 1.234,56``, ``R$1234,56``, thousands separated by a space, a
    no-break or a thin space (``R$ 1 234,56``), ``BRL 1234.56``, and whole reais
    (``R$ 1.234`` is 1234.00). Anything else raises ``ValueError``: a price with
    words, a sign or a second amount around it, another currency or none, digits
    other than ASCII, mixed or irregular separators (``R$ 1,234.56``, ``R$ 12.34,56``),
    one decimal digit, zero or an absurd amount.
    """
    match = _PRICE.fullmatch(text.strip())
    if match is not None:
        whole = match[1].replace(".", "").lstrip("0")
        if len(whole) < _FAST_DIGITS and (whole or match[2] != "00"):
            # Positive and below MAX_PRICE: what the Decimal path below writes, without it.
            return f"{whole or '0'}.{match[2]}"
        amount = Decimal(f"{match[1].replace('.', '')}.{match[2]}")
    else:
        amount = _library_price(text)
    if amount <= 0:
        raise ValueError(f"price {text!r} is not positive")
    if amount >= MAX_PRICE:
        raise ValueError(f"price {text!r} is beyond any fare")
    return str(amount.quantize(_CENTS))


def _library_price(text: str) -> Decimal:
    """Read a price not in the airline's own format with price-parser, refusing any doubt."""
    spaced = " ".join(text.translate(_SPACES).split())
    for shape, separator in _AMOUNT_SHAPES:
        price = Price.fromstring(spaced, decimal_separator=separator)
        amount_text = (price.amount_text or "").strip()
        if price.amount is None or not shape.fullmatch(amount_text):
            continue
        sign = (price.currency or "").strip()
        if _CURRENCY_SIGNS.get(sign) != CURRENCY:
            raise ValueError(f"unreadable price {text!r}: no price in reais "
                             f"(currency {sign or 'missing'})")
        rest = spaced.replace(sign, "", 1).replace(amount_text, "", 1)
        if rest.strip():
            raise ValueError(f"unreadable price {text!r}: {rest.strip()!r} beside the amount")
        return Decimal(price.amount)
    raise ValueError(f"unreadable price {text!r}")


def _hidden(element: etree._Element) -> bool:
    """Whether the element itself is hidden from the reader (inline style or attributes)."""
    style = element.get("style")
    if style is not None and _HIDING_STYLE.search(style):
        return True
    if element.get("hidden") is not None:
        return True
    return (element.get("aria-hidden") or "").strip().lower() == "true"


def _visible(element: etree._Element) -> bool:
    """Whether neither the element nor any of its ancestors is hidden from the reader."""
    if _hidden(element):
        return False
    return not any(_hidden(ancestor) for ancestor in element.iterancestors())


def _struck(element: etree._Element) -> bool:
    """Whether the element shows an old price: struck through, or classed ``old``/``was``."""
    if element.tag in _STRUCK_TAGS:
        return True
    return bool(_STRUCK_CLASS.search(element.get("class") or ""))


def _careful_text(element: etree._Element, parts: list[str], price: bool, depth: int) -> None:
    """Add the text a reader sees inside ``element`` to ``parts`` (hidden and struck skipped)."""
    if depth > MAX_CELL_DEPTH:
        raise ValueError("markup nested too deep inside a cell")
    for child in element:
        if isinstance(child.tag, str) and not _hidden(child) and not (price and _struck(child)):
            if child.text:
                parts.append(child.text)
            _careful_text(child, parts, price, depth + 1)
        if child.tail:
            parts.append(child.tail)


def _cell_text(cell: etree._Element) -> str:
    """The text a reader sees in a cell; ``ValueError`` if it holds code or embedded content.

    Elements hidden from the reader are skipped, and in a price cell so is an old
    price struck through beside the new one.
    """
    if len(cell) == 0:
        return (cell.text or "").strip()
    for element in cell.iter():
        if element.tag in _NOT_TEXT:
            raise ValueError(f"a {element.tag} element inside the {cell.get('class')} cell")
    parts = [cell.text or ""]
    _careful_text(cell, parts, cell.get("class") == "price", 0)
    return "".join(parts).strip()


class ResultsPage(NamedTuple):
    """One results page as read: its fares, what it answers, its flight count and pager.

    ``count`` is the number of flights the page announces for the whole result;
    ``number`` and ``pages`` come from its pager (1 and 1 without one) and ``next``
    is the href of its next-page link, if any.
    """

    fares: list[Fare]
    answered: Searched
    count: int
    number: int
    pages: int
    next: str | None


def read_page(page: bytes) -> ResultsPage:
    """Read one results page, possibly one of several; ``ParseError`` (with the page) if odd.

    A results table without flights is a valid empty result; a page without the
    table, its flight count or its route heading, with more than one of either (of
    those a reader sees), or with a row missing a cell, repeating one or showing an
    unreadable price, is not.
    """
    if len(page) > MAX_PAGE_BYTES:
        raise ParseError(f"page of {len(page)} bytes, over the {MAX_PAGE_BYTES} limit",
                         page=page)
    if not page or page.isspace():  # no copy of the page, unlike strip()
        raise ParseError("empty page", page=page)
    try:
        root = etree.fromstring(page, _PARSER)
    except (etree.LxmlError, ValueError) as error:
        raise ParseError(f"unreadable page: {error}", page=page) from None
    careful = _may_hide(page)
    marks = _landmarks(root, careful)
    tables = marks.tables
    if not tables:
        raise ParseError("no results table on the page", page=page)
    if len(tables) > 1:
        raise ParseError(f"{len(tables)} results tables on the page", page=page)
    count, date = _flight_count(marks.summaries, page)
    answered = Searched(*_route(marks.headings, page), date)
    fares = []
    for number, row in enumerate(_ROWS(tables[0]), start=1):
        if careful and _hidden(row):
            continue
        cells = {}
        for cell in row:
            name = cell.get("class")
            if name in _FIELDS:
                if careful and _hidden(cell):
                    continue
                if name in cells:
                    raise ParseError(f"row {number}: more than one {name}", page=page)
                if len(cell) == 0:  # _cell_text's plain case, inline: nearly every cell
                    cells[name] = (cell.text or "").strip()
                    continue
                try:
                    cells[name] = _cell_text(cell)
                except ValueError as error:
                    raise ParseError(f"row {number}: {error}", page=page) from None
        if len(cells) != len(_FIELDS) or not all(cells.values()):
            missing = [name for name in _FIELDS if not cells.get(name)]
            raise ParseError(f"row {number}: no {', '.join(missing)}", page=page)
        try:
            price = parse_price(cells["price"])
        except ValueError as error:
            raise ParseError(f"row {number}: {error}", page=page) from None
        fares.append(Fare(cells["flight"], cells["departure"], cells["arrival"], price, CURRENCY))
    number, pages, after = _pager(marks.pagers, page, careful)
    return ResultsPage(fares, answered, count, number, pages, after)


def parse_results(page: bytes) -> Answer:
    """Parse a whole result on one page into an ``Answer``; ``ParseError`` (with the page) if odd.

    On top of ``read_page``'s checks, the flight count must match the rows, and a
    page that says it is one of several is refused (``DemoBackend`` follows pages).
    """
    read = read_page(page)
    if read.pages != 1:
        raise ParseError(f"page {read.number} of {read.pages}: the rest of the result is on "
                         "other pages (`voe reparse` cannot re-read it alone; `voe failed "
                         "--retry` searches again)", page=page)
    _check_count(read.count, len(read.fares), page)
    return Answer(read.fares, read.answered, page)


def _check_count(expected: int, found: int, page: bytes) -> None:
    if found != expected:
        raise ParseError(f"the page announces {expected} flights but lists {found} "
                         "(cut short?)", page=page)


class _Landmarks(NamedTuple):
    """The elements a results page is read by, those a reader sees, found in one walk."""

    tables: list[etree._Element]
    summaries: list[etree._Element]
    headings: list[etree._Element]
    pagers: list[etree._Element]


def _landmarks(root: etree._Element | None, careful: bool) -> _Landmarks:
    """Find the results tables, flight counts, headings and pagers (one walk of the tree:
    cheaper than an XPath per kind, each of which walks the whole tree again)."""
    marks = _Landmarks([], [], [], [])
    if root is None:
        return marks
    for element in root.iter("table", "p", "h1", "nav"):
        tag = element.tag
        if tag == "table":
            found = marks.tables if element.get("id") == "results" else None
        elif tag == "p":
            found = marks.summaries if element.get("class") == "summary" else None
        elif tag == "h1":
            found = marks.headings
        else:
            found = marks.pagers if element.get("class") == "pager" else None
        if found is not None and (not careful or _visible(element)):
            found.append(element)
    return marks


def _only_visible(elements: list[etree._Element], careful: bool) -> list[etree._Element]:
    return [element for element in elements if _visible(element)] if careful else elements


def _flight_count(summaries: list[etree._Element], page: bytes) -> tuple[int, str]:
    """The number of flights and the date the page announces (``N voos em YYYY-MM-DD``)."""
    if len(summaries) != 1:
        raise ParseError("no flight count on the page" if not summaries else
                         f"{len(summaries)} flight counts on the page", page=page)
    match = _COUNT.match("".join(summaries[0].itertext()))
    if match is None:
        raise ParseError("unreadable flight count on the page", page=page)
    if match[2] is None:
        raise ParseError("the page does not say the date it answers", page=page)
    return int(match[1]), match[2]


def _route(candidates: list[etree._Element], page: bytes) -> tuple[str, str]:
    """The origin and destination of the page's route heading (``... (GRU) → ... (REC)``).

    The heading is the one ``h1`` naming airports by code in parentheses; it must name
    exactly two (the arrow between them is not relied on: a page in the wrong encoding
    loses it).
    """
    routes = [_AIRPORT.findall("".join(heading.itertext())) for heading in candidates]
    routes = [codes for codes in routes if codes]
    if len(routes) != 1:
        raise ParseError("no route heading on the page" if not routes else
                         f"{len(routes)} route headings on the page", page=page)
    if len(routes[0]) != 2:
        raise ParseError(f"a route heading naming {len(routes[0])} airports", page=page)
    return routes[0][0], routes[0][1]


def _pager(pagers: list[etree._Element], page: bytes,
           careful: bool) -> tuple[int, int, str | None]:
    """The page's number, the result's pages and the next page's href (1, 1, None: no pager)."""
    if not pagers:
        return 1, 1, None
    if len(pagers) > 1:
        raise ParseError(f"{len(pagers)} pagers on the page", page=page)
    match = _PAGE_OF.search(" ".join("".join(pagers[0].itertext()).split()))
    if match is None:
        raise ParseError("unreadable pager on the page", page=page)
    number, pages = int(match[1]), int(match[2])
    if not 1 <= number <= pages:
        raise ParseError(f"pager says page {number} of {pages}", page=page)
    if pages > MAX_PAGES:
        raise ParseError(f"a result of {pages} pages, over the {MAX_PAGES}-page limit", page=page)
    links = _only_visible(_NEXT(pagers[0]), careful)
    after = links[0].get("href") if len(links) == 1 else None
    if number < pages and not after:
        raise ParseError(f"page {number} of {pages} without a next-page link", page=page)
    return number, pages, after if number < pages else None


class DemoBackend:
    """Search the demo airline's HTML site (``/search``), as a scraper of a real airline would.

    The demo airline sells one-way fares only, so a job's ``return_date`` is ignored.
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
            _check_count(first.count, len(first.fares), page)
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
        _check_count(first.count, len(fares), whole)
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
