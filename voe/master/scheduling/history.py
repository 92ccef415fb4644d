"""What a scheduler knows of one search: its departure, its route and its observations."""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field

DAY = 86_400.0
# Intervals between observations kept per search for its change-rate estimate.
KEPT_INTERVALS = 32


@dataclass(slots=True)
class Interval:
    """The time between two observations of a search, and whether its answer changed."""

    seconds: float
    days_before: float  # days before departure at the interval's middle
    changed: bool


@dataclass(slots=True)
class Search:
    """One search the scheduler may run: its key (the job id), the route it belongs to (for
    pooled estimates), when it departs (epoch seconds) and what was observed of it."""

    key: str
    route: str
    departs: float
    last_at: float | None = None
    last_answer: int | None = None
    observations: int = 0
    changes: int = 0
    # The adaptive scheduler's current interval (seconds; 0: not set yet).
    interval: float = 0.0
    intervals: deque[Interval] = field(default_factory=lambda: deque(maxlen=KEPT_INTERVALS))

    def days_before(self, now: float) -> float:
        """Days from ``now`` to departure (negative once departed)."""
        return (self.departs - now) / DAY

    def observe(self, at: float, answer: int) -> Interval | None:
        """Record an observation at ``at`` answering ``answer`` (a digest); the interval since
        the previous observation, or None for the first (or one out of order)."""
        previous, before = self.last_at, self.last_answer
        if previous is not None and at <= previous:
            return None
        self.observations += 1
        self.last_at, self.last_answer = at, answer
        if previous is None or before is None:
            return None
        changed = answer != before
        self.changes += changed
        middle = (previous + at) / 2
        interval = Interval(at - previous, self.days_before(middle), changed)
        self.intervals.append(interval)
        return interval


def departure(date: str) -> float:
    """The start of ``date`` (UTC) in epoch seconds: a search of it is over then."""
    day = dt.date.fromisoformat(date)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
