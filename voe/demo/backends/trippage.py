"""The demo backend's reader of the airline's trip and calendar pages (round trips,
multi-city trips, a party, cabin or point of sale asked, a month's calendar).

The same care as the results page's reader (``voe.demo.backends.parse``): what a reader
does not see is not read, and anything odd is a ``ParseError`` with the page, never a
fare. The page states the search it answers in its ``dl.search`` (dates or legs,
passengers, cabin, point of sale, currency): that becomes ``Answer.answered`` for the
fare pipeline to compare with the job, and the currency of every price, which must be
written in it (``R$`` for reais, else the currency's code).
"""

from __future__ import annotations

import re
from decimal import Decimal

from lxml import etree

from voe.backends.base import ParseError
from voe.demo.backends.parse import (  # the results page reader's careful helpers
    _PARSER,
    MAX_PAGE_BYTES,
    _cell_text,
    _may_hide,
    _visible,
)
from voe.demo.backends.price import MAX_PRICE, parse_price
from voe.model import (
    Answer,
    CalendarDay,
    Fare,
    MultiCityFare,
    RoundTripFare,
    Searched,
    SearchOptions,
    legs_text,
    parse_legs,
)

_AIRPORT = re.compile(r"\(([A-Z]{3})\)")
_COUNT = re.compile(r"\s*([0-9]{1,6})\s+(ofertas?|dias?)\s*")
_MONEY = re.compile(r"([A-Z]{3}) ([0-9]{1,3}(?:\.[0-9]{3})*|[0-9]+),([0-9]{2})")
_PARTY = ("adults", "children", "infants")
_LEG_PARTS = ("flight", "departure", "arrival")
_CENTS = Decimal("0.01")


def read_money(text: str, currency: str) -> str:
    """A price of the page in ``currency`` as a decimal string (``"1234.56"``): ``R$
    1.234,56`` in reais, ``USD 1.234,56`` in another; ``ValueError`` for anything else."""
    if currency == "BRL":
        return parse_price(text)
    match = _MONEY.fullmatch(" ".join(text.split()))
    if match is None or match[1] != currency:
        raise ValueError(f"price {text!r} is not an amount in {currency}, the page's currency")
    amount = Decimal(f"{match[2].replace('.', '')}.{match[3]}")
    if not 0 < amount < MAX_PRICE:
        raise ValueError(f"price {text!r} is not a fare's")
    return str(amount.quantize(_CENTS))


class _Page:
    """One trip or calendar page, parsed, with what a reader sees of it."""

    def __init__(self, page: bytes) -> None:
        if len(page) > MAX_PAGE_BYTES:
            raise ParseError(f"page of {len(page)} bytes, over the {MAX_PAGE_BYTES} limit",
                             page=page)
        if not page or page.isspace():
            raise ParseError("empty page", page=page)
        try:
            root = etree.fromstring(page, _PARSER)
        except (etree.LxmlError, ValueError) as error:
            raise ParseError(f"unreadable page: {error}", page=page) from None
        if root is None:
            raise ParseError("empty page", page=page)
        self.page, self.root, self.careful = page, root, _may_hide(page)

    def fail(self, problem: str) -> ParseError:
        return ParseError(problem, page=self.page)

    def seen(self, elements: list[etree._Element]) -> list[etree._Element]:
        """The ``elements`` a reader sees."""
        return [element for element in elements if _visible(element)] if self.careful \
            else elements

    def one(self, path: str, what: str) -> etree._Element:
        """The one visible element at ``path`` (an XPath); ``ParseError`` for none or more."""
        found = self.seen(self.root.xpath(path))
        if len(found) != 1:
            raise self.fail(f"no {what} on the page" if not found else
                            f"{len(found)} {what}s on the page")
        return found[0]

    def text(self, element: etree._Element, what: str) -> str:
        """The text a reader sees in ``element``; ``ParseError`` if it hides code."""
        try:
            return _cell_text(element)
        except ValueError as error:
            raise self.fail(f"{what}: {error}") from None

    def search(self) -> dict[str, str]:
        """The ``dl.search`` items by class, each once."""
        found: dict[str, str] = {}
        for item in self.seen(self.one("//dl[@class='search']", "search").findall("dd")):
            name = item.get("class") or ""
            if name in found:
                raise self.fail(f"the search states its {name} twice")
            found[name] = self.text(item, f"the search's {name}")
        return found

    def airports(self) -> list[str]:
        """The airports of the page's one route heading, in order."""
        routes = [_AIRPORT.findall("".join(heading.itertext()))
                  for heading in self.seen(self.root.xpath("//h1"))]
        routes = [codes for codes in routes if codes]
        if len(routes) != 1:
            raise self.fail("no route heading on the page" if not routes else
                            f"{len(routes)} route headings on the page")
        return routes[0]

    def count(self, unit: str) -> int:
        """The number of offers (or days) the page announces."""
        match = _COUNT.fullmatch(self.text(self.one("//p[@class='summary']", "count"), "count"))
        if match is None or not match[2].startswith(unit):
            raise self.fail(f"unreadable count of {unit}s on the page")
        return int(match[1])

    def options(self, search: dict[str, str]) -> SearchOptions:
        """The party, cabin, point of sale and currency the page states."""
        try:
            party = [int(search[name]) if search[name].isdigit() else -1 for name in _PARTY]
            return SearchOptions(*party, search["cabin"], search["pos"],
                                 search["currency"]).check()
        except KeyError as error:
            raise self.fail(f"the search does not state its {error.args[0]}") from None
        except ValueError as error:
            raise self.fail(f"the search states {error}") from None

    def price(self, row: etree._Element, number: int, currency: str) -> str:
        cells = self.seen(row.findall("td[@class='price']"))
        if len(cells) != 1:
            raise self.fail(f"row {number}: {len(cells)} prices")
        try:
            return read_money(self.text(cells[0], f"row {number}'s price"), currency)
        except ValueError as error:
            raise self.fail(f"row {number}: {error}") from None

    def leg(self, cell: etree._Element, number: int, leg: int) -> tuple[str, str, str]:
        """A ``td.leg``'s flight, departure and arrival, each once."""
        found: dict[str, str] = {}
        for element in self.seen([element for element in cell.iter("span", "time")
                                  if element.get("class") in _LEG_PARTS]):
            name = element.get("class")
            if name in found:
                raise self.fail(f"row {number}, leg {leg}: more than one {name}")
            found[name] = self.text(element, f"row {number}, leg {leg}")
        if len(found) != 3 or not all(found.values()):
            missing = [name for name in _LEG_PARTS if not found.get(name)]
            raise self.fail(f"row {number}, leg {leg}: no {', '.join(missing)}")
        return found["flight"], found["departure"], found["arrival"]


