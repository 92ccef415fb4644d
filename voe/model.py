"""The domain's plain data: a search job and the fares it finds.

Every part of voe speaks these types; none of them knows about ZeroMQ, SQLite or HTTP.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable
from typing import NamedTuple

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")


class SearchJob(NamedTuple):
    """One flight search: a backend, a route and a date, in one cycle of the plan.

    ``id`` is stable across cycles (``backend:ORIG-DEST:date[:return][/options]``, the date
    a month ``YYYY-MM`` for a calendar job: ``calendar``; ``backend:LEGS[/options]`` for a
    multi-city trip, whose ``legs`` are ``ORIG-DEST:date`` joined by commas, ``origin``
    the first leg's, ``destination`` the last leg's and ``date`` the first leg's); the
    pair ``(cycle, id)`` names the job in the ledger and the store. ``options`` is the
    search's ``SearchOptions`` as text (``""``: one adult, economy, the airline's own point
    of sale). A named tuple, because the master, workers and sink build hundreds of
    thousands of them a minute.
    """

    id: str
    cycle: int
    attempt: int
    backend: str
    origin: str
    destination: str
    date: str
    return_date: str | None = None
    options: str = ""
    legs: str = ""

    @property
    def calendar(self) -> bool:
        """Whether this job asks the airline's calendar of a month (``date`` is ``YYYY-MM``):
        the cheapest fare of each day, in one search."""
        return len(self.date) == 7


# The cabins a search may ask, cheapest first.
CABINS = ("economy", "premium", "business", "first")
# Most passengers one search may ask (airlines' booking forms allow nine).
MAX_PASSENGERS = 9


class SearchOptions(NamedTuple):
    """Who travels, in which cabin, and where the search is made: a search's parts beyond
    its route and dates. ``pos`` is the point of sale's country (``"US"``) and ``currency``
    the currency asked (``"USD"``); empty, the airline's own (and its point of sale's).

    As text (``str``), the options that differ from the defaults, in this order:
    ``adults=2,children=1,cabin=business,pos=US`` (``""`` for the defaults); this text is
    what jobs, the ledger and the store carry, and ``parse_options`` reads it back.
    """

    adults: int = 1
    children: int = 0
    infants: int = 0
    cabin: str = "economy"
    pos: str = ""
    currency: str = ""

    def __str__(self) -> str:
        """The options that differ from the defaults, as ``name=value`` joined by commas."""
        return ",".join(f"{name}={value}" for name, value, default
                        in zip(self._fields, self, _DEFAULTS, strict=True) if value != default)

    def check(self) -> SearchOptions:
        """Return these options; ``ValueError`` (its first word the option's name) says
        which one no airline could sell."""
        for name in ("adults", "children", "infants"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_PASSENGERS:
                raise ValueError(f"{name} must be a whole number from 0 to {MAX_PASSENGERS} "
                                 f"(got {value!r})")
        if self.adults < 1:
            raise ValueError("adults must be 1 or more: at least one adult travels")
        if self.adults + self.children + self.infants > MAX_PASSENGERS:
            raise ValueError(f"adults, children and infants must add up to at most "
                             f"{MAX_PASSENGERS}: the most passengers of one search")
        if self.infants > self.adults:
            raise ValueError("infants must not outnumber adults: each infant travels on an "
                             "adult's lap")
        if self.cabin not in CABINS:
            raise ValueError(f"cabin must be one of {', '.join(CABINS)} (got {self.cabin!r})")
        if self.pos and not (isinstance(self.pos, str) and _COUNTRY.fullmatch(self.pos)):
            raise ValueError(f"pos must be a country code like \"US\" (got {self.pos!r})")
        if self.currency and not (isinstance(self.currency, str)
                                  and _CURRENCY.fullmatch(self.currency)):
            raise ValueError(f"currency must be a currency code like \"USD\" "
                             f"(got {self.currency!r})")
        return self

    def differs(self, stated: SearchOptions) -> list[str]:
        """What a page's ``stated`` options say that these (a job's) do not ask: the party
        and cabin always count; the point of sale and currency only when asked."""
        return [f"{name} {theirs} (asked {ours})" for name, ours, theirs
                in zip(self._fields, self, stated, strict=True)
                if ours != theirs and (ours or name not in ("pos", "currency"))]


_DEFAULTS = tuple(SearchOptions())
_INTEGER_OPTIONS = frozenset({"adults", "children", "infants"})


@functools.lru_cache(maxsize=256)
def parse_options(text: str) -> SearchOptions:
    """Read back ``str(SearchOptions)``; ``ValueError`` says what is wrong. Cached: a plan
    has few distinct options, and workers read them for every job."""
    if not text:
        return SearchOptions()
    given: dict[str, int | str] = {}
    for item in text.split(","):
        name, equals, value = item.partition("=")
        if not equals or name not in SearchOptions._fields or name in given:
            raise ValueError(f"bad search options {text!r}: expected name=value pairs of "
                             f"{', '.join(SearchOptions._fields)}, each once")
        if name in _INTEGER_OPTIONS:
            if not value.isdigit() or len(value) > 2:
                raise ValueError(f"bad search options {text!r}: {name} is not a whole number")
            given[name] = int(value)
        else:
            given[name] = value
    options = SearchOptions(**given).check()  # type: ignore[arg-type]
    if str(options) != text:
        raise ValueError(f"bad search options {text!r}: not in canonical form "
                         f"({str(options)!r})")
    return options


class Fare(NamedTuple):
    """One fare offered for a flight; ``price`` is a decimal string such as ``"1234.56"``."""

    flight: str
    departure: str
    arrival: str
    price: str
    currency: str


class RoundTripFare(NamedTuple):
    """A round trip's fare: a ``Fare``'s fields (its outbound flight), then its return
    flight and times; ``price`` is the total of both legs (airlines do not sell a round
    trip as two one-ways' sum). A type of its own, so code written for a ``Fare`` (five
    fields, unpacked or compared as a tuple) keeps working."""

    flight: str
    departure: str
    arrival: str
    price: str
    currency: str
    return_flight: str
    return_departure: str
    return_arrival: str


class MultiCityFare(NamedTuple):
    """A multi-city trip's fare: a ``Fare``'s fields (its first leg's flight and times, the
    total price of the trip), then ``legs``: each later leg's (flight, departure, arrival),
    in the order of the job's legs."""

    flight: str
    departure: str
    arrival: str
    price: str
    currency: str
    legs: tuple[tuple[str, str, str], ...]


