"""The continuous schedulers' parts in the test process: frequencies under a budget, change
rates learnt from observations, the policies' rules, and a simulated week against the demo
airline's price process in which ``freshness`` keeps more searches fresh than a cycle."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random

import pytest

from voe.demo.airline.fares import AIRPORTS, fares_for
from voe.demo.airline.prices import PriceProcess
from voe.master.scheduling import allocation
from voe.master.scheduling.estimates import MAX_RATE, Bands, RateEstimates
from voe.master.scheduling.history import DAY, Interval, Search, departure
from voe.master.scheduling.policies import (
    ADAPTIVE_MAX,
    ADAPTIVE_MIN,
    ADAPTIVE_START,
    HOUR,
    AdaptivePolicy,
    FreshnessPolicy,
    Policy,
    TtlPolicy,
)
from voe.master.scheduling.scheduler import Scheduler

T0 = 1_800_000_000.0


def search(key: str = "s", days: float = 10.0, route: str = "GRU-GIG") -> Search:
    return Search(key, route, T0 + days * DAY)


# Allocation -----------------------------------------------------------------

def test_frequencies_spend_the_budget_and_beat_a_uniform_one():
    rates = [rate / DAY for rate in (0.01, 0.1, 0.5, 1.0, 2.0, 50.0)]
    budget = 3 / DAY
    frequencies = allocation.frequencies(rates, budget)
    assert sum(frequencies) == pytest.approx(budget, rel=1e-6)
    best = sum(map(allocation.freshness, rates, frequencies))
    uniform = sum(allocation.freshness(rate, budget / len(rates)) for rate in rates)
    assert best > uniform
    # One that changes fifty times a day is not worth a request at this budget.
    assert frequencies[-1] == 0.0 and all(frequency > 0 for frequency in frequencies[:-1])


def test_no_budget_or_no_change_means_no_runs():
    assert allocation.frequencies([1.0, 2.0], 0.0) == [0.0, 0.0]
    assert allocation.frequencies([0.0, 0.0], 1.0) == [0.0, 0.0]
    assert allocation.freshness(0.0, 1.0) == 1.0 and allocation.freshness(1.0, 0.0) == 0.0


# Estimates ------------------------------------------------------------------

def _intervals(rate: float, days_before: float, count: int, draw: random.Random):
    """Observed intervals of a search changing at ``rate`` a second."""
    for _ in range(count):
        seconds = draw.uniform(0.2, 3.0) * DAY
        changed = draw.random() < 1 - math.exp(-rate * seconds)
        yield Interval(seconds, days_before, changed)


def test_a_bands_rate_is_recovered_from_changed_or_not():
    bands, draw = Bands(), random.Random(3)
    for interval in _intervals(0.7 / DAY, 40.0, 2000, draw):
        bands.add(interval)
    bands.fit()
    assert bands.rate(40.0) * DAY == pytest.approx(0.7, rel=0.1)
    assert bands.rate(300.0) == bands.rate(40.0)  # an empty band takes its nearest neighbour's


def test_a_band_whose_every_interval_changed_gets_a_finite_rate():
    bands = Bands()
    for _ in range(20):
        bands.add(Interval(DAY, 3.0, True))
    bands.fit()
    assert bands.rate(3.0) * DAY == pytest.approx(math.log(41), rel=1e-6)
    assert bands.rate(3.0) * DAY < MAX_RATE


def test_routes_and_searches_get_their_own_factor():
    estimates, draw = RateEstimates(), random.Random(5)
    searches = []
    for route, rate in (("GRU-GIG", 0.2 / DAY), ("GRU-POA", 2.0 / DAY)):
        for index in range(30):
            found = search(f"{route}:{index}", 20.0, route)
            for interval in _intervals(rate, 20.0, 10, draw):
                found.intervals.append(interval)
                estimates.add(interval, route)
            searches.append(found)
    estimates.refit(searches)
    slow = estimates.rate(searches[0], T0) * DAY
    fast = estimates.rate(searches[-1], T0) * DAY
    assert 0.1 < slow < 0.4 and 1.2 < fast < 3.5
    assert estimates.rate(search("new", 20.0, "GRU-SSA"), T0) == estimates.bands.rate(20.0)


# History and policies -------------------------------------------------------

def test_an_observation_records_whether_the_answer_changed():
    found = search()
    assert found.observe(T0, 1) is None
    assert found.observe(T0 - 5, 2) is None  # out of order: ignored
    interval = found.observe(T0 + DAY, 2)
    assert interval is not None and interval.changed and interval.seconds == DAY
    assert not found.observe(T0 + 2 * DAY, 2).changed
    assert (found.observations, found.changes) == (3, 1)


def test_the_departure_is_the_start_of_the_date_in_utc():
    assert departure("2027-01-15") == dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp()


def test_ttl_lifetimes_follow_days_before_departure():
    policy = TtlPolicy()
    near, month, far = search("a", 3), search("b", 20), search("c", 90)
    for found in (near, month, far):
        assert policy.priority(found, T0) == math.inf  # never observed: first
        found.observe(T0, 1)
    assert policy.priority(near, T0 + 3.9 * HOUR) is None
    assert policy.priority(near, T0 + 4 * HOUR) == pytest.approx(1.0)
    assert policy.priority(month, T0 + 23 * HOUR) is None
    assert policy.priority(far, T0 + 35 * HOUR) is None
    assert policy.priority(far, T0 + 72 * HOUR) == pytest.approx(2.0)


def test_adaptive_intervals_shrink_on_change_and_grow_without_within_bounds():
    policy, found = AdaptivePolicy(), search()
    policy.observed(found, found.observe(T0, 1))
    assert found.interval == ADAPTIVE_START
    policy.observed(found, found.observe(T0 + HOUR, 2))
    assert found.interval == pytest.approx(ADAPTIVE_START * 0.8)
    for step in range(40):
        policy.observed(found, found.observe(T0 + (step + 2) * HOUR, step + 3))
    assert found.interval == ADAPTIVE_MIN
    for step in range(40):
        policy.observed(found, found.observe(T0 + (step + 50) * HOUR, 0))
    assert found.interval == ADAPTIVE_MAX
    assert policy.priority(found, found.last_at + ADAPTIVE_MAX / 2) is None


def test_the_scheduler_leaves_out_busy_and_departed_searches_and_respects_count():
    scheduler = Scheduler(Policy(), 1.0)
    scheduler.sync([search(f"s{index}", index - 1.5) for index in range(6)], T0)
    assert set(scheduler.searches) == {"s2", "s3", "s4", "s5"}  # s0, s1 have departed
    for index, key in enumerate(("s2", "s3", "s4", "s5")):
        scheduler.observe(key, T0 - 100 * (index + 1), 1)
    assert scheduler.next(T0, 2) == ["s5", "s4"]  # the oldest first
    assert scheduler.next(T0, 2, busy={"s5"}) == ["s4", "s3"]
    assert scheduler.next(T0 + 2 * DAY, 10) == ["s5", "s4"]  # s2, s3 departed meanwhile
    assert not scheduler.observe("gone", T0, 1)


# A simulated week ------------------------------------------------------------

def _simulate(policy: Policy, searches: int = 240, budget: float = 40.0, days: int = 5):
    """Share of stale searches, time-averaged over ``days`` simulated days against the demo
    airline's price process, at ``budget`` searches a day (a cycle every six days)."""
    process = PriceProcess(0.05, seed=1)
    start = dt.date(2027, 1, 15)
    pairs = list(itertools.permutations(sorted(AIRPORTS), 2))[:2]
    fares = {}
    for (origin, destination), offset in itertools.product(pairs, range(searches // 2)):
        date = (start + dt.timedelta(days=1 + offset * 330 // (searches // 2))).isoformat()
        fares[f"{origin}-{destination}:{date}"] = (origin, destination, date,
                                                   fares_for(origin, destination, date))

    def answer(key: str, at: float) -> int:
        origin, destination, date, timetable = fares[key]
        return hash(tuple(fare.price for fare in
                          process.fares_at(origin, destination, date, timetable, at)))

    now = dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp()
    scheduler = Scheduler(policy, budget / DAY)
    scheduler.sync([Search(key, key[:7], departure(key[8:])) for key in fares], now)
    stored = {}
    order = sorted(fares)
    random.Random(2).shuffle(order)
    for index, key in enumerate(order):  # a store observed at the budget's pace before
        at = now - (len(order) - index) * DAY / budget
        stored[key] = answer(key, at)
        scheduler.observe(key, at, stored[key])
    stale = samples = 0
    for step in range(int(days * budget)):
        at = now + step * DAY / budget
        if step % 4 == 0:
            live = [key for key, found in scheduler.searches.items() if found.departs > at]
            stale += sum(stored[key] != answer(key, at) for key in live) / len(live)
            samples += 1
        for key in scheduler.next(at, 1):
            stored[key] = answer(key, at)
            scheduler.observe(key, at, stored[key])
    return stale / samples


def test_freshness_keeps_more_searches_fresh_than_a_cycle_on_the_same_budget():
    cycle = _simulate(Policy())
    freshness = _simulate(FreshnessPolicy(replan_every=6 * HOUR))
    assert freshness < cycle * 0.8, (freshness, cycle)
