"""Faults that used to break a promise, each against real processes over loopback.

A wall-clock step of an hour back and forward (libfaketime) while the sink is killed;
a master SIGKILLed every few seconds under a short cycle interval; a sink frozen for
a minute; an airline down for a minute. Every run must end with each job stored
once, no cycle the schedule did not allow, and no search repeated for nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cluster import Airline, Cluster, assert_stored_exactly_once, wait_for

FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

PLAN = """
[plan]
name = "chaos"
cycle = "{cycle}"
lease_seconds = {lease_seconds}
{extra}

[dates]
start_in_days = 1
days_ahead = {days}
step_days = 1

[[routes]]
backend = "demo"
airports = {airports}
"""


def plan(cycle: str = "once", lease_seconds: int = 30, days: int = 2,
         airports: str = '["GRU", "REC", "SSA"]', extra: str = "") -> str:
    """A plan with the given keys; the retry keys are left at voe's defaults unless ``extra``."""
    return PLAN.format(cycle=cycle, lease_seconds=lease_seconds, days=days, airports=airports,
                       extra=extra)


def states(cluster: Cluster) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in cluster.ledger_rows():
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def done(cluster: Cluster) -> int:
    return states(cluster).get("done", 0) if (cluster.data_dir / "ledger.db").exists() else 0


def airline_requests(airline: Airline) -> int:
    with urllib.request.urlopen(airline.url + "/stats", timeout=5) as answer:
        return json.load(answer)["requests"]


def step_clock(clock_file: Path, offset: str) -> None:
    """Step every faked process's wall clock to real time plus ``offset`` (e.g. "-1h")."""
    temporary = clock_file.with_suffix(".new")
    temporary.write_text(offset + "\n")
    temporary.replace(clock_file)
    time.sleep(1.5)  # each process re-reads the offset within a second


@pytest.mark.skipif(not FAKETIME_LIBRARY.exists(), reason="libfaketime is not installed "
                    "(Debian's faketime package; .ci/run installs it)")