class Leg(NamedTuple):
    """One flight of a multi-city trip: from ``origin`` to ``destination`` on ``date``."""

    origin: str
    destination: str
    date: str

    def __str__(self) -> str:
        """``GRU-REC:2026-12-20``."""
        return f"{self.origin}-{self.destination}:{self.date}"


# Legs of a multi-city trip, at least and at most (airlines' booking forms allow six).
MIN_LEGS, MAX_LEGS = 2, 6
_LEG = re.compile(r"([A-Z0-9]{3,4})-([A-Z0-9]{3,4}):(\d{4}-\d{2}-\d{2})")


@functools.lru_cache(maxsize=4096)
def parse_legs(text: str) -> tuple[Leg, ...]:
    """A multi-city job's ``legs`` (``GRU-REC:2026-12-20,REC-SSA:2026-12-24``) as ``Leg``
    items; ``ValueError`` says what is wrong (legs out of order included)."""
    pieces = text.split(",")
    if not MIN_LEGS <= len(pieces) <= MAX_LEGS:
        raise ValueError(f"a multi-city trip has {MIN_LEGS} to {MAX_LEGS} legs ({text!r})")
    legs: list[Leg] = []
    for number, piece in enumerate(pieces, start=1):
        match = _LEG.fullmatch(piece)
        if match is None:
            raise ValueError(f"leg {number} {piece!r} is not ORIG-DEST:YYYY-MM-DD")
        leg = Leg(match[1], match[2], match[3])
        check_date(leg.date)
        if legs and leg.date < legs[-1].date:
            raise ValueError(f"leg {number} departs {leg.date}, before leg {number - 1}")
        legs.append(leg)
    return tuple(legs)


def legs_text(legs: Iterable[Leg]) -> str:
    """The ``legs`` of a multi-city job: each ``ORIG-DEST:date``, joined by commas."""
    return ",".join(map(str, legs))


class CalendarDay(NamedTuple):
    """A day of an airline's calendar: its ``date`` (``YYYY-MM-DD``) and the cheapest fare's
    ``price`` and ``currency`` that day (a calendar names no flight)."""

    date: str
    price: str
    currency: str


