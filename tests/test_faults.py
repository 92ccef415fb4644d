"""The whole pipeline against a hostile demo airline: one fault at a time, real processes.

Every job must end `done` with exactly the airline's fares, or `failed` with the
fault's error after its attempts; 429s must slow the worker, not burn attempts;
the per-host limit must hold at the airline's own concurrency counter; the page
of every failed parse must be kept where `voe failed` says.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cluster import Airline, Cluster
from voe.backends.base import ParseError
from voe.demo.airline.fares import fares_for
from voe.demo.airline.faults import Faults
from voe.demo.backends.parse import parse_results

MAX_ATTEMPTS = 3
AIRPORTS = ("GRU", "REC", "SSA")  # the airports of tests/cluster.py's small plan


class FaultyAirline(Airline):
    """A `voe demo-airline` process with fault options, whose load counters tests read."""

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as answer:
            return json.load(answer)


def expected_fares(job: dict) -> list[tuple]:
    return sorted(tuple(fare) for fare in fares_for(job["origin"], job["destination"],
                                                    job["date"]))


def stored_fares(cluster: Cluster) -> dict[tuple[int, str], list[tuple]]:
    found: dict[tuple[int, str], list[tuple]] = {}
    for row in cluster.store_rows("fares"):
        found.setdefault((row["cycle"], row["job_id"]), []).append(
            (row["flight"], row["departure"], row["arrival"], row["price"], row["currency"]))
    return {key: sorted(fares) for key, fares in found.items()}


def run_against(tmp_path: Path, airline: FaultyAirline, concurrency: int = 4,
                **worker_env: str) -> tuple[Cluster, float]:
    """Collect a 12-job plan with one worker; return the finished cluster and its duration."""
    cluster = Cluster(tmp_path, airline.url, max_attempts=MAX_ATTEMPTS, lease_seconds=30)
    cluster.env.update({"VOE_HTTP_RETRIES": "3", "VOE_HTTP_BACKOFF": "0.02",
                        "VOE_HTTP_TIMEOUT": "5"})
    cluster.env.update(worker_env)
    started = time.monotonic()
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=concurrency)
        assert cluster.wait_master(master, timeout=60) == 0
    except BaseException:
        cluster.stop()
        raise
    return cluster, time.monotonic() - started


def check_outcomes(cluster: Cluster, error: str) -> tuple[int, int]:
    """Every job done with the airline's fares, or failed after its attempts with ``error``."""
    jobs = cluster.ledger_rows()
    stored = stored_fares(cluster)
    assert len(jobs) == 12
    done = failed = 0
    for job in jobs:
        if job["state"] == "done":
            done += 1
            assert stored.get((job["cycle"], job["id"]), []) == expected_fares(job), job["id"]
        else:
            failed += 1
            assert job["state"] == "failed", job
            assert job["attempt"] == MAX_ATTEMPTS, job
            assert re.search(error, job["last_error"] or ""), job["last_error"]
            assert (job["cycle"], job["id"]) not in stored
    assert "Traceback" not in cluster.log("worker") + cluster.log("sink")
    return done, failed


@pytest.fixture
def airline_factory(tmp_path):
    started: list[FaultyAirline] = []

    def start(*options: str, latency_ms: int = 0) -> FaultyAirline:
        airline = FaultyAirline(tmp_path, latency_ms=latency_ms, options=options)
        started.append(airline)
        return airline

    yield start
    for airline in started:
        airline.stop()


def plan_urls(jobs: list[dict] | None = None) -> list[str]:
    """The search URLs of the 12-job plan: of ``jobs`` (ledger rows), else of today's cycle."""
    if jobs is None:
        today = datetime.date.today()
        jobs = [{"origin": o, "destination": d, "date": str(today + datetime.timedelta(days=n))}
                for o, d in itertools.permutations(AIRPORTS, 2) for n in (1, 2)]
    return [f"/search?origin={job['origin']}&destination={job['destination']}&date={job['date']}"
            for job in jobs]


def streaks(faults: Faults, fault: str, urls: list[str]) -> dict[str, int]:
    """How many tries in a row, from the first, each URL meets ``fault`` (bounded)."""
    found = {}
    for url in urls:
        count = 0
        while count < 20 and faults.hits(fault, url, count + 1):
            count += 1
        found[url] = count
    return found


def choose_seed(fault: str, rate: float, longest: int) -> int:
    """A seed under which today's plan meets ``fault`` 2 to 4 times, at most ``longest`` in a
    row per URL: so the test is exact on any day (fault decisions depend on the dates)."""
    urls = plan_urls()
    for seed in range(1, 1000):
        found = streaks(Faults(seed=seed, **{f"{fault}_rate": rate}), fault, urls)
        if 2 <= sum(found.values()) <= 4 and max(found.values()) <= longest:
            return seed
    raise AssertionError("no seed fits")


