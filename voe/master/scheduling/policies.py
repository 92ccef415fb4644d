"""The continuous schedulers' rules: when a search is due, and which due search comes first.

Each policy gives a search's priority now (None: not due); the scheduler runs the
highest first, as the budget allows. A search never observed comes before any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from voe.master.scheduling import allocation
from voe.master.scheduling.estimates import RateEstimates
from voe.master.scheduling.history import Interval, Search

HOUR = 3600.0
# Skyscanner's published partner cache lifetimes: 4 h for departures within a week, 24 h
# within a month, 36 h later.
TTL_TIERS = ((7.0, 4 * HOUR), (30.0, 24 * HOUR), (math.inf, 36 * HOUR))
# Nutch's AdaptiveFetchSchedule: an interval shrinks by a fifth after a change and grows by
# a fifth after none, within bounds; it starts at a day.
ADAPTIVE_START, ADAPTIVE_MIN, ADAPTIVE_MAX = 24 * HOUR, HOUR, 7 * 24 * HOUR
ADAPTIVE_SHRINK, ADAPTIVE_GROW = 0.8, 1.2
# How often (scheduler seconds) the freshness policy refits rates and frequencies.
REPLAN_EVERY = HOUR
NEVER_SEEN = math.inf


class Policy:
    """A scheduler's rule; the base runs searches oldest first, every one always due."""

    name = "oldest"

    def priority(self, search: Search, now: float) -> float | None:
        """How much ``search`` wants running now (higher first); None when not due."""
        if search.last_at is None:
            return NEVER_SEEN
        return now - search.last_at

    def observed(self, search: Search, interval: Interval | None) -> None:
        """``search`` was just observed (``interval``: since its previous observation)."""

    def replan(self, searches: Sequence[Search], now: float, budget: float) -> None:
        """Look again at every search (``budget``: runs a second, on the scheduler's clock)."""


class TtlPolicy(Policy):
    """A stored answer lives for a lifetime set by days before departure; due once expired,
    the most expired (relative to its lifetime) first."""

    name = "ttl"

    def __init__(self, tiers: Sequence[tuple[float, float]] = TTL_TIERS) -> None:
        self.tiers = tuple(tiers)

    def lifetime(self, search: Search, now: float) -> float:
        """The lifetime (seconds) of ``search``'s stored answer now."""
        days = search.days_before(now)
        return next(seconds for limit, seconds in self.tiers if days <= limit)

    def priority(self, search: Search, now: float) -> float | None:
        if search.last_at is None:
            return NEVER_SEEN
        overdue = (now - search.last_at) / self.lifetime(search, now)
        return overdue if overdue >= 1 else None


class AdaptivePolicy(Policy):
    """Nutch's adaptive schedule: each search has its own interval, shortened when its
    answer changed and lengthened when not."""

    name = "adaptive"

    def observed(self, search: Search, interval: Interval | None) -> None:
        if not search.interval:
            search.interval = ADAPTIVE_START
        if interval is not None:
            factor = ADAPTIVE_SHRINK if interval.changed else ADAPTIVE_GROW
            search.interval = min(max(search.interval * factor, ADAPTIVE_MIN), ADAPTIVE_MAX)

    def priority(self, search: Search, now: float) -> float | None:
        if search.last_at is None:
            return NEVER_SEEN
        overdue = (now - search.last_at) / (search.interval or ADAPTIVE_START)
        return overdue if overdue >= 1 else None


class FreshnessPolicy(Policy):
    """Each search at the frequency that keeps the most searches fresh within the budget
    (``allocation``), from change rates learnt from observations (``estimates``), the most
    overdue for its frequency first. It spends the whole budget: the frequencies sum to it,
    and a search it would not run at all (one that changes too fast to be worth a request)
    comes last. Replanned every ``REPLAN_EVERY``."""

    name = "freshness"

    def __init__(self, replan_every: float = REPLAN_EVERY) -> None:
        self.estimates = RateEstimates()
        self.replan_every = replan_every
        self.planned_at: float | None = None
        self.frequency: dict[str, float] = {}

    def observed(self, search: Search, interval: Interval | None) -> None:
        if interval is not None:
            self.estimates.add(interval, search.route)

    def replan(self, searches: Sequence[Search], now: float, budget: float) -> None:
        if self.planned_at is not None and now - self.planned_at < self.replan_every:
            return
        self.planned_at = now
        self.estimates.refit(searches)
        rates = [self.estimates.rate(search, now) for search in searches]
        self.frequency = dict(zip((search.key for search in searches),
                                  allocation.frequencies(rates, budget), strict=True))

    def priority(self, search: Search, now: float) -> float | None:
        if search.last_at is None:
            return NEVER_SEEN
        return (now - search.last_at) * self.frequency.get(search.key, 0.0)


POLICIES: dict[str, type[Policy]] = {
    "ttl": TtlPolicy, "adaptive": AdaptivePolicy, "freshness": FreshnessPolicy}
"""The continuous schedulers by the name a plan gives them (``cycle`` is the plan's cycles)."""
