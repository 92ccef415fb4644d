"""What the demo airline sells beyond a one-way seat: round trips, multi-city trips,
parties of passengers, cabins and prices in the currency of a point of sale (JSON API only).

Every price starts from the one-way fares of each leg (``fares_for``, moved by the
airline's drift and price process like any search's) and derives the rest
deterministically, from SHA-256 like the timetable, so two processes agree:

- a party pays ``ADULT_SHARE`` per adult, ``CHILD_SHARE`` per child and ``INFANT_SHARE``
  per infant of one fare, times the cabin's factor (``CABINS``);
- a round trip costs its two one-ways less a discount of the pair (2 to 15%), a
  multi-city trip its legs plus a markup of the itinerary (-3 to +12%);
- the total is converted from BRL at the fixed rates of ``BRL_RATES``.

Amounts are whole cents rounded half up at each step (party and cabin, itinerary,
currency), with ``Decimal`` so no float rounding differs between machines.
"""

from __future__ import annotations

import calendar as months
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from voe.demo.airline.prices import Departed
from voe.model import Fare

# The share of one fare each passenger pays: an adult the whole, a child (2 to 11) three
# quarters, an infant (under 2, on an adult's lap) a tenth.
ADULT_SHARE, CHILD_SHARE, INFANT_SHARE = Decimal(1), Decimal("0.75"), Decimal("0.10")
# The price factor of each cabin over economy.
CABINS: dict[str, Decimal] = {
    "economy": Decimal(1),
    "premium": Decimal("1.6"),
    "business": Decimal("3.2"),
    "first": Decimal("5.5"),
}
# The currency of each point of sale (a country code).
POS_CURRENCIES: dict[str, str] = {
    "BR": "BRL", "US": "USD", "PT": "EUR", "ES": "EUR", "GB": "GBP", "AR": "ARS", "CL": "CLP",
}
# Units of each currency for one BRL: fictitious demo rates, fixed so that prices are
# deterministic (not today's market rates, and never updated).
BRL_RATES: dict[str, Decimal] = {
    "BRL": Decimal(1),
    "USD": Decimal("0.18"),
    "EUR": Decimal("0.17"),
    "GBP": Decimal("0.145"),
    "ARS": Decimal("180"),
    "CLP": Decimal("170"),
}
# A round trip's discount on its two one-ways, and a multi-city trip's factor on its legs.
ROUND_TRIP_DISCOUNT = (Decimal("0.02"), Decimal("0.15"))
MULTI_CITY_FACTOR = (Decimal("0.97"), Decimal("1.12"))
# Each outbound flight is offered with this many of the cheapest inbound flights.
INBOUNDS_PER_OUTBOUND = 3
# At most this many round-trip or multi-city fares answer a search.
MAX_TRIP_FARES = 24
# Minutes between a flight's arrival and the next leg's departure on the same day.
MIN_CONNECTION = 60
# What a search of each leg's one-way fares is: origin, destination, date -> fares.
FaresOf = Callable[[str, str, str], list[Fare]]


class Leg(NamedTuple):
    """One flight of a trip to search: from ``origin`` to ``destination`` on ``date``."""

    origin: str
    destination: str
    date: str


class Party(NamedTuple):
    """Who travels: adults, children (2 to 11) and infants (under 2, on a lap)."""

    adults: int = 1
    children: int = 0
    infants: int = 0


@dataclass(frozen=True)
class Pricing:
    """How a fare's price is told: for whom, in which cabin, at which point of sale."""

    party: Party = Party()
    cabin: str = "economy"
    pos: str = "BR"
    asked: str = ""  # a currency asked (one of ``BRL_RATES``); "" for the point of sale's

    @property
    def currency(self) -> str:
        """The currency asked, else the point of sale's."""
        return self.asked or POS_CURRENCIES[self.pos]

    def price(self, base_cents: int) -> str:
        """The price of a fare of ``base_cents`` (BRL, one adult, economy) for the party,
        in the cabin and currency (a decimal string with 2 decimals)."""
        party = (ADULT_SHARE * self.party.adults + CHILD_SHARE * self.party.children
                 + INFANT_SHARE * self.party.infants)
        brl = _whole(Decimal(base_cents) * party * CABINS[self.cabin])
        return _text(_whole(brl * BRL_RATES[self.currency]))

    def describe(self) -> dict[str, Any]:
        """The pricing's part of a search's ``search`` object."""
        return {"passengers": self.party._asdict(), "cabin": self.cabin, "pos": self.pos,
                "currency": self.currency}


