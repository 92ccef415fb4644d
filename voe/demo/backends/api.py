"""The demo-api backend: search the demo airline's JSON API (``/api/search``).

Same airline and error mapping as the demo backend, but the fares come as JSON,
which is checked field by field before it is trusted. The answer's ``search``
object says which search it answers (origin, destination, date, and the return date
of a round trip), and for a search with options the party, cabin, point of sale and
currency, for the fare pipeline to compare with the job. It reads round trips: a job
with a return date asks for one (``return=``), and each fare of the answer holds its
``outbound`` and ``inbound`` flights and one total price. A job's search options go to
the airline as ``adults``, ``children``, ``infants``, ``cabin``, ``pos`` and
``currency``; each fare's currency is the one the airline answered in. A calendar job
(its date a month) asks ``/api/calendar`` and reads the cheapest fare of each day; a
multi-city job sends its ``legs`` and reads each fare's legs and total.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import requests

from voe.backends.base import ParseError
from voe.demo.backends.page import DemoBackend, fetch, search_params
from voe.model import (
    Answer,
    CalendarDay,
    Fare,
    Leg,
    MultiCityFare,
    RoundTripFare,
    Searched,
    SearchJob,
    SearchOptions,
    legs_text,
    parse_legs,
)
from voe.settings import Settings

_FIELDS = ("flight", "departure", "arrival", "price", "currency")
_LEG_FIELDS = ("flight", "departure", "arrival")
_TOTAL_FIELDS = ("price", "currency")
_SEARCH_FIELDS = ("origin", "destination", "date")
_CALENDAR_FIELDS = ("origin", "destination", "month")
_DAY_FIELDS = ("date", "price", "currency")
_PRICE = re.compile(r"[0-9]+\.[0-9]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _strings(item: Any, names: tuple[str, ...], label: str, not_object: str) -> list[str]:
    """The stripped strings of the JSON object ``item`` under ``names``; ``ValueError``
    (``not_object``, or naming the ``label``ed field) if it is no object or one is missing."""
    if not isinstance(item, dict):
        raise ValueError(not_object)
    values = []
    for name in names:
        value = item.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{label} {name} is missing or not a string")
        values.append(value.strip())
    return values


def _multi_city_fare(item: Any, legs: tuple[Leg, ...]) -> MultiCityFare:
    """A multi-city fare's ``legs`` (each with its flight and times, in the order of the
    search's ``legs``; a leg that states its route and date must state the search's) and
    total; ``ValueError`` says what is wrong."""
    total = _strings(item, _TOTAL_FIELDS, "field", "fare is not an object")
    found = item.get("legs")
    if not isinstance(found, list) or len(found) != len(legs):
        raise ValueError(f"a multi-city fare of this search has {len(legs)} legs")
    flights = []
    for number, (leg, searched) in enumerate(zip(found, legs, strict=True), start=1):
        flights.append(tuple(_strings(leg, _LEG_FIELDS, f"leg {number}",
                                      f"leg {number} is no object")))
        if any(name in leg for name in _SEARCH_FIELDS):
            flown = Leg(*_strings(leg, _SEARCH_FIELDS, f"leg {number}", ""))
            if flown != searched:
                raise ValueError(f"leg {number} flies {flown}, the search's leg {number} is "
                                 f"{searched}")
    return MultiCityFare(*flights[0], *total, tuple(flights[1:]))


def _fare(item: Any, round_trip: bool,
          legs: tuple[Leg, ...] = ()) -> Fare | RoundTripFare | MultiCityFare:
    """Check one JSON fare (of a round trip: its two legs and total; of a multi-city trip,
    the search's ``legs``: each leg and the total) and return it; ``ValueError`` says what
    is wrong."""
    if legs:
        fare: Fare | RoundTripFare | MultiCityFare = _multi_city_fare(item, legs)
    elif round_trip:
        total = _strings(item, _TOTAL_FIELDS, "field", "fare is not an object")
        going = _strings(item.get("outbound"), _LEG_FIELDS, "outbound", "no outbound leg")
        back = _strings(item.get("inbound"), _LEG_FIELDS, "inbound", "no inbound leg")
        fare = RoundTripFare(*going, *total, *back)
    else:
        fare = Fare(*_strings(item, _FIELDS, "field", "fare is not an object"))
    if not _PRICE.fullmatch(fare.price) or Decimal(fare.price) <= 0:
        raise ValueError(f"bad price {fare.price!r}")
    if not _CURRENCY.fullmatch(fare.currency):
        raise ValueError(f"bad currency {fare.currency!r}")
    return fare


def _stated_options(item: dict[str, Any]) -> SearchOptions | None:
    """The party, cabin, point of sale and currency the ``search`` object states (None
    when it states none, as the answer of a plain one-way search); ``ValueError`` if odd."""
    if "passengers" not in item:
        return None
    party = item["passengers"]
    if not isinstance(party, dict):
        raise ValueError("search field passengers is not an object")
    counts = []
    for name in ("adults", "children", "infants"):
        count = party.get(name)
        if type(count) is not int:
            raise ValueError(f"search field passengers.{name} is not a whole number")
        counts.append(count)
    cabin, pos, currency = _strings(item, ("cabin", "pos", "currency"), "search field", "")
    return SearchOptions(*counts, cabin, pos, currency)


def _searched(item: Any) -> Searched:
    """Check the answer's ``search`` object and return it; ``ValueError`` says what is wrong."""
    if isinstance(item, dict) and "legs" in item:  # a multi-city trip
        found = item["legs"]
        if not isinstance(found, list) or not found:
            raise ValueError("search field legs is not a list of legs")
        legs = [Leg(*_strings(leg, _SEARCH_FIELDS, "search leg", "a search leg is no object"))
                for leg in found]
        return Searched(legs[0].origin, legs[-1].destination, legs[0].date, None,
                        _stated_options(item), legs_text(legs))
    found = _strings(item, _SEARCH_FIELDS, "search field",
                     "no search object in the answer (which search does it answer?)")
    back = item.get("return_date")
    if back is not None and (not isinstance(back, str) or not back.strip()):
        raise ValueError("search field return_date is not a string")
    return Searched(*found, back.strip() if back else None, _stated_options(item))


def _json(page: bytes) -> Any:
    try:
        return json.loads(page)
    except ValueError as error:
        raise ParseError(f"not JSON: {error}", page=page) from None


def parse_calendar(page: bytes) -> Answer:
    """Parse ``/api/calendar``'s answer (the cheapest fare per day of a month) into an
    ``Answer`` of ``CalendarDay`` items; ``ParseError`` (with the page) if odd."""
    payload = _json(page)
    items = payload.get("days") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise ParseError("no days list in the calendar", page=page)
    try:
        search = payload.get("search")
        origin, destination, month = _strings(
            search, _CALENDAR_FIELDS, "search field",
            "no search object in the calendar (which search does it answer?)")
        answered = Searched(origin, destination, month, None, _stated_options(search))
    except ValueError as error:
        raise ParseError(str(error), page=page) from None
    days = []
    for number, item in enumerate(items, start=1):
        try:
            day = CalendarDay(*_strings(item, _DAY_FIELDS, "field", "day is not an object"))
            if not _PRICE.fullmatch(day.price) or Decimal(day.price) <= 0:
                raise ValueError(f"bad price {day.price!r}")
        except ValueError as error:
            raise ParseError(f"day {number}: {error}", page=page) from None
        days.append(day)
    return Answer(days, answered, page)


def parse_fares(page: bytes) -> Answer:
    """Parse the JSON API's answer into an ``Answer``; ``ParseError`` (with the page) if odd."""
    payload = _json(page)
    items = payload.get("fares") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise ParseError("no fares list in the answer", page=page)
    try:
        answered = _searched(payload.get("search"))
    except ValueError as error:
        raise ParseError(str(error), page=page) from None
    fares = []
    try:
        legs = parse_legs(answered.legs) if answered.legs else ()
    except ValueError as error:
        raise ParseError(f"the search's legs: {error}", page=page) from None
    for number, item in enumerate(items, start=1):
        try:
            fares.append(_fare(item, answered.return_date is not None, legs))
        except ValueError as error:
            raise ParseError(f"fare {number}: {error}", page=page) from None
    return Answer(fares, answered, page)


class DemoApiBackend:
    """Search the demo airline's JSON API, the cheap way to get the same fares as ``demo``,
    its round trips, multi-city trips and calendars."""

    name = "demo-api"
    round_trips = True
    multi_city = True
    calendars = True
    search_options = frozenset(SearchOptions._fields)
    # The airline's block pages (a captcha it redirects to) are the HTML site's.
    block_markers = DemoBackend.block_markers

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/api/search"
        self.calendar_url = f"{settings.voe_demo_airline_url}/api/calendar"
        self.timeout = (settings.voe_http_connect_timeout, settings.voe_http_timeout)

    def search(self, job: SearchJob, http: requests.Session) -> Answer:
        """Fetch and check the fares of ``job``; raise a ``BackendError`` on failure."""
        if job.calendar:
            return parse_calendar(fetch(http, self.calendar_url, job, self.timeout,
                                        search_params(job)))
        return parse_fares(fetch(http, self.url, job, self.timeout, search_params(job)))