FAULTS = {
    # name: (fault, airline options, worker settings)
    "5xx": ("error", ("--error-rate", "0.3"), {}),
    "reset": ("reset", ("--reset-rate", "0.3"), {}),
    "slow": ("slow", ("--slow-rate", "0.3", "--slow-ms", "2500"), {"VOE_HTTP_TIMEOUT": "1"}),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_transient_http_faults_are_retried_inside_the_attempt(tmp_path, airline_factory, name):
    fault, options, worker_env = FAULTS[name]
    seed = choose_seed(fault, float(options[1]), longest=3)  # 3 retries absorb 3 in a row
    airline = airline_factory(*options, "--seed", str(seed))
    cluster, _ = run_against(tmp_path, airline, **worker_env)
    try:
        assert check_outcomes(cluster, r"^$") == (12, 0)
        jobs = cluster.ledger_rows()
    finally:
        cluster.stop()
    expected = streaks(Faults(seed=seed, **{f"{fault}_rate": float(options[1])}), fault,
                       plan_urls(jobs))
    stats = airline.stats()
    assert [job["attempt"] for job in jobs] == [1] * 12  # no attempt was burnt
    injected = stats["faults"][fault]
    if name == "slow":  # a loaded machine may time out a fast answer too: never fewer
        assert injected >= sum(expected.values()), (stats, expected)
    else:
        assert injected == sum(expected.values()), (stats, expected)
        assert stats["requests"] == 12 + injected  # each fault cost one retry, nothing more


def test_truncated_pages_never_store_wrong_fares(tmp_path, airline_factory):
    seed = choose_seed("truncate", 0.3, longest=2)  # 3 attempts outlast 2 in a row
    airline = airline_factory("--truncate-rate", "0.3", "--seed", str(seed))
    cluster, _ = run_against(tmp_path, airline)
    try:
        assert check_outcomes(cluster, r"^$") == (12, 0)
        jobs = cluster.ledger_rows()
        kept = sorted((cluster.data_dir / "pages").glob("*.page"))
    finally:
        cluster.stop()
    expected = streaks(Faults(seed=seed, truncate_rate=0.3), "truncate", plan_urls(jobs))
    # A page cut inside its results is a parse error: the attempt fails and a later one reads
    # the whole page (a page cut after its results still holds every fare, rightly read).
    for job, url in zip(jobs, plan_urls(jobs), strict=True):
        assert job["attempt"] <= 1 + expected[url]
    assert 1 <= airline.stats()["faults"]["truncate"] <= sum(expected.values())
    assert len(kept) == sum(1 for job in jobs if job["attempt"] > 1)
    for page in kept:
        with pytest.raises(ParseError):
            parse_results(page.read_bytes())


def test_sloppy_markup_still_reads_right(tmp_path, airline_factory):
    airline = airline_factory("--malformed-rate", "1")
    cluster, _ = run_against(tmp_path, airline)
    try:
        assert check_outcomes(cluster, r"^$") == (12, 0)
    finally:
        cluster.stop()
    assert airline.stats()["faults"]["malformed"] == 12


def test_429s_slow_the_worker_instead_of_burning_attempts(tmp_path, airline_factory):
    seed = choose_seed("throttle", 0.3, longest=2)
    airline = airline_factory("--throttle-rate", "0.3", "--retry-after", "1", "--seed", str(seed))
    cluster, elapsed = run_against(tmp_path, airline)
    try:
        assert check_outcomes(cluster, r"^$") == (12, 0)
        jobs = cluster.ledger_rows()
    finally:
        cluster.stop()
    expected = streaks(Faults(seed=seed, throttle_rate=0.3), "throttle", plan_urls(jobs))
    stats = airline.stats()
    assert [job["attempt"] for job in jobs] == [1] * 12  # every 429 waited out in the attempt
    assert stats["statuses"]["429"] == sum(expected.values()) >= 2
    assert elapsed >= 1.0  # Retry-After: 1 was honoured


def test_a_per_client_rate_limit_is_waited_out(tmp_path, airline_factory):
    airline = airline_factory("--rate-limit", "6")
    cluster, _ = run_against(tmp_path, airline, concurrency=8)
    try:
        assert check_outcomes(cluster, r"HTTP 429") == (12, 0)
        assert [job["attempt"] for job in cluster.ledger_rows()] == [1] * 12
    finally:
        cluster.stop()
    stats = airline.stats()
    assert stats["faults"]["rate_limit"] > 0 and stats["statuses"]["200"] == 12


def test_per_host_limit_holds_at_the_airline(tmp_path, airline_factory):
    airline = airline_factory(latency_ms=100)
    cluster, _ = run_against(tmp_path, airline, concurrency=8, VOE_HOST_CONCURRENCY="2")
    try:
        assert check_outcomes(cluster, r"^$") == (12, 0)
    finally:
        cluster.stop()
    stats = airline.stats()
    assert stats["max_in_flight"] == 2, stats  # 8 searches at once, 2 at a time per host
    assert stats["clients"]["127.0.0.1"]["max_in_flight"] == 2


def test_a_new_layout_fails_with_the_page_kept(tmp_path, airline_factory):
    airline = airline_factory("--layout", "new")
    cluster, _ = run_against(tmp_path, airline)
    try:
        done, failed = check_outcomes(cluster, r"no results table on the page")
        listed = cluster.voe("failed").stdout
        rows = json.loads(cluster.voe("failed", "--json").stdout)
    finally:
        cluster.stop()
    assert (done, failed) == (0, 12)
    assert len(rows) == 12
    for row in rows:
        match = re.search(r"page kept at (\S+\.page): ", row["error"])
        assert match, row["error"]
        page = Path(match[1])
        assert page.parent == (cluster.data_dir / "pages").resolve()
        assert b'<section id="offers">' in page.read_bytes()
        assert str(page) in listed
