"""The demo airline's timetable: deterministic fares for any route and date.

Everything derives from SHA-256 of the route and date, so two processes (or two
runs years apart) agree on every flight and price without sharing state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from voe.model import Fare, check_date

AIRPORTS: dict[str, str] = {
    "GRU": "São Paulo (Guarulhos)",
    "CGH": "São Paulo (Congonhas)",
    "GIG": "Rio de Janeiro (Galeão)",
    "SDU": "Rio de Janeiro (Santos Dumont)",
    "BSB": "Brasília",
    "CNF": "Belo Horizonte (Confins)",
    "REC": "Recife",
    "SSA": "Salvador",
    "FOR": "Fortaleza",
    "POA": "Porto Alegre",
    "CWB": "Curitiba",
    "MAO": "Manaus",
}

CARRIERS = ("G3", "LA", "AD")
CURRENCY = "BRL"
MIN_FLIGHTS, MAX_FLIGHTS = 3, 8
MIN_CENTS, MAX_CENTS = 150_00, 4999_99
FIRST_DEPARTURE = 5 * 60  # minutes after midnight
LAST_MINUTE = 23 * 60 + 59



class UnknownRoute(LookupError):
    """The airline does not fly this route (e.g. origin and destination are the same)."""


class UnknownAirport(UnknownRoute):
    """An airport code the airline does not serve; ``code`` is the offending code."""

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown airport {code}")
        self.code = code


def check_route(origin: str, destination: str) -> None:
    """Raise ``UnknownAirport`` or ``UnknownRoute`` unless the airline flies this route."""
    for code in (origin, destination):
        if code not in AIRPORTS:
            raise UnknownAirport(code)
    if origin == destination:
        raise UnknownRoute(f"unknown route {origin}-{destination}")


def _numbers(key: str) -> Iterator[int]:
    """Yield an endless stream of 32-bit numbers derived from ``key`` by SHA-256."""
    counter = 0
    while True:
        digest = hashlib.sha256(f"{key}#{counter}".encode()).digest()
        for start in range(0, len(digest), 4):
            yield int.from_bytes(digest[start:start + 4], "big")
        counter += 1


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _cents(number: int) -> int:
    """Map a number to a price in cents, skewed towards cheap fares like a real airline."""
    share = number % 10_000
    return MIN_CENTS + share * share * (MAX_CENTS - MIN_CENTS) // (9_999 * 9_999)


def fares_for(origin: str, destination: str, date: str, flights: int | None = None) -> list[Fare]:
    """Return the fares of one route and date, sorted by departure; always the same ones.

    ``flights`` forces the number of flights (benchmarks ask for 60); by default a
    route and date have between 3 and 8. Raises ``UnknownAirport``/``UnknownRoute``
    for routes the airline does not fly and ``ValueError`` for a bad date.
    """
    check_route(origin, destination)
    check_date(date)
    if flights is not None and flights < 0:
        raise ValueError("flights must not be negative")
    numbers = _numbers(f"{origin}-{destination}:{date}")
    if flights is None:
        flights = MIN_FLIGHTS + next(numbers) % (MAX_FLIGHTS - MIN_FLIGHTS + 1)
    duration_base = 50 + next(numbers) % 200
    fares = []
    for _ in range(flights):
        carrier = CARRIERS[next(numbers) % len(CARRIERS)]
        number = 1000 + next(numbers) % 9000
        duration = duration_base + next(numbers) % 60
        departure = FIRST_DEPARTURE + next(numbers) % (LAST_MINUTE - duration - FIRST_DEPARTURE)
        cents = _cents(next(numbers))
        fares.append(Fare(
            flight=f"{carrier} {number}",
            departure=_clock(departure),
            arrival=_clock(departure + duration),
            price=f"{cents // 100}.{cents % 100:02d}",
            currency=CURRENCY,
        ))
    fares.sort(key=lambda fare: (fare.departure, fare.flight))
    return fares


def drift_prices(fares: list[Fare], key: str, seed: int, drift: float) -> list[Fare]:
    """Move each price by up to ``drift`` (a share, 0 to 1) up or down, the same every time.

    The factor of each fare derives from SHA-256 of ``seed``, ``key`` (route and date) and
    the flight, so another seed or drift plants a known price change between two cycles.
    """
    if drift <= 0:
        return fares
    moved = []
    for fare in fares:
        number = next(_numbers(f"{seed}\0{key}\0{fare.flight}\0drift")) % 20_001
        factor = 1 + drift * (number - 10_000) / 10_000
        integer, _, fraction = fare.price.partition(".")
        cents = max(1_00, round((int(integer) * 100 + int(fraction or 0)) * factor))
        moved.append(fare._replace(price=f"{cents // 100}.{cents % 100:02d}"))
    return moved