def test_clock_steps_back_and_forward_with_the_sink_killed_store_every_job_once(
        tmp_path, airlines):
    airline = airlines(latency_ms=250)
    cluster = Cluster(tmp_path, airline.url,
                      plan=plan(lease_seconds=4, days=4, airports='["GRU", "REC", "SSA", "BSB"]'))
    clock = tmp_path / "clock"
    clock.write_text("+0\n")
    # An NTP-style step moves the wall clock of the whole machine; the monotonic clock
    # does not move (as in the kernel).
    cluster.env.update({"LD_PRELOAD": str(FAKETIME_LIBRARY),
                        "FAKETIME_TIMESTAMP_FILE": str(clock),
                        "FAKETIME_CACHE_DURATION": "1",
                        "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    total = 12 * 4
    try:
        master = cluster.master()
        sink = cluster.sink()
        cluster.worker("w1", concurrency=2)
        wait_for(lambda: done(cluster) >= 8, 60, "the first jobs to be stored")

        # An hour back, and the sink dies with the results it held.
        step_clock(clock, "-1h")
        os.kill(sink.pid, signal.SIGKILL)
        sink.popen.wait(5)
        leased = {row["id"] for row in cluster.ledger_rows() if row["state"] == "leased"}
        assert leased, "no job was out when the sink died; the test proves nothing"
        time.sleep(1)
        sink = cluster.sink()
        # With the clock still an hour back, the jobs out when the sink died come back
        # (their leases run on the monotonic clock) and are stored.
        wait_for(lambda: all(row["state"] == "done" for row in cluster.ledger_rows()
                             if row["id"] in leased), 45,
                 f"the {len(leased)} jobs out when the sink died to be stored")

        # An hour forward again (back to the true time), the sink killed once more.
        step_clock(clock, "+0")
        os.kill(sink.pid, signal.SIGKILL)
        sink.popen.wait(5)
        time.sleep(1)
        cluster.sink()
        assert cluster.wait_master(master, timeout=120) == 0
        assert_stored_exactly_once(cluster, airline)
        assert len(cluster.ledger_rows()) == total
        check = cluster.voe("check", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        cluster.stop()


def test_a_master_killed_every_few_seconds_runs_only_the_cycles_its_schedule_allows(
        tmp_path, airlines):
    airline = airlines()
    interval = 15
    cluster = Cluster(tmp_path, airline.url, plan=plan(cycle=f"{interval}s", days=1))
    try:
        cluster.sink()
        cluster.worker("w1")
        started = time.monotonic()
        restarts = 0
        while time.monotonic() - started < 50:  # a supervisor restarting a crashing master
            master = cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
            time.sleep(2.5)
            os.kill(master.pid, signal.SIGKILL)
            master.popen.wait(5)
            restarts += 1
        elapsed = time.monotonic() - started
        with sqlite3.connect(cluster.data_dir / "ledger.db") as db:
            starts = [row[0] for row in db.execute("SELECT started_at FROM cycles ORDER BY cycle")]
        gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
        assert restarts >= 15
        # A cycle at the start and one per interval after it, never one per restart.
        assert 2 <= len(starts) <= int(elapsed // interval) + 1, (len(starts), elapsed, gaps)
        assert all(gap >= interval - 0.5 for gap in gaps), gaps
    finally:
        cluster.stop()


def test_a_frozen_sink_stops_leasing_and_costs_no_search_again(tmp_path, airlines):
    airline = airlines(latency_ms=20)
    cluster = Cluster(tmp_path, airline.url, plan=plan(
        lease_seconds=10, days=10, airports='["GRU", "REC", "SSA", "BSB", "POA"]'))
    limit = 40
    cluster.env["VOE_MAX_UNSTORED"] = str(limit)
    total = 20 * 10
    sink = None
    try:
        master = cluster.master()
        sink = cluster.sink()
        cluster.worker("w1", concurrency=4)
        cluster.worker("w2", concurrency=4)
        wait_for(lambda: done(cluster) >= 20, 60, "the first jobs to be stored")
        os.kill(sink.pid, signal.SIGSTOP)
        time.sleep(10)  # leasing stops once the unstored results reach the limit
        frozen_at = airline_requests(airline)
        time.sleep(50)
        during = airline_requests(airline) - frozen_at
        os.kill(sink.pid, signal.SIGCONT)
        assert during == 0, f"{during} searches while the sink was frozen (leasing must stop)"
        assert cluster.wait_master(master, timeout=120) == 0
        searches = airline_requests(airline)  # before the check's own requests
        assert searches < total * 1.05, f"{searches} searches for {total} jobs"
        assert_stored_exactly_once(cluster, airline)
    finally:
        if sink is not None and sink.poll() is None:
            os.kill(sink.pid, signal.SIGCONT)
        cluster.stop()


def test_an_airline_down_for_a_minute_leaves_no_dead_letters(tmp_path, airlines):
    airline = airlines(latency_ms=300)
    port = airline.port
    # The plan keeps voe's default retries (no max_attempts, no retry keys).
    cluster = Cluster(tmp_path, airline.url, plan=plan(days=10, airports='["GRU", "REC", "SSA"]'))
    replacement = None
    try:
        master = cluster.master()
        cluster.sink()
        cluster.worker("w1", concurrency=1)
        wait_for(lambda: done(cluster) >= 6, 60, "the first jobs to be stored")
        airline.stop()
        time.sleep(60)
        replacement = Airline(tmp_path, latency_ms=300, port=port)
        assert cluster.wait_master(master, timeout=240) == 0
        counts = states(cluster)
        assert counts.get("failed", 0) == 0, cluster.voe("failed").stdout
        assert_stored_exactly_once(cluster, replacement)
        retried = [row for row in cluster.ledger_rows() if row["attempt"] > 1]
        assert retried, "no job met the outage; the test proves nothing"
    finally:
        cluster.stop()
        if replacement is not None:
            replacement.stop()