class Searched(NamedTuple):
    """The search a page says it answers, read from the page itself (route heading, date;
    for a calendar, its month ``YYYY-MM``).

    ``return_date`` is None when the page states no return (a one-way search);
    ``options`` are the party, cabin and point of sale the page states, or None when it
    states none; ``legs`` a multi-city trip's legs (``legs_text``), None for any other.
    """

    origin: str
    destination: str
    date: str
    return_date: str | None = None
    options: SearchOptions | None = None
    legs: str | None = None

    def __str__(self) -> str:
        """``GRU-POA 2026-12-21`` (plus `` return 2026-12-28`` for a round trip; a multi-city
        trip's legs, ``GRU-REC:2026-12-20,REC-SSA:2026-12-24``)."""
        if self.legs:
            return self.legs
        shown = f"{self.origin}-{self.destination} {self.date}"
        return f"{shown} return {self.return_date}" if self.return_date else shown


class Answer(list[Fare]):
    """What a backend returns for one job: the fares, what the page says it answers, the page.

    A list of fares, so that code written for backends that return a plain list
    (third-party ones may) and comparisons with a list keep working; ``answered``
    (a ``Searched``, or None when the backend cannot tell) lets the fare pipeline
    check that the page answers the job's search, and ``page`` (the raw bytes, or
    None) travels with any parse error the pipeline raises, so the page is kept.
    """

    __slots__ = ("answered", "page")

    def __init__(self, fares: Iterable[Fare] = (), answered: Searched | None = None,
                 page: bytes | None = None) -> None:
        super().__init__(fares)
        self.answered = answered
        self.page = page

    def with_fares(self, fares: Iterable[Fare]) -> Answer:
        """The same answer (search and page) with other fares, e.g. normalised ones."""
        return Answer(fares, self.answered, self.page)

    def __repr__(self) -> str:
        """Show the fares and the search answered (never the page: it may be megabytes)."""
        page = "no page" if self.page is None else f"{len(self.page)}-byte page"
        return f"Answer({list.__repr__(self)}, answered={self.answered!r}, {page})"


def job_id(backend: str, origin: str, destination: str, date: str, return_date: str | None,
           options: str = "", legs: str = "") -> str:
    """Return the stable id of a search (the same in every cycle): ``options`` (the text of
    its ``SearchOptions``) follow a slash, ``demo:GRU-GIG:2026-12-20/adults=2,pos=US``; a
    multi-city trip is named by its legs, ``demo:GRU-REC:2026-12-20,REC-SSA:2026-12-24``."""
    base = f"{backend}:{origin}-{destination}:{date}"
    base = f"{base}:{return_date}" if return_date else base
    base = f"{backend}:{legs}" if legs else base
    return f"{base}/{options}" if options else base


class FieldCount(NamedTuple):
    """How many fares of one answer had ``field`` valid and invalid, as the fare pipeline saw."""

    field: str
    valid: int
    invalid: int


class Result(NamedTuple):
    """What a worker reports for one attempt of a job.

    ``status`` is ``"ok"`` (``fares`` holds what was found, possibly nothing) or the
    kind of the error: ``"transient"``, ``"parse"``, ``"permanent"`` or ``"blocked"``
    (the airline refused to answer: retried like a transient error, never "no flights").
    ``field_counts`` are the fare pipeline's per-field counts of an answer it refused,
    the per-field yield's data; empty for an ok result (its counts are implied: every
    field of every fare valid, see ``voe.store.rows.all_valid_counts``), when the
    pipeline did not run on an answer (no page, a page that did not parse), or when an
    older worker sent none.
    """

    job: SearchJob
    status: str
    fares: tuple[Fare, ...]
    error: str | None
    worker: str
    duration: float
    field_counts: tuple[FieldCount, ...] = ()


OK = "ok"
TRANSIENT = "transient"
PARSE = "parse"
PERMANENT = "permanent"
BLOCKED = "blocked"
RESULT_STATUSES = (OK, TRANSIENT, PARSE, PERMANENT, BLOCKED)


def check_date(date: str) -> datetime.date:
    """Return ``date`` (``YYYY-MM-DD``) as a date; raise ``ValueError`` if it is not one."""
    if not _DATE.fullmatch(date):
        raise ValueError(f"bad date {date!r}: expected YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"bad date {date!r}: no such day") from None
