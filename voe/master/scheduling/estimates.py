"""Change rates of searches, learnt from their observations.

An observation says only whether a search's answer changed since the previous one, so a
rate is estimated from binary outcomes over intervals of any length (Cho and
Garcia-Molina's setting). Rates grow as departure nears and differ by route, so the
estimate is pooled: a rate per band of days before departure (the maximum-likelihood rate
of all searches' intervals in that band, the intervals grouped by length so a fit costs
the same however long the history), times a factor per route (fitted the same way to the
route's intervals) and one per search (changes seen over changes expected, shrunk towards
1 by ``PRIOR_WEIGHT`` pseudo-changes). A search with no history gets its route's factor; a
route with none gets 1, the bands' rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from voe.master.scheduling.history import DAY, Interval, Search

# Upper edges (days before departure) of the bands rates are pooled over; a last band is open.
BAND_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
# Weight of the pooled estimate against a route's or a search's own, in expected changes.
PRIOR_WEIGHT = 2.0
# Bounds of a fitted rate, in changes a day.
MIN_RATE, MAX_RATE = 1e-4, 1e4
# The rate assumed before anything is observed (changes a day).
DEFAULT_RATE = 1.0


def band(days_before: float) -> int:
    """The band of ``days_before``."""
    return bisect.bisect_left(BAND_EDGES, days_before)


def _length_bin(seconds: float) -> int:
    """Intervals are grouped by length in steps of a factor of two."""
    return int(math.log2(max(seconds, 1.0)))


class Groups:
    """Interval outcomes grouped by band and length: [changed, unchanged, total seconds]."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, int], list[float]] = {}

    def add(self, interval: Interval) -> None:
        """Count one interval's outcome."""
        group = self.groups.setdefault((band(interval.days_before),
                                        _length_bin(interval.seconds)), [0.0, 0.0, 0.0])
        group[0 if interval.changed else 1] += 1
        group[2] += interval.seconds

    def rows(self, rates: list[float] | None = None) -> list[tuple[float, float, float]]:
        """(changed, unchanged, exposure) per group: its mean length, times its band's rate
        in ``rates`` when given."""
        return [(changed, unchanged, seconds / (changed + unchanged)
                 * (rates[key[0]] if rates is not None else 1.0))
                for key, (changed, unchanged, seconds) in self.groups.items()]


class Bands:
    """Every interval's outcome, grouped, and the rate of each band fitted to them."""

    def __init__(self) -> None:
        self.all = Groups()
        self.rates: list[float] = [DEFAULT_RATE / DAY] * (len(BAND_EDGES) + 1)

    def add(self, interval: Interval) -> None:
        """Count one interval's outcome."""
        self.all.add(interval)

    def fit(self) -> None:
        """Fit each band's rate (per second); a band with no intervals takes its nearest
        neighbour's, and with none anywhere every band keeps the default."""
        per_band: dict[int, list[tuple[float, float, float]]] = {}
        for (index, _), (changed, unchanged, seconds) in self.all.groups.items():
            per_band.setdefault(index, []).append(
                (changed, unchanged, seconds / (changed + unchanged)))
        if not per_band:
            return
        fitted = {index: _fit(rows, MIN_RATE / DAY, MAX_RATE / DAY)
                  for index, rows in per_band.items()}
        for index in range(len(self.rates)):
            nearest = min(fitted, key=lambda other: abs(other - index))
            self.rates[index] = fitted[nearest]

    def rate(self, days_before: float) -> float:
        """The pooled rate (changes a second) of a search ``days_before`` departure."""
        return self.rates[band(days_before)]


def _fit(rows: list[tuple[float, float, float]], low: float, high: float) -> float:
    """The multiplier ``m`` most likely to give these outcomes when an interval of exposure
    ``e`` changes with probability ``1 - exp(-m e)``; rows are (changed, unchanged,
    exposure) of groups of about one exposure."""
    if not any(changed for changed, _, _ in rows):
        exposure = sum(unchanged * length for _, unchanged, length in rows)
        return min(max(0.5 / exposure, low), high)  # no change seen: half a change over all
    if not any(unchanged for _, unchanged, _ in rows):
        # Every interval changed: the likelihood grows without bound, so take Cho and
        # Garcia-Molina's estimator, whose half-count correction keeps it finite.
        count = sum(changed for changed, _, _ in rows)
        mean = sum(changed * length for changed, _, length in rows) / count
        return min(max(math.log(2 * count + 1) / mean, low), high)

    def score(multiplier: float) -> float:  # the log-likelihood's slope: falls as it grows
        total = 0.0
        for changed, unchanged, length in rows:
            if changed:
                total += changed * length / math.expm1(min(multiplier * length, 700.0))
            total -= unchanged * length
        return total

    lower, upper = math.log(low), math.log(high)
    for _ in range(50):
        middle = (lower + upper) / 2
        if score(math.exp(middle)) > 0:
            lower = middle
        else:
            upper = middle
    return math.exp((lower + upper) / 2)


class RateEstimates:
    """Every search's change rate now: its band's rate times its route's factor (fitted to
    the route's intervals, with ``PRIOR_WEIGHT`` pseudo-intervals at factor 1) times its
    own (changes seen over expected, shrunk towards 1)."""

    def __init__(self) -> None:
        self.bands = Bands()
        self.routes: dict[str, Groups] = {}
        self.route_factors: dict[str, float] = {}
        self.factors: dict[str, float] = {}

    def add(self, interval: Interval, route: str) -> None:
        """Count an observed interval (``Search.observe``'s result) of ``route``."""
        self.bands.add(interval)
        self.routes.setdefault(route, Groups()).add(interval)

    def refit(self, searches: Iterable[Search]) -> None:
        """Fit the bands, then each route's and search's factor (call now and then)."""
        self.bands.fit()
        rates = self.bands.rates
        half = PRIOR_WEIGHT / 2
        self.route_factors = {
            # The prior: half changed, half not, at the length where factor 1 gives even odds.
            route: _fit([*groups.rows(rates), (half, half, math.log(2))], 1e-3, 1e3)
            for route, groups in self.routes.items()}
        self.factors = {}
        for search in searches:
            if not search.intervals:
                continue
            route = self.route_factors.get(search.route, 1.0)
            seen = sum(interval.changed for interval in search.intervals)
            expected = sum(-math.expm1(-route * self.bands.rate(interval.days_before)
                                       * interval.seconds) for interval in search.intervals)
            self.factors[search.key] = (seen + PRIOR_WEIGHT) / (expected + PRIOR_WEIGHT)

    def rate(self, search: Search, now: float) -> float:
        """``search``'s change rate (per second) at ``now``."""
        return (self.route_factors.get(search.route, 1.0) * self.factors.get(search.key, 1.0)
                * self.bands.rate(search.days_before(now)))
