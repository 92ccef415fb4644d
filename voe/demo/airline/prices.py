"""The demo airline's price process: fares that change at random times, faster near departure.

Off by default (``price-changes=0``: every price stays what ``fares_for`` says). When on,
each fare (route, date, flight) changes price at the events of a Poisson process whose
rate grows as departure nears: ``c * (14 / (t + 7))**2`` changes a day, ``t`` days
before the departure date, so four times ``c`` on the eve, ``c`` a week out and about an
eightieth of it four months out (a flight next week changes several times a day, one in
four months hardly in a month); ``c`` is ``price-changes`` times a factor of the route
(a quarter to four times the median route's).
Changes start ``SALE_DAYS`` before the date and a date is sold until it starts; before
its first change a fare has its timetable price, after one the timetable's times a
log-normal factor (sigma ``SIGMA``), a little higher the nearer departure is.

The process is drawn, not stepped: the cumulative rate has a closed form, so the times of
the changes come from unit-rate arrivals mapped back through it, all from one
``random.Random`` seeded with the seed and the fare's key. Any process, at any time,
computes the same answer for "what was this fare's price at time T" without state.

Time is the airline's own clock (``SimulatedClock``): it may run faster than real time
(``clock-speed``), so a simulated week passes in minutes.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from voe.master.scheduling.history import departure
from voe.model import Fare

SALE_DAYS = 365
# The rate's shape: (SHAPE / (days before departure + OFFSET))**2; 1 a week out.
SHAPE, OFFSET = 14.0, 7.0
# Routes' rates spread over a factor of ROUTE_SPREAD**2 around the median route's.
ROUTE_SPREAD = 4.0
SIGMA = 0.15
# How much dearer a fare gets on the eve of departure than a year out (a share).
NEAR_PREMIUM = 0.3
# Fares whose changes are kept in memory before the cache starts over.
MAX_CACHED = 200_000
DAY = 86_400.0


class Departed(LookupError):
    """The date asked has started on the airline's clock: it is no longer sold."""


class SimulatedClock:
    """The airline's clock: ``start`` (epoch seconds) when made, then ``speed`` times real
    time; with ``origin``, it reads ``start`` (by default ``origin`` itself) at real time
    ``origin`` instead, as the master's schedulers' clock does (``ScheduleClock``)."""

    def __init__(self, speed: float = 1.0, start: float | None = None,
                 real: Callable[[], float] = time.time, origin: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("the clock's speed must be positive")
        self.speed = speed
        self.real = real
        self.started = real() if origin is None else origin
        self.start = self.started if start is None else start

    def now(self) -> float:
        """The airline's time now, in epoch seconds."""
        return self.start + (self.real() - self.started) * self.speed


class _Changes(NamedTuple):
    """One fare's changes: days before departure of each (descending), and its price then."""

    before: list[float]  # negated days before departure, ascending, for bisect
    cents: list[int]


def departure_instant(date: str) -> float:
    """The start of ``date`` (UTC), in epoch seconds: when it stops being sold."""
    return departure(date)


def _cents(price: str) -> int:
    whole, _, fraction = price.partition(".")
    return int(whole) * 100 + int(fraction or 0)


class PriceProcess:
    """Prices of fares at any time of the airline's clock (see the module docstring)."""

    def __init__(self, changes_per_day: float, seed: int = 0) -> None:
        if changes_per_day < 0:
            raise ValueError("price changes per day must not be negative")
        self.changes_per_day = changes_per_day
        self.seed = seed
        self._cache: dict[str, _Changes] = {}

    def route_factor(self, origin: str, destination: str) -> float:
        """How much more often than ``changes_per_day`` this route's prices move (1/4 to 4)."""
        draw = random.Random(f"{self.seed}\0{origin}-{destination}\0rate").random()
        return ROUTE_SPREAD ** (2 * draw - 1)

    def rate(self, origin: str, destination: str, days_before: float) -> float:
        """Changes a day of one fare of the route, ``days_before`` its date."""
        return (self.changes_per_day * self.route_factor(origin, destination)
                * (SHAPE / (max(days_before, 0.0) + OFFSET)) ** 2)

    def changes(self, origin: str, destination: str, date: str, fare: Fare) -> _Changes:
        """Every change of ``fare`` over its sale (drawn once, then cached)."""
        key = f"{origin}-{destination}:{date}:{fare.flight}:{fare.departure}"
        found = self._cache.get(key)
        if found is not None:
            return found
        scale = SHAPE ** 2 * self.changes_per_day * self.route_factor(origin, destination)
        draw = random.Random(f"{self.seed}\0{key}\0changes")
        base = _cents(fare.price)
        before: list[float] = []
        cents: list[int] = []
        arrived = 0.0
        while scale > 0:
            arrived += draw.expovariate(1.0)
            days = 1 / (arrived / scale + 1 / (SALE_DAYS + OFFSET)) - OFFSET
            if days <= 0:
                break
            premium = 1 + NEAR_PREMIUM * OFFSET / (days + OFFSET)
            before.append(-days)
            cents.append(max(100, round(base * premium * math.exp(SIGMA * draw.gauss(0, 1)))))
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        found = self._cache[key] = _Changes(before, cents)
        return found

    def fares_at(self, origin: str, destination: str, date: str, fares: Sequence[Fare],
                 at: float) -> list[Fare]:
        """``fares`` (the timetable's) with their prices at ``at`` (epoch seconds of the
        airline's clock); ``Departed`` once the date has started."""
        days_before = (departure_instant(date) - at) / DAY
        if days_before <= 0:
            raise Departed(f"{date} has departed: it is no longer sold")
        if self.changes_per_day <= 0:
            return list(fares)
        priced = []
        for fare in fares:
            changes = self.changes(origin, destination, date, fare)
            index = bisect.bisect_right(changes.before, -days_before) - 1
            if index >= 0:
                cents = changes.cents[index]
                fare = fare._replace(price=f"{cents // 100}.{cents % 100:02d}")
            priced.append(fare)
        return priced