@dataclass(frozen=True)
class Trip:
    """A search for a trip: one leg (one-way), two (a round trip when ``round_trip``,
    otherwise multi-city) or up to six, priced by ``pricing``."""

    legs: tuple[Leg, ...]
    pricing: Pricing = Pricing()
    round_trip: bool = False


def cents(price: str) -> int:
    """A decimal price string (``"123.45"``) as whole cents."""
    whole, _, fraction = price.partition(".")
    return int(whole) * 100 + int(fraction or 0)


def _whole(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _text(amount: int) -> str:
    return f"{amount // 100}.{amount % 100:02d}"


def _minutes(clock: str) -> int:
    hours, _, minutes = clock.partition(":")
    return int(hours) * 60 + int(minutes)


def _share(key: str, low: Decimal, high: Decimal) -> Decimal:
    """A number between ``low`` and ``high`` drawn from SHA-256 of ``key``."""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 10_001
    return low + (high - low) * number / 10_000


def _fare_key(leg: Leg, fare: Fare) -> str:
    return f"{leg.origin}-{leg.destination}:{leg.date}:{fare.flight}:{fare.departure}"


def itinerary_cents(legs: Sequence[Leg], fares: Sequence[Fare], round_trip: bool) -> int:
    """The base price (BRL cents, one adult, economy) of one itinerary: the sum of its
    fares less the round trip's discount, or times the multi-city factor."""
    total = sum(cents(fare.price) for fare in fares)
    key = "|".join(_fare_key(leg, fare) for leg, fare in zip(legs, fares, strict=True))
    if round_trip:
        return _whole(total * (1 - _share(f"{key}|round", *ROUND_TRIP_DISCOUNT)))
    return _whole(total * _share(f"{key}|multi", *MULTI_CITY_FACTOR))


def connects(leg: Leg, fare: Fare, before: Leg, previous: Fare) -> bool:
    """Whether ``fare`` can follow ``previous``: another day, or ``MIN_CONNECTION`` after."""
    return (leg.date != before.date
            or _minutes(fare.departure) >= _minutes(previous.arrival) + MIN_CONNECTION)


def _flight(fare: Fare) -> dict[str, str]:
    return {"flight": fare.flight, "departure": fare.departure, "arrival": fare.arrival}


def _cheapest(fares: Iterable[Fare], count: int) -> list[Fare]:
    return sorted(fares, key=lambda fare: (cents(fare.price), fare.departure,
                                           fare.flight))[:count]


def one_way(trip: Trip, fares: Sequence[Fare]) -> list[dict[str, str]]:
    """The priced one-way fares of the trip's single leg, in the order given (departure)."""
    return [{**_flight(fare), "price": trip.pricing.price(cents(fare.price)),
             "currency": trip.pricing.currency} for fare in fares]


def round_trips(trip: Trip, outbound: Sequence[Fare],
                inbound: Sequence[Fare]) -> list[dict[str, Any]]:
    """Each outbound flight with its ``INBOUNDS_PER_OUTBOUND`` cheapest inbound flights that
    connect, priced as a pair; the ``MAX_TRIP_FARES`` cheapest, by price then departure."""
    out_leg, in_leg = trip.legs
    priced = []
    for going in outbound:
        back = [fare for fare in inbound if connects(in_leg, fare, out_leg, going)]
        for coming in _cheapest(back, INBOUNDS_PER_OUTBOUND):
            total = itinerary_cents(trip.legs, (going, coming), round_trip=True)
            price = trip.pricing.price(total)
            priced.append(((cents(price), going.departure, coming.departure, going.flight,
                            coming.flight),
                           {"outbound": _flight(going), "inbound": _flight(coming),
                            "price": price, "currency": trip.pricing.currency}))
    priced.sort(key=lambda pair: pair[0])
    return [fare for _, fare in priced[:MAX_TRIP_FARES]]


def _itineraries(legs: Sequence[Leg],
                 fares: Sequence[Sequence[Fare]]) -> list[tuple[Fare, ...]]:
    """The ``MAX_TRIP_FARES`` cheapest chains of one fare per leg that connect (by the sum
    of their prices), built leg by leg keeping only that many at each step."""
    chains: list[tuple[int, tuple[Fare, ...]]] = [(0, ())]
    for index, leg in enumerate(legs):
        grown = []
        for total, chain in chains:
            for fare in fares[index]:
                if chain and not connects(leg, fare, legs[index - 1], chain[-1]):
                    continue
                grown.append((total + cents(fare.price), (*chain, fare)))
        grown.sort(key=lambda item: (item[0], [fare.departure for fare in item[1]],
                                     [fare.flight for fare in item[1]]))
        chains = grown[:MAX_TRIP_FARES]
    return [chain for _, chain in chains]


def multi_city(trip: Trip, fares: Sequence[Sequence[Fare]]) -> list[dict[str, Any]]:
    """The cheapest multi-city itineraries (at most ``MAX_TRIP_FARES``), each priced as a
    whole, by price then departures."""
    priced = []
    for chain in _itineraries(trip.legs, fares):
        price = trip.pricing.price(itinerary_cents(trip.legs, chain, round_trip=False))
        legs = [{**leg._asdict(), **_flight(fare)}
                for leg, fare in zip(trip.legs, chain, strict=True)]
        priced.append(((cents(price), [fare.departure for fare in chain],
                        [fare.flight for fare in chain]),
                       {"legs": legs, "price": price, "currency": trip.pricing.currency}))
    priced.sort(key=lambda pair: pair[0])
    return [fare for _, fare in priced]


def search(trip: Trip, fares_of: FaresOf) -> dict[str, Any]:
    """The answer of ``/api/search`` for ``trip``: its ``search`` and its ``fares``."""
    fares = [fares_of(*leg) for leg in trip.legs]
    described = trip.pricing.describe()
    if len(trip.legs) == 1:
        return {"search": {**trip.legs[0]._asdict(), **described},
                "fares": one_way(trip, fares[0])}
    if trip.round_trip:
        going = trip.legs[0]
        return {"search": {**going._asdict(), "return_date": trip.legs[1].date,
                           **described},
                "fares": round_trips(trip, fares[0], fares[1])}
    return {"search": {"legs": [leg._asdict() for leg in trip.legs], **described},
            "fares": multi_city(trip, fares)}


def month_days(month: str) -> list[str]:
    """Every date (``YYYY-MM-DD``) of ``month`` (``YYYY-MM``, already checked)."""
    year, number = (int(part) for part in month.split("-"))
    return [f"{month}-{day:02d}" for day in range(1, months.monthrange(year, number)[1] + 1)]


def calendar(origin: str, destination: str, month: str, pricing: Pricing,
             fares_of: FaresOf) -> dict[str, Any]:
    """The answer of ``/api/calendar``: the cheapest priced one-way fare of each day of
    ``month`` (what ``/api/search`` would answer cheapest); days departed are left out."""
    days = []
    for date in month_days(month):
        trip = Trip((Leg(origin, destination, date),), pricing)
        try:
            priced = one_way(trip, fares_of(origin, destination, date))
        except Departed:
            continue
        if priced:
            cheapest = min(priced, key=lambda fare: cents(fare["price"]))
            days.append({"date": date, "price": cheapest["price"],
                         "currency": pricing.currency})
    return {"search": {"origin": origin, "destination": destination, "month": month,
                       **pricing.describe()},
            "days": days}
