"""Reads the demo airline's trip parameters from a query string, or says what is wrong.

``/api/search`` takes, besides ``origin``, ``destination`` and ``date``: ``return``
(a round trip), ``adults``, ``children``, ``infants``, ``cabin``, ``pos``, ``currency``
(asked; the point of sale's by default) and ``legs``
(multi-city, instead of origin/destination/date). With none of them a search is
today's one-way search, answered as it always was (``asks_trip`` tells which).
``/api/calendar`` takes ``origin``, ``destination``, ``month`` and the same pricing ones.
"""

from __future__ import annotations

import re

from voe.demo.airline.trips import BRL_RATES, CABINS, POS_CURRENCIES, Leg, Party, Pricing, Trip
from voe.model import check_date

# The parameters that make a search a trip search (any one of them, even alone).
TRIP_PARAMETERS = ("return", "adults", "children", "infants", "cabin", "pos", "currency",
                   "legs")
# Passengers of one search at most, as airlines' booking forms allow.
MAX_PASSENGERS = 9
MIN_LEGS, MAX_LEGS = 2, 6
_AIRPORT = re.compile(r"[A-Z]{3}")
_LEG = re.compile(r"([A-Z]{3})-([A-Z]{3}):(\d{4}-\d{2}-\d{2})")
_COUNT = re.compile(r"\d{1,2}")
_MONTH = re.compile(r"\d{4}-\d{2}")

Params = dict[str, list[str]]


class BadQuery(ValueError):
    """A trip or calendar search with a missing or malformed parameter."""


def asks_trip(params: Params) -> bool:
    """Whether a search gives any trip parameter (else it is a plain one-way search)."""
    return any(name in params for name in TRIP_PARAMETERS)


def _one(params: Params, name: str, default: str | None = None) -> str:
    """The value of parameter ``name`` (stripped), ``default`` when absent, else an error."""
    given = params.get(name)
    if given is None:
        if default is None:
            raise BadQuery(f"missing parameter {name}")
        return default
    if len(given) > 1:
        raise BadQuery(f"parameter {name} given more than once")
    if not given[0].strip():
        raise BadQuery(f"parameter {name} is empty")
    return given[0].strip()


def _airport(params: Params, name: str) -> str:
    code = _one(params, name).upper()
    if not _AIRPORT.fullmatch(code):
        raise BadQuery(f"bad {name} {code!r}: expected a three-letter airport code")
    return code


def route(params: Params) -> tuple[str, str, str]:
    """The origin, destination (airport codes) and date (as given) of a plain search."""
    return _airport(params, "origin"), _airport(params, "destination"), _one(params, "date")


def _date(text: str, name: str) -> str:
    try:
        check_date(text)
    except ValueError as error:
        raise BadQuery(f"bad {name}: {error}") from None
    return text


def _count(params: Params, name: str, default: str) -> int:
    text = _one(params, name, default)
    if not _COUNT.fullmatch(text):
        raise BadQuery(f"bad {name} {text!r}: expected a whole number from 0 to {MAX_PASSENGERS}")
    return int(text)


def pricing(params: Params) -> Pricing:
    """The party, cabin, point of sale and currency of a search (defaults: 1 adult,
    economy, BR, the point of sale's currency)."""
    party = Party(_count(params, "adults", "1"), _count(params, "children", "0"),
                  _count(params, "infants", "0"))
    if party.adults < 1:
        raise BadQuery("at least one adult must travel (adults must be 1 or more)")
    if sum(party) > MAX_PASSENGERS:
        raise BadQuery(f"too many passengers: {sum(party)} asked, at most {MAX_PASSENGERS}")
    if party.infants > party.adults:
        raise BadQuery(f"too many infants: {party.infants} for {party.adults} adult(s); "
                       "each infant travels on an adult's lap")
    cabin = _one(params, "cabin", "economy").lower()
    if cabin not in CABINS:
        raise BadQuery(f"unknown cabin {cabin!r}: expected one of {', '.join(CABINS)}")
    pos = _one(params, "pos", "BR").upper()
    if pos not in POS_CURRENCIES:
        raise BadQuery(f"unknown pos {pos!r}: expected one of {', '.join(sorted(POS_CURRENCIES))}")
    asked = _one(params, "currency", POS_CURRENCIES[pos]).upper()
    if asked not in BRL_RATES:
        raise BadQuery(f"unknown currency {asked!r}: expected one of "
                       f"{', '.join(sorted(BRL_RATES))}")
    return Pricing(party, cabin, pos, asked if asked != POS_CURRENCIES[pos] else "")


def _legs(text: str) -> tuple[Leg, ...]:
    """Multi-city legs from ``GRU-REC:2026-12-20,REC-SSA:2026-12-24``, checked."""
    pieces = [piece.strip().upper() for piece in text.split(",")]
    if not MIN_LEGS <= len(pieces) <= MAX_LEGS:
        raise BadQuery(f"bad legs: a multi-city search has {MIN_LEGS} to {MAX_LEGS} legs, "
                       f"{len(pieces)} given")
    legs = []
    for number, piece in enumerate(pieces, 1):
        match = _LEG.fullmatch(piece)
        if match is None:
            raise BadQuery(f"bad leg {number} {piece!r}: expected ORIGIN-DESTINATION:YYYY-MM-DD"
                           " (e.g. GRU-REC:2026-12-20)")
        leg = Leg(match[1], match[2], _date(match[3], f"date of leg {number}"))
        if legs and leg.date < legs[-1].date:
            raise BadQuery(f"bad legs: leg {number} departs {leg.date}, before leg "
                           f"{number - 1} ({legs[-1].date})")
        legs.append(leg)
    return tuple(legs)


def trip(params: Params) -> Trip:
    """The trip a ``/api/search`` query asks for (one-way, round trip or multi-city)."""
    price = pricing(params)
    if "legs" in params:
        mixed = [name for name in ("origin", "destination", "date", "return") if name in params]
        if mixed:
            raise BadQuery(f"legs cannot be combined with {', '.join(mixed)}")
        return Trip(_legs(_one(params, "legs")), price)
    going = Leg(_airport(params, "origin"), _airport(params, "destination"),
                _date(_one(params, "date"), "date"))
    if "return" not in params:
        return Trip((going,), price)
    back = _date(_one(params, "return"), "return")
    if back < going.date:
        raise BadQuery(f"bad return: {back} is before the departure date {going.date}")
    return Trip((going, Leg(going.destination, going.origin, back)), price, round_trip=True)


def calendar(params: Params) -> tuple[str, str, str, Pricing]:
    """The origin, destination, month and pricing of a ``/api/calendar`` query."""
    for name in ("date", "return", "legs"):
        if name in params:
            raise BadQuery(f"the calendar prices one-way trips over a month: drop {name}")
    origin, destination = _airport(params, "origin"), _airport(params, "destination")
    month = _one(params, "month")
    if _MONTH.fullmatch(month) is None:
        raise BadQuery(f"bad month {month!r}: expected YYYY-MM")
    _date(f"{month}-01", "month")
    return origin, destination, month, pricing(params)
