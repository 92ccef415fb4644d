"""The collection plan: a TOML file that expands lazily into search jobs.

A plan names, per backend, the airports to search between and the pairs to skip,
a window of departure dates, one-way or round trip, who travels in which cabin from
which points of sale (``[search]``), and how the master cycles (once, or a new cycle
every interval). ``load_plan`` validates the whole file up
front and raises ``PlanError`` with a one-line message naming the file and key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import tomllib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from voe.master import retrying
from voe.master.retrying import RetryPolicy
from voe.model import (
    MAX_LEGS,
    MAX_PASSENGERS,
    MIN_LEGS,
    Leg,
    SearchJob,
    SearchOptions,
    job_id,
    legs_text,
)

# The plan `voe run` and the master use when none is given.
DEMO_PLAN = "demo.toml"
# Longest cycle interval accepted (a year), to catch unit mistakes.
MAX_INTERVAL = 366 * 86400
_AIRPORT = re.compile(r"^[A-Z0-9]{3,4}$")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class PlanError(Exception):
    """A plan file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class RouteSet:
    """The routes of one backend: every ordered pair of airports, minus blocked pairs; or,
    in a multi-city plan, its ``itineraries`` (the airports each trip flies through)."""

    backend: str
    airports: tuple[str, ...]
    blocked: frozenset[tuple[str, str]]
    requests_per_second: float | None = None
    # Overrides of the plan's retry policy for these routes (None: the plan's).
    max_attempts: int | None = None
    retry_delay: float | None = None
    retry_delay_max: float | None = None
    itineraries: tuple[tuple[str, ...], ...] = ()

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Yield the (origin, destination) pairs to search, in a stable order."""
        for origin, destination in itertools.permutations(self.airports, 2):
            if (origin, destination) not in self.blocked:
                yield origin, destination

    def pair_count(self) -> int:
        """How many pairs ``pairs`` yields (itineraries, in a multi-city plan), without
        expanding them."""
        return len(self.itineraries) or sum(1 for _ in self.pairs())

    def covers(self, origin: str, destination: str) -> bool:
        """Whether these routes search from ``origin`` to ``destination`` (an itinerary's
        first and last airports, in a multi-city plan)."""
        if self.itineraries:
            return any(trip[0] == origin and trip[-1] == destination
                       for trip in self.itineraries)
        return (origin in self.airports and destination in self.airports
                and (origin, destination) not in self.blocked)


@dataclass(frozen=True)
class Plan:
    """A validated collection plan."""

    name: str
    source: str
    digest: str
    trip: str
    interval: float | None
    max_attempts: int
    lease_seconds: float
    start_in_days: int
    days_ahead: int
    step_days: int
    stay_days: tuple[int, ...]
    routes: tuple[RouteSet, ...]
    retry_delay: float = retrying.RETRY_DELAY
    retry_delay_max: float = retrying.RETRY_DELAY_MAX
    # The search options of every route and date, as text (``""``: one adult, economy,
    # the airline's own point of sale); several multiply the searches.
    options: tuple[str, ...] = ("",)
    # Search each month of the date window as one calendar (the cheapest fare per day),
    # then the ``cheapest_days`` cheapest days of each calendar (in the window) in full.
    calendar: bool = False
    cheapest_days: int = 0

    @property
    def once(self) -> bool:
        """True when the plan runs a single cycle."""
        return self.interval is None

    def dates(self, start: dt.date) -> list[tuple[str, str | None]]:
        """The (departure, return) dates searched in a cycle that starts on ``start`` (for a
        calendar plan, each month ``YYYY-MM`` the window touches, once)."""
        first = start + dt.timedelta(days=self.start_in_days)
        if self.calendar:
            days = (first + dt.timedelta(days=d) for d in range(self.days_ahead))
            return [(month, None) for month in dict.fromkeys(day.isoformat()[:7] for day in days)]
        departures = [first + dt.timedelta(days=d)
                      for d in range(0, self.days_ahead, self.step_days)]
        if self.trip != "round":  # a multi-city trip's later legs: ``multi_city_legs``
            return [(day.isoformat(), None) for day in departures]
        return [(day.isoformat(), (day + dt.timedelta(days=stay)).isoformat())
                for day in departures for stay in self.stay_days]

    def window(self, start: dt.date) -> tuple[str, str]:
        """The first and last departure dates of a cycle that starts on ``start``."""
        first = start + dt.timedelta(days=self.start_in_days)
        return first.isoformat(), (first + dt.timedelta(days=self.days_ahead - 1)).isoformat()

    def full_searches(self, calendar: SearchJob, days: Iterable[tuple[str, str]],
                      start: dt.date) -> list[SearchJob]:
        """The jobs that search in full the ``cheapest_days`` cheapest of a ``calendar``
        job's ``days`` ((date, price) pairs) within the cycle's window: one-way searches of
        its route, options and cycle, cheapest first (the earlier day among equal prices)."""
        first, last = self.window(start)
        chosen = sorted(((_price(price), date) for date, price in days
                         if first <= date <= last and _price(price) is not None))
        return [SearchJob(job_id(calendar.backend, calendar.origin, calendar.destination, date,
                                 None, calendar.options), calendar.cycle, 0, calendar.backend,
                          calendar.origin, calendar.destination, date, None, calendar.options)
                for _, date in chosen[:self.cheapest_days]]

    def multi_city_legs(self, itinerary: tuple[str, ...], first: str) -> list[str]:
        """The legs (``voe.model.legs_text``) of ``itinerary`` whose first leg departs on
        ``first``: one trip per ``stay_days`` value, each later leg that many days after
        the one before."""
        day = dt.date.fromisoformat(first)
        return [legs_text(Leg(origin, destination, (day + dt.timedelta(days=stay * n)).isoformat())
                          for n, (origin, destination) in enumerate(itertools.pairwise(itinerary)))
                for stay in self.stay_days]

    def budgets(self) -> dict[str, float]:
        """Fleet-wide requests per second per backend (the strictest of its route tables)."""
        budgets: dict[str, float] = {}
        for routes in self.routes:
            if routes.requests_per_second is not None:
                current = budgets.get(routes.backend, routes.requests_per_second)
                budgets[routes.backend] = min(current, routes.requests_per_second)
        return budgets

    def retry_policy(self, backend: str, origin: str, destination: str,
                     max_attempts: int | None = None) -> RetryPolicy:
        """The retry policy of a search: its route table's keys, else the plan's (with
        ``max_attempts`` standing for the plan's, as a cycle recorded it)."""
        attempts = self.max_attempts if max_attempts is None else max_attempts
        policy = RetryPolicy(attempts, self.retry_delay, self.retry_delay_max)
        for routes in self.routes:
            if routes.backend == backend and routes.covers(origin, destination):
                return RetryPolicy(
                    attempts if routes.max_attempts is None else routes.max_attempts,
                    policy.delay if routes.retry_delay is None else routes.retry_delay,
                    policy.delay_max if routes.retry_delay_max is None else routes.retry_delay_max)
        return policy

    def longest_retry_wait(self) -> float:
        """The longest pause any route's retries take (the ledger's guard against clock steps)."""
        caps = [self.retry_delay_max, *(r.retry_delay_max for r in self.routes
                                        if r.retry_delay_max is not None)]
        return max(caps)

    def job_count(self, start: dt.date | None = None) -> int:
        """How many jobs one cycle that starts on ``start`` (default today) holds, computed
        without expanding them (a calendar plan's window may touch one month more or less
        another day)."""
        dates = len(self.dates(start or dt.date.today())) * len(self.options)
        if self.trip == "multi":
            dates *= len(self.stay_days)
        return sum(routes.pair_count() for routes in self.routes) * dates

    def jobs(self, cycle: int, start: dt.date, skip: int = 0) -> Iterator[SearchJob]:
        """Yield the jobs of ``cycle`` lazily, in a stable order, after the first ``skip``."""
        dates = self.dates(start)
        if self.trip == "multi":
            yield from self._multi_city_jobs(cycle, dates, skip)
            return
        # Skipping (on a restart) walks plain tuples at C speed; jobs are built after it.
        searches = itertools.chain.from_iterable(
            itertools.product((routes.backend,), routes.pairs(), dates, self.options)
            for routes in self.routes)
        for backend, (origin, destination), (date, back), options in itertools.islice(
                searches, skip, None):
            yield SearchJob(job_id(backend, origin, destination, date, back, options), cycle, 0,
                            backend, origin, destination, date, back, options)


    def _multi_city_jobs(self, cycle: int, dates: list[tuple[str, str | None]],
                         skip: int) -> Iterator[SearchJob]:
        """The jobs of a multi-city plan: per itinerary, first date, stay and options."""
        searches = itertools.chain.from_iterable(
            itertools.product((routes.backend,), routes.itineraries, dates,
                              range(len(self.stay_days)), self.options)
            for routes in self.routes)
        for backend, itinerary, (date, _), stay, options in itertools.islice(
                searches, skip, None):
            legs = self.multi_city_legs(itinerary, date)[stay]
            yield SearchJob(job_id(backend, itinerary[0], itinerary[-1], date, None, options,
                                   legs), cycle, 0, backend, itinerary[0], itinerary[-1],
                            date, None, options, legs)


def _price(text: str) -> Decimal | None:
    """A calendar day's price as a number (None if it is none: that day is not chosen)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def default_plan_path() -> Path:
    """The demo plan shipped inside the package."""
    return Path(str(resources.files("voe") / "demo" / "plans" / DEMO_PLAN))


def load_plan(path: str | Path | None = None, backends: Collection[str] | None = None) -> Plan:
    """Read and validate a plan file (the demo plan when ``path`` is empty).

    With ``backends`` (the names installed here), a routes table naming another backend
    is a ``PlanError``, so a typo fails at load rather than as a dead letter per job.
    """
    plan_path = Path(path) if path else default_plan_path()
    where = str(path) if path else f"demo plan ({plan_path})"
    try:
        raw = plan_path.read_bytes()
    except OSError as error:
        raise PlanError(f"{where}: cannot read the plan file: {error.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"{where}: not valid TOML: {error}") from None
    return _Reader(where, data, backends).plan(hashlib.sha256(raw).hexdigest())


class _Reader:
    """Reads one plan's tables, naming the file and key in every error."""

    def __init__(self, where: str, data: dict[str, Any],
                 backends: Collection[str] | None = None) -> None:
        self.where = where
        self.data = data
        self.backends = backends

    def fail(self, key: str, problem: str) -> PlanError:
        return PlanError(f"{self.where}: {key}: {problem}")

    def table(self, name: str, required: bool = True) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "missing table" if value is None else "must be a table")
        return value

    def integer(self, table: dict[str, Any], prefix: str, key: str, default: int | None,
                low: int, high: int) -> int:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"{prefix}.{key}", "missing")
        if type(value) is not int or not low <= value <= high:
            raise self.fail(f"{prefix}.{key}",
                            f"must be a whole number from {low} to {high} (got {value!r})")
        return value

    def plan(self, digest: str) -> Plan:
        known = {"plan", "dates", "routes", "search"}
        for key in self.data:
            if key not in known:
                raise self.fail(key, f"unknown key (expected one of {', '.join(sorted(known))})")
        head = self.table("plan")
        dates = self.table("dates")
        name = head.get("name", "plan")
        if not isinstance(name, str) or not name:
            raise self.fail("plan.name", "must be a non-empty string")
        trip = head.get("trip", "oneway")
        if trip not in ("oneway", "round", "multi"):
            raise self.fail("plan.trip", f'must be "oneway", "round" or "multi" (got {trip!r})')
        calendar = dates.get("calendar", False)
        if type(calendar) is not bool:
            raise self.fail("dates.calendar", f"must be true or false (got {calendar!r})")
        if calendar and trip != "oneway":
            raise self.fail("dates.calendar", "a calendar prices one-way trips: use "
                            'trip = "oneway" with calendar = true')
        cheapest_days = self.integer(dates, "dates", "cheapest_days", 0, 0, 31)
        if cheapest_days and not calendar:
            raise self.fail("dates.cheapest_days", "searches in full the cheapest days of "
                            "calendars: set calendar = true too")
        stays = dates.get("stay_days", [7])
        if (not isinstance(stays, list) or not stays
                or not all(type(s) is int and 0 <= s <= 365 for s in stays)):
            raise self.fail("dates.stay_days", "must be a list of whole numbers from 0 to 365")
        return Plan(
            name=name,
            source=self.where,
            digest=digest,
            trip=trip,
            interval=self.interval(head.get("cycle", "once")),
            max_attempts=self.integer(head, "plan", "max_attempts", retrying.MAX_ATTEMPTS, 1, 100),
            lease_seconds=float(self.integer(head, "plan", "lease_seconds", 30, 1, 86400)),
            start_in_days=self.integer(dates, "dates", "start_in_days", 1, 0, 3650),
            days_ahead=self.integer(dates, "dates", "days_ahead", None, 1, 3650),
            step_days=self.integer(dates, "dates", "step_days", 1, 1, 3650),
            stay_days=tuple(stays),
            routes=self.routes(trip == "multi"),
            options=self.options(),
            calendar=calendar,
            cheapest_days=cheapest_days,
            retry_delay=self.duration(head, "plan", "retry_delay", retrying.RETRY_DELAY),
            retry_delay_max=self.duration(head, "plan", "retry_delay_max",
                                          retrying.RETRY_DELAY_MAX),
        )

    def options(self) -> tuple[str, ...]:
        """The ``[search]`` table's options as text, one per cabin and point of sale listed
        (none: the defaults, one adult in economy at the airline's own point of sale)."""
        search = self.table("search", required=False)
        unknown = set(search) - set(SearchOptions._fields)
        if unknown:
            raise self.fail(f"search.{sorted(unknown)[0]}",
                            f"unknown key (expected {', '.join(SearchOptions._fields)})")
        party = {name: self.integer(search, "search", name, default, 0, MAX_PASSENGERS)
                 for name, default in (("adults", 1), ("children", 0), ("infants", 0))}
        cabins = self.choices(search, "cabin", "economy", 'a cabin like "business"')
        places = self.choices(search, "pos", "", 'a country code like "US"')
        currency = search.get("currency", "")
        if not isinstance(currency, str):
            raise self.fail("search.currency", f'must be a currency code like "USD" '
                            f"(got {currency!r})")
        found = []
        for cabin, pos in itertools.product(cabins, places):
            options = SearchOptions(**party, cabin=cabin, pos=pos, currency=currency)
            try:
                options.check()
            except ValueError as error:
                key = str(error).split(maxsplit=1)[0].rstrip(",")
                raise self.fail(f"search.{key}", str(error)) from None
            found.append(str(options))
        return tuple(dict.fromkeys(found))

    def choices(self, table: dict[str, Any], key: str, default: str, what: str) -> list[str]:
        """A key that names one value or a list of them (each a search of its own)."""
        value = table.get(key, default)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(item, str) for item in values):
            raise self.fail(f"search.{key}", f"must be {what}, or a list of them (got {value!r})")
        if len(set(values)) != len(values):
            raise self.fail(f"search.{key}", "lists a value twice")
        return values

    def duration(self, table: dict[str, Any], prefix: str, key: str,
                 default: float | None) -> float | None:
        """A pause like "10s", "5m" or a number of seconds (0 allowed), at most a day."""
        if key not in table:
            return default
        value = table[key]
        seconds = -1.0
        if type(value) in (int, float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _INTERVAL.match(value.strip())):
            seconds = float(match[1]) * _UNITS[match[2]]
        if not 0 <= seconds <= 86400:
            raise self.fail(f"{prefix}.{key}",
                            f'must be a pause like "10s", "5m" or "1h" (at most a day; got '
                            f"{value!r})")
        return seconds

    def interval(self, value: Any) -> float | None:
        if value == "once":
            return None
        if type(value) is int and 0 < value <= MAX_INTERVAL:
            return float(value)
        match = _INTERVAL.match(value) if isinstance(value, str) else None
        seconds = float(match[1]) * _UNITS[match[2]] if match else 0
        if not 0 < seconds <= MAX_INTERVAL:
            raise self.fail("plan.cycle",
                            f'must be "once" or an interval like "30m", "6h", "1d" (got {value!r})')
        return seconds

    def itineraries(self, entry: dict[str, Any], key: str) -> tuple[tuple[str, ...], ...]:
        """A multi-city routes table's ``itineraries``: lists of 3 to 7 airport codes."""
        found = entry.get("itineraries")
        example = 'e.g. [["GRU", "REC", "SSA"]]'
        if not isinstance(found, list) or not found:
            raise self.fail(f"{key}.itineraries", "a multi-city plan lists the airports of each "
                            f"trip, {example}")
        trips = []
        for trip in found:
            if (not isinstance(trip, list) or not MIN_LEGS + 1 <= len(trip) <= MAX_LEGS + 1
                    or not all(isinstance(code, str) and _AIRPORT.match(code) for code in trip)):
                raise self.fail(f"{key}.itineraries", f"each trip lists {MIN_LEGS + 1} to "
                                f"{MAX_LEGS + 1} airport codes, {example} (got {trip!r})")
            if any(a == b for a, b in itertools.pairwise(trip)):
                raise self.fail(f"{key}.itineraries", f"a leg flies from an airport to itself "
                                f"(got {trip!r})")
            trips.append(tuple(trip))
        if len(set(trips)) != len(trips):
            raise self.fail(f"{key}.itineraries", "lists a trip twice")
        return tuple(trips)

    def routes(self, multi_city: bool = False) -> tuple[RouteSet, ...]:
        routes = self.data.get("routes")
        if not isinstance(routes, list) or not routes:
            raise self.fail("[[routes]]", "at least one routes table is required")
        result = []
        for index, entry in enumerate(routes):
            key = f"routes[{index}]"
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            backend = entry.get("backend")
            if not isinstance(backend, str) or not backend:
                raise self.fail(f"{key}.backend", "must name a backend, e.g. \"demo\"")
            if self.backends is not None and backend not in self.backends:
                raise self.fail(f"{key}.backend", f"unknown backend {backend!r}; installed: "
                                f"{', '.join(sorted(self.backends)) or 'none'}")
            if multi_city != ("itineraries" in entry):
                raise self.fail(f"{key}.itineraries", "a multi-city plan (trip = \"multi\") "
                                "lists itineraries instead of airports" if multi_city else
                                'only a multi-city plan (trip = "multi") lists itineraries')
            trips = self.itineraries(entry, key) if multi_city else ()
            airports = (sorted({code for trip in trips for code in trip}) if multi_city
                        else entry.get("airports"))
            if not isinstance(airports, list) or len(airports) < 2:
                raise self.fail(f"{key}.airports", "must list at least two airport codes")
            for code in airports:
                if not isinstance(code, str) or not _AIRPORT.match(code):
                    raise self.fail(f"{key}.airports",
                                    f"{code!r} is not an airport code like \"GRU\"")
            if len(set(airports)) != len(airports):
                raise self.fail(f"{key}.airports", "lists an airport twice")
            blocked = set()
            for pair in entry.get("blocked", []):
                if (not isinstance(pair, list) or len(pair) != 2
                        or not all(isinstance(code, str) for code in pair)):
                    raise self.fail(f"{key}.blocked",
                                    f'each entry must be a pair like ["GRU", "GIG"] (got {pair!r})')
                blocked.add((pair[0], pair[1]))
            unknown = set(entry) - {"backend", "airports", "blocked", "requests_per_second",
                                    "max_attempts", "retry_delay", "retry_delay_max",
                                    "itineraries"}
            if unknown:
                raise self.fail(f"{key}.{sorted(unknown)[0]}", "unknown key")
            rps = entry.get("requests_per_second")
            if rps is not None and (type(rps) not in (int, float) or not 0 < rps <= 100_000):
                raise self.fail(f"{key}.requests_per_second",
                                f"must be a positive number of requests per second (got {rps!r})")
            attempts = (None if "max_attempts" not in entry else
                        self.integer(entry, key, "max_attempts", None, 1, 100))
            result.append(RouteSet(backend, tuple(airports), frozenset(blocked),
                                   float(rps) if rps is not None else None, attempts,
                                   self.duration(entry, key, "retry_delay", None),
                                   self.duration(entry, key, "retry_delay_max", None),
                                   trips))
        return tuple(result)
