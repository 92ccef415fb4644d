"""A worker's prefetch follows its pace (voe/worker/credit.py): more for fast jobs, as set
for slow."""

from __future__ import annotations

from pathlib import Path

from cluster import Cluster

from voe.worker.credit import MEASURE_SECONDS, PrefetchGauge


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pace(gauge: PrefetchGauge, clock: Clock, per_second: float) -> int | None:
    """Finish jobs at ``per_second`` over one measuring window; what the gauge says."""
    clock.now += MEASURE_SECONDS
    return gauge.finished(int(per_second * MEASURE_SECONDS))


def test_slow_jobs_keep_the_configured_prefetch() -> None:
    clock = Clock()
    gauge = PrefetchGauge(base=2, concurrency=16, seconds=0.01, clock=clock)
    assert _pace(gauge, clock, 100) is None  # 100 jobs/s x 10 ms = 1 job: under the base
    assert gauge.current == 2


def test_fast_jobs_raise_the_prefetch_to_the_pace_within_a_cap() -> None:
    clock = Clock()
    gauge = PrefetchGauge(base=2, concurrency=16, seconds=0.01, clock=clock)
    assert gauge.finished(5) is None  # no window measured yet
    assert _pace(gauge, clock, 6_000) == 60
    assert _pace(gauge, clock, 6_400) is None  # 64: a change under a quarter is noise
    assert _pace(gauge, clock, 1_000_000) == 8 * 16  # never above 8x the concurrency
    assert _pace(gauge, clock, 50) == 2  # slowed down: back to the configured prefetch
    assert gauge.current == 2


def test_a_pause_brings_the_prefetch_back() -> None:
    clock = Clock()
    gauge = PrefetchGauge(base=1, concurrency=4, seconds=0.01, clock=clock)
    assert _pace(gauge, clock, 4_000) == 32
    clock.now += 30  # idle: nothing finished for half a minute
    assert gauge.finished(10) == 1


def test_zero_seconds_turns_it_off() -> None:
    clock = Clock()
    gauge = PrefetchGauge(base=1, concurrency=4, seconds=0, clock=clock)
    assert _pace(gauge, clock, 100_000) is None
    assert gauge.current == 1


def _peaks(cluster: Cluster) -> dict[str, int]:
    peaks = {}
    for line in cluster.log("master").splitlines():
        if "peak held" in line:
            name, peak = line.split("worker ")[1].split(" peak held ")
            peaks[name] = int(peak.split()[0])
    return peaks


def test_a_fast_worker_is_given_more_credit_and_a_fixed_one_is_not(tmp_path: Path) -> None:
    airports = '["GRU", "REC", "SSA", "POA", "BSB", "CNF", "FOR", "CWB", "MAO", "BEL"]'
    cluster = Cluster(tmp_path, "http://127.0.0.1:9", backend="null", airports=airports,
                      days=40)  # 90 routes x 40 days: 3,600 jobs of microseconds
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("quick", concurrency=4, prefetch=1)
        fixed = dict(cluster.env, VOE_PREFETCH_SECONDS="0")
        cluster.spawn("fixed", "worker", "--name", "fixed", "--concurrency", "4",
                      "--prefetch", "1", env=fixed)
        assert cluster.wait_master(master) == 0
        outcomes = cluster.store_rows("outcomes")
        assert len(outcomes) == 3600
        assert len({(row["cycle"], row["job_id"]) for row in outcomes}) == 3600
        peaks = _peaks(cluster)
        assert peaks["fixed"] <= 5, peaks  # concurrency + prefetch, as configured
        assert peaks["quick"] > 5, peaks  # its pace asked for more
        assert peaks["quick"] <= 4 + 8 * 4, peaks  # and never past the cap
    finally:
        cluster.stop()
