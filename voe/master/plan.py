"""The collection plan: a TOML file that expands lazily into search jobs.

A plan names, per backend, the airports to search between and the pairs to skip,
a window of departure dates, one-way or round trip, who travels in which cabin from
which points of sale (``[search]``), and how the master cycles (once, or a new cycle
every interval). ``load_plan`` validates the whole file up
front and raises ``PlanError`` with a one-line message naming the file and key (the
reading itself is in ``voe.master.planfile``).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from voe.master import retrying
from voe.master.retrying import RetryPolicy
from voe.model import Leg, SearchJob, job_id, legs_text

# The plan `voe run` and the master use when none is given.
DEMO_PLAN = "demo.toml"
# How a plan may schedule its searches: in cycles, or continuously (``voe.master.scheduling``).
SCHEDULERS = ("cycle", "ttl", "adaptive", "freshness")
# Longest cycle interval accepted (a year), to catch unit mistakes.
MAX_INTERVAL = 366 * 86400


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
    # "cycle", or a continuous scheduler (``voe.master.rounds``) spending each backend's budget.
    scheduler: str = "cycle"

    @property
    def once(self) -> bool:
        """True when the plan runs a single cycle."""
        return self.interval is None and self.scheduler == "cycle"

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
    # Imported here, not at the top: voe.master.planfile imports this module.
    from voe.master.planfile import read_plan

    return read_plan(path, backends)