def parse_trip_page(page: bytes) -> Answer:
    """Read a trip page into an ``Answer`` (one-way, round-trip or multi-city fares in the
    page's currency, and the search it states); ``ParseError`` (with the page) if odd."""
    read = _Page(page)
    search = read.search()
    options = read.options(search)
    airports = read.airports()
    if "legs" in search:
        try:
            legs = parse_legs(search["legs"])
        except ValueError as error:
            raise read.fail(f"the search's legs: {error}") from None
        if airports != [legs[0].origin, *(leg.destination for leg in legs)]:
            raise read.fail(f"the route heading ({' → '.join(airports)}) is not the legs' "
                            f"({search['legs']})")
        answered = Searched(legs[0].origin, legs[-1].destination, legs[0].date, None, options,
                            legs_text(legs))
        flights = len(legs)
    else:
        if len(airports) != 2 or "date" not in search:
            raise read.fail("the page states no route and date")
        back = search.get("return") or None
        answered = Searched(*airports, search["date"], back, options)
        flights = 2 if back else 1
    rows = read.seen(read.one("//table[@id='trips']", "trips table").xpath(
        "tr[@class='trip'] | tbody/tr[@class='trip']"))
    fares: list[Fare | RoundTripFare | MultiCityFare] = []
    for number, row in enumerate(rows, start=1):
        cells = read.seen(row.findall("td[@class='leg']"))
        if len(cells) != flights:
            raise read.fail(f"row {number}: {len(cells)} flights, the trip has {flights}")
        legs_read = [read.leg(cell, number, leg) for leg, cell in enumerate(cells, start=1)]
        total = (read.price(row, number, options.currency), options.currency)
        if "legs" in search:
            fares.append(MultiCityFare(*legs_read[0], *total, tuple(legs_read[1:])))
        elif back:
            fares.append(RoundTripFare(*legs_read[0], *total, *legs_read[1]))
        else:
            fares.append(Fare(*legs_read[0], *total))
    if read.count("oferta") != len(fares):
        raise read.fail(f"the page announces {read.count('oferta')} offers but lists "
                        f"{len(fares)} (cut short?)")
    return Answer(fares, answered, page)


def parse_calendar_page(page: bytes) -> Answer:
    """Read a calendar page into an ``Answer`` of ``CalendarDay`` items (the cheapest fare
    of each day, in the page's currency); ``ParseError`` (with the page) if odd."""
    read = _Page(page)
    search = read.search()
    options = read.options(search)
    airports = read.airports()
    if len(airports) != 2 or "month" not in search:
        raise read.fail("the page states no route and month")
    rows = read.seen(read.one("//table[@id='calendar']", "calendar table").xpath(
        "tr[@class='day'] | tbody/tr[@class='day']"))
    days = []
    for number, row in enumerate(rows, start=1):
        dates = read.seen(row.findall("td[@class='date']"))
        if len(dates) != 1:
            raise read.fail(f"row {number}: {len(dates)} dates")
        days.append(CalendarDay(read.text(dates[0], f"row {number}'s date"),
                                read.price(row, number, options.currency), options.currency))
    if read.count("dia") != len(days):
        raise read.fail(f"the page announces {read.count('dia')} days but lists {len(days)} "
                        "(cut short?)")
    return Answer(days, Searched(*airports, search["month"], None, options), page)
