"""The demo backend's parser: the demo airline's HTML results page, read with lxml.

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
``voe.demo.backends.price.parse_price``). The page also says which search it
answers (route heading and date): the fare pipeline compares that with the job
(``voe.worker.farepipeline``). A result spread over pages ("Página 1 de 3" and a
next link) is followed page by page through the same session
(``voe.demo.backends.page``), at most ``MAX_PAGES``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from lxml import etree

from voe.backends.base import ParseError
from voe.demo.backends.price import CURRENCY, parse_price
from voe.model import Answer, Fare, Searched

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
_FIELD_SET = frozenset(_FIELDS)  # a cell's class is looked up in it (hashing beats four compares)
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
            if name in _FIELD_SET:
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
    check_count(read.count, len(read.fares), page)
    return Answer(read.fares, read.answered, page)


def check_count(expected: int, found: int, page: bytes) -> None:
    """``ParseError`` unless a result lists as many flights as its page announced."""
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
