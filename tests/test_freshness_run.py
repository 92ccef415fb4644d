"""The freshness scheduler against real processes: a master that never ends, an airline
whose prices move on a sped-up clock, and a master or a sink SIGKILLed mid-run.

Each run must store every (cycle, search) once, keep exactly one observation per done job
of the rounds (and none for a job not done), never have one search out twice at once,
spend no more searches than the plan's budget, and resume every observation after a
master restart. Processes are started and stopped by PID, on loopback only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster import Airline, Cluster, wait_for
from voe.answers import answer_digest
from voe.processes import Child

BUDGET = 20  # requests_per_second: the airline's searches a second, fleet-wide
SPEED = 2000.0  # the simulated clock: a day in 43 s
AIRPORTS = '["GRU", "REC", "SSA"]'
DAYS = 4  # 6 routes x 4 dates: 24 searches
SEARCHES = 6 * DAYS
# Simulated seconds past midnight at the start of a test: the plan's dates stay the same
# for the next (86_400 - START_INTO_DAY) / SPEED = 42 real seconds (a restarted master then
# resumes every observation: none is of a search that left the plan).
START_INTO_DAY = 600.0
# The first test's day ends 7 s into the run instead: the plan's window of dates moves on
# with searches of its first date still out.
ROLLOVER_INTO_DAY = 86_400.0 - 7 * SPEED
# The airline's latency: at the budget's pace a few searches are always out, so a kill
# always lands with leases in flight.
LATENCY_MS = 200

PLAN = f"""
[plan]
name = "fresh"
scheduler = "freshness"
max_attempts = 5
retry_delay = "1s"
lease_seconds = 5

[dates]
start_in_days = 2
days_ahead = {DAYS}
step_days = 1

[[routes]]
backend = "demo-api"
airports = {AIRPORTS}
requests_per_second = {BUDGET}
"""

RESUMED = re.compile(r"freshness scheduler: (\d+) searches, (\d+) observations resumed, "
                     r"(\d+) in flight")

Key = tuple[int, str]


def clock_origin(into_day: float, speed: float = SPEED) -> float:
    """VOE_CLOCK_ORIGIN (and the airline's --clock-origin) such that the simulated clock
    reads ``into_day`` seconds past a UTC midnight now: ``origin + (now - origin) * speed
    = midnight + into_day``."""
    now = time.time()
    target = now - now % 86_400 + into_day
    return (speed * now - target) / (speed - 1)


def start(tmp_path: Path, into_day: float = START_INTO_DAY,
          scheduler: str = "freshness") -> tuple[Airline, Cluster]:
    """The airline (prices moving twice a day) and a cluster sharing its clock, its plan
    under ``scheduler``."""
    origin = f"{clock_origin(into_day):.6f}"
    airline = Airline(tmp_path, latency_ms=LATENCY_MS, options=(
        "--price-changes", "2", "--seed", "7", "--clock-speed", f"{SPEED:g}",
        "--clock-origin", origin))
    try:
        cluster = Cluster(tmp_path, airline.url, plan=PLAN.replace(
            'scheduler = "freshness"', f'scheduler = "{scheduler}"'))
    except BaseException:
        airline.stop()
        raise
    # (Cluster's own keywords are the plan's values: the settings go on its environment.)
    cluster.env.update({"VOE_CLOCK_SPEED": f"{SPEED:g}", "VOE_CLOCK_ORIGIN": origin})
    return airline, cluster


def master(cluster: Cluster, count: int = 1) -> Child:
    """A continuous master (no --once: it never ends by itself), once it has resumed from
    the ledger (the ``count``-th master of the data dir)."""
    child = cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
    cluster.wait_log("master", " observations resumed", count=count, timeout=20)
    return child


def query(cluster: Cluster, sql: str) -> list[tuple]:
    """Rows of ``sql`` on the ledger, read while the master writes it (WAL); never creates
    the ledger (mode=rw)."""
    with sqlite3.connect(f"file:{cluster.data_dir / 'ledger.db'}?mode=rw", uri=True,
                         timeout=10) as db:
        return db.execute(sql).fetchall()


def done_keys(cluster: Cluster) -> list[Key]:
    return [tuple(row) for row in query(cluster, "SELECT cycle, id FROM jobs WHERE state = 'done'")]


def observations(cluster: Cluster) -> list[tuple]:
    """Every observation as (cycle, search, at, answer)."""
    return query(cluster, "SELECT cycle, search, at, answer FROM observations")


def stored_fares(cluster: Cluster) -> dict[Key, list[tuple]]:
    """Each stored (cycle, search)'s fares, as the sink's digest reads them."""
    fares: dict[Key, list[tuple]] = {}
    for row in cluster.store_rows("fares"):
        fares.setdefault((row["cycle"], row["job_id"]), []).append(
            (row["flight"], row["departure"], row["arrival"], row["price"], row["currency"]))
    return fares


def stored_keys(cluster: Cluster) -> list[Key]:
    return [(row["cycle"], row["job_id"]) for row in cluster.store_rows("results")]


def searches_out_twice(cluster: Cluster) -> list[tuple]:
    """Searches with more than one job pending or leased at this moment."""
    return query(cluster, "SELECT id, COUNT(*) FROM jobs WHERE state IN ('pending', 'leased') "
                          "GROUP BY id HAVING COUNT(*) > 1")


def airline_searches(airline: Airline) -> int:
    with urllib.request.urlopen(airline.url + "/stats", timeout=5) as answer:
        return json.load(answer)["requests"]


def leased(cluster: Cluster) -> set[Key]:
    return {tuple(row) for row in query(cluster,
                                        "SELECT cycle, id FROM jobs WHERE state = 'leased'")}


def observed_for(cluster: Cluster, count: int, timeout: float = 20) -> None:
    wait_for(lambda: len(observations(cluster)) >= count, timeout,
             f"{count} observations in the ledger")


def drain(cluster: Cluster, worker: Child) -> None:
    """Stop the worker (it finishes its searches) and wait until nothing is leased and the
    store holds exactly the done jobs: every result stored has been acknowledged."""
    worker.stop(timeout=10)

    def drained() -> bool:
        leased = query(cluster, "SELECT COUNT(*) FROM jobs WHERE state = 'leased'")[0][0]
        return leased == 0 and set(stored_keys(cluster)) == set(done_keys(cluster))

    wait_for(drained, 20, "no job leased and every stored result acknowledged", interval=0.2)


def assert_consistent(cluster: Cluster) -> set[Key]:
    """Each (cycle, search) stored once and done; each done job with exactly one
    observation, and each observation of a done job. Returns the done jobs."""
    stored = stored_keys(cluster)
    twice = [key for key, count in Counter(stored).items() if count > 1]
    assert not twice, f"stored more than once: {twice[:5]}"
    done = done_keys(cluster)
    assert len(done) == len(set(done))
    assert set(stored) == set(done), (set(stored) ^ set(done))
    observed = [(cycle, search) for cycle, search, _, _ in observations(cluster)]
    duplicated = [key for key, count in Counter(observed).items() if count > 1]
    assert not duplicated, f"observed more than once: {duplicated[:5]}"
    # An observation is the digest of the answer stored for its (cycle, search). Checked for
    # jobs done at their first attempt only: a job searched again after its ack was lost
    # (with a killed master) is acknowledged by the sink, as a repeat of a stored result,
    # with the digest of the repeat's fares, not of the answer it stored (a known gap).
    digests = {key: answer_digest(fares) for key, fares in stored_fares(cluster).items()}
    first = {tuple(row) for row in query(
        cluster, "SELECT cycle, id FROM jobs WHERE state = 'done' AND attempt = 1")}
    assert len(first) >= len(done) // 2
    wrong = [(cycle, search) for cycle, search, _, answer in observations(cluster)
             if (cycle, search) in first
             and answer != digests.get((cycle, search), answer_digest([]))]
    assert not wrong, f"{len(wrong)} observations not of the stored answer: {wrong[:5]}"
    unobserved, extra = sorted(set(done) - set(observed)), sorted(set(observed) - set(done))
    assert not unobserved, f"{len(unobserved)} done without an observation: {unobserved[:5]}"
    assert not extra, f"{len(extra)} observations of a job not done: {extra[:5]}"
    # `voe check` works per observation: no round lost or stored twice.
    checked = cluster.voe("check", "--json", check=False)
    totals = json.loads(checked.stdout)["totals"]
    assert (totals["lost"], totals["duplicated"]) == (0, 0), checked.stdout
    return set(done)


def assert_answers_changed(cluster: Cluster) -> None:
    """The airline's prices moved: some search's answer differs between two rounds (else
    the run proved nothing about observing changes)."""
    answers: dict[str, set[int]] = {}
    for _, search, _, answer in observations(cluster):
        answers.setdefault(search, set()).add(answer)
    assert any(len(seen) > 1 for seen in answers.values()), "no answer ever changed"


def test_freshness_spends_its_budget_and_keeps_one_observation_per_done_job(tmp_path):
    airline, cluster = start(tmp_path, into_day=ROLLOVER_INTO_DAY)
    try:
        master(cluster)
        cluster.sink()
        worker = cluster.worker("w1", concurrency=8)
        observed_for(cluster, SEARCHES)  # every search once: the rounds are running
        # The budget over a measured window, and one job per search out at any moment.
        before, started = airline_searches(airline), time.monotonic()
        looks = 0
        while time.monotonic() - started < 8:
            assert searches_out_twice(cluster) == []
            looks += 1
            time.sleep(0.25)
        spent, window = airline_searches(airline) - before, time.monotonic() - started
        assert looks >= 10
        assert spent <= BUDGET * window * 1.2 + 10, f"{spent} searches in {window:.1f} s"
        # The scheduler spends the budget: far more than one search of each per window.
        assert spent >= BUDGET * window * 0.5, f"only {spent} searches in {window:.1f} s"
        drain(cluster, worker)
        done = assert_consistent(cluster)
        assert len({cycle for cycle, _ in done}) >= 2, "every search ran in one round only"
        assert len(done) >= 3 * SEARCHES
        # A simulated day ended mid-run: a new date joined the plan (and its first left,
        # some of its searches out then; they are observed all the same).
        assert len({search.rsplit(":", 1)[1] for _, search in done}) == DAYS + 1
        assert_answers_changed(cluster)
        # Observed on the airline's sped-up clock: 8 s and more of the run are hours there.
        times = [at for _, _, at, _ in observations(cluster)]
        assert max(times) - min(times) > 8 * SPEED * 0.9, (min(times), max(times))
        assert "Traceback" not in cluster.log("master") + cluster.log("sink")
    finally:
        cluster.stop()
        airline.stop()


def kill_mid_run(cluster: Cluster, role: Child, name: str) -> set[Key]:
    """SIGKILL ``role`` once two rounds are observed and a search is out on a lease; return
    the searches that were out."""
    observed_for(cluster, 2 * SEARCHES)
    wait_for(lambda: leased(cluster), 10, "a search out on a lease", interval=0.02)
    os.kill(role.pid, signal.SIGKILL)
    role.popen.wait(5)
    out = leased(cluster)
    assert out, f"no search was out when the {name} died; the test proves nothing"
    return out


def finish_after_a_kill(cluster: Cluster, worker: Child, kept: list[tuple]) -> None:
    """After a killed role came back: observations go on, none twice at once, every one
    made before the kill is still there, and the ledger and store agree once drained."""
    observed_for(cluster, len(kept) + SEARCHES)
    assert searches_out_twice(cluster) == []
    drain(cluster, worker)
    assert_consistent(cluster)
    lost = set(kept) - set(observations(cluster))
    assert not lost, f"observations lost or rewritten: {sorted(lost)[:5]}"
    assert_answers_changed(cluster)


def test_a_master_killed_mid_run_resumes_every_observation(tmp_path):
    airline, cluster = start(tmp_path)
    try:
        first = master(cluster)
        cluster.sink()
        worker = cluster.worker("w1", concurrency=8)
        # What the killed master committed: its leases, searches in flight, observations.
        out = kill_mid_run(cluster, first, "master")
        in_flight = query(cluster, "SELECT COUNT(*) FROM jobs "
                                   "WHERE state IN ('pending', 'leased')")[0][0]
        kept = observations(cluster)
        assert len(kept) >= 2 * SEARCHES
        assert len(RESUMED.findall(cluster.log("master"))) == 1
        master(cluster, count=2)
        resumed = RESUMED.findall(cluster.log("master"))
        assert len(resumed) == 2
        assert tuple(int(value) for value in resumed[-1]) == (SEARCHES, len(kept), in_flight), (
            resumed[-1], len(kept), in_flight)
        wait_for(lambda: out <= set(done_keys(cluster)), 20,
                 f"the {len(out)} searches out when the master died to be done")
        finish_after_a_kill(cluster, worker, kept)  # the new master observes on
    finally:
        cluster.stop()
        airline.stop()


def test_a_sink_killed_mid_run_loses_and_repeats_no_observation(tmp_path):
    airline, cluster = start(tmp_path)
    try:
        master(cluster)
        sink = cluster.sink()
        worker = cluster.worker("w1", concurrency=8)
        out = kill_mid_run(cluster, sink, "sink")
        kept = observations(cluster)
        stored = len(stored_keys(cluster))
        time.sleep(1)  # the results finished meanwhile wait for a sink
        cluster.sink()
        # The searches out when the sink died are stored (or searched again) and done.
        wait_for(lambda: out <= set(done_keys(cluster)), 30,
                 f"the {len(out)} searches out when the sink died to be done")
        wait_for(lambda: len(stored_keys(cluster)) >= stored + SEARCHES, 20,
                 "the restarted sink to store more results")
        finish_after_a_kill(cluster, worker, kept)
    finally:
        cluster.stop()
        airline.stop()


@pytest.mark.parametrize("scheduler", ["ttl", "adaptive"])
def test_ttl_and_adaptive_keep_within_the_budget_and_lease_a_search_once_at_a_time(
        tmp_path, scheduler):
    airline, cluster = start(tmp_path, scheduler=scheduler)
    try:
        master(cluster)
        cluster.sink()
        worker = cluster.worker("w1", concurrency=8)
        observed_for(cluster, SEARCHES)
        before, started = airline_searches(airline), time.monotonic()
        while time.monotonic() - started < 4:
            assert searches_out_twice(cluster) == []
            time.sleep(0.25)
        spent, window = airline_searches(airline) - before, time.monotonic() - started
        assert spent <= BUDGET * window * 1.2 + 10, f"{spent} searches in {window:.1f} s"
        drain(cluster, worker)
        assert_consistent(cluster)
    finally:
        cluster.stop()
        airline.stop()
