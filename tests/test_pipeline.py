"""The whole pipeline with real processes over loopback: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.cluster import (
    ROOT,
    SMALL_PLAN,
    Airline,
    Cluster,
    assert_stored_exactly_once,
    wait_for,
)
from tests.postgres import fresh_schema


@pytest.fixture
def airline(tmp_path):
    airline = Airline(tmp_path)
    yield airline
    airline.stop()


@pytest.fixture
def slow_airline(tmp_path):
    airline = Airline(tmp_path, latency_ms=300)
    yield airline
    airline.stop()


def test_every_job_stored_once_and_equal_to_the_api(tmp_path, airline):
    cluster = Cluster(tmp_path, airline.url)
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1")
        cluster.worker("w2")
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, airline)
        jobs = cluster.jobs()
        assert jobs == {"pending": 0, "leased": 0, "done": 12, "failed": 0}
        outcomes = cluster.store_rows("outcomes")
        assert {row["status"] for row in outcomes} == {"ok"}
        assert {row["worker"] for row in outcomes} <= {"w1", "w2"}
    finally:
        cluster.stop()


def test_worker_killed_mid_job_loses_nothing(tmp_path, slow_airline):
    cluster = Cluster(tmp_path, slow_airline.url, days=6)  # 36 jobs at 300 ms
    try:
        cluster.sink()
        master = cluster.master()
        victim = cluster.worker("victim", concurrency=4)
        wait_for(lambda: cluster.jobs()["done"] >= 4, 60, "some jobs done")
        victim_held = [row for row in cluster.ledger_rows()
                       if row["state"] == "leased" and row["worker"] == "victim"]
        os.kill(victim.pid, signal.SIGKILL)
        cluster.worker("survivor", concurrency=4)
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, slow_airline)
        assert victim_held, "the victim held no job when killed; the test proved nothing"
        assert any("worker victim" in line and "taking back" in line
                   for line in cluster.log("master").splitlines())
    finally:
        cluster.stop()


def test_sink_killed_and_restarted_loses_nothing(tmp_path, slow_airline):
    cluster = Cluster(tmp_path, slow_airline.url, days=6, lease_seconds=4)
    try:
        sink = cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=4)
        wait_for(lambda: cluster.jobs()["done"] >= 4, 60, "some jobs done")
        os.kill(sink.pid, signal.SIGKILL)
        sink.popen.wait(10)
        cluster.children.remove(sink)
        done_before = cluster.jobs()["done"]
        assert done_before < 36
        cluster.sink()
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, slow_airline)
    finally:
        cluster.stop()


def test_sink_on_postgres_killed_and_restarted_loses_nothing(tmp_path, slow_airline):
    with fresh_schema() as url:
        cluster = Cluster(tmp_path, slow_airline.url, days=6, lease_seconds=4)
        cluster.env["VOE_STORE_URL"] = url
        try:
            sink = cluster.sink()
            master = cluster.master()
            cluster.worker("w1", concurrency=4)
            wait_for(lambda: cluster.jobs()["done"] >= 4, 60, "some jobs done")
            os.kill(sink.pid, signal.SIGKILL)
            sink.popen.wait(10)
            cluster.children.remove(sink)
            assert cluster.jobs()["done"] < 36
            cluster.sink()
            assert cluster.wait_master(master) == 0
            assert_stored_exactly_once(cluster, slow_airline)
            assert not (cluster.data_dir / "fares.db").exists()
            assert cluster.status()["fares"] == len(cluster.store_rows("fares"))
            assert "check: OK" in cluster.voe("check").stdout  # the audit reads PostgreSQL too
        finally:
            cluster.stop()


def test_master_killed_and_restarted_loses_nothing(tmp_path, slow_airline):
    cluster = Cluster(tmp_path, slow_airline.url, days=6, lease_seconds=5)
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=4)
        cluster.worker("w2", concurrency=4)
        wait_for(lambda: cluster.jobs()["done"] >= 6, 60, "some jobs done")
        os.kill(master.pid, signal.SIGKILL)
        master.popen.wait(10)
        assert cluster.jobs()["done"] < 36
        # The original's command for the master (mind the `queue` shadowing trap).
        restarted = subprocess.Popen(
            [sys.executable, str(ROOT / "voe" / "queue.py"), "--once", "--plan",
             str(cluster.plan_path)], env=cluster.env, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert restarted.wait(120) == 0, restarted.stderr.read().decode()
        finally:
            if restarted.poll() is None:
                restarted.kill()
                restarted.wait(5)
            restarted.stderr.close()
        assert_stored_exactly_once(cluster, slow_airline)
        assert "resuming cycle 1" in cluster.log("master")
        workers_log = cluster.log("worker")
        assert "no word from the master" in workers_log or "master restarted" in workers_log
        assert cluster.log("master").count("worker w1 joined") >= 2  # said hello again
    finally:
        cluster.stop()


def test_always_failing_route_ends_failed_and_can_be_retried(tmp_path):
    broken = Airline(tmp_path, fail_routes=("GRU-REC",))
    cluster = Cluster(tmp_path, broken.url, max_attempts=2, days=1)
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1")
        assert cluster.wait_master(master) == 0
        jobs = cluster.jobs()
        assert jobs == {"pending": 0, "leased": 0, "done": 5, "failed": 1}
        listed = cluster.voe("failed").stdout
        assert "GRU-REC" in listed and "503" in listed and "after 2 attempt(s)" in listed
        outcomes = [row for row in cluster.store_rows("outcomes") if "GRU-REC" in row["job_id"]]
        assert sorted(row["attempt"] for row in outcomes) == [1, 2]
        assert {row["status"] for row in outcomes} == {"transient"}

        broken.stop()  # the airline recovers: same port, no fault
        fixed = Airline(tmp_path, port=broken.port)
        try:
            assert "1 failed job(s) sent back" in cluster.voe("failed", "--retry").stdout
            assert cluster.jobs()["pending"] == 1
            again = cluster.master()
            assert cluster.wait_master(again) == 0
            assert cluster.jobs() == {"pending": 0, "leased": 0, "done": 6, "failed": 0}
            assert_stored_exactly_once(cluster, fixed)
        finally:
            fixed.stop()
    finally:
        cluster.stop()
        broken.stop()


def test_dead_letters_retried_from_the_command_line_run_on_the_running_master(tmp_path):
    broken = Airline(tmp_path, fail_routes=("GRU-REC",))
    daily = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"').format(
        max_attempts=1, lease_seconds=20, days=1, backend="demo",
        airports='["GRU", "REC", "SSA"]')
    cluster = Cluster(tmp_path, broken.url, plan=daily)
    fixed = None
    try:
        cluster.sink()
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))  # never exits
        cluster.worker("w1")
        wait_for(lambda: "cycle 1 finished: 5 done, 1 failed" in cluster.log("master"), 60,
                 "the first cycle to end with a dead letter")
        broken.stop()
        fixed = Airline(tmp_path, port=broken.port)
        assert "1 failed job(s) sent back" in cluster.voe("failed", "--retry").stdout
        wait_for(lambda: cluster.jobs() == {"pending": 0, "leased": 0, "done": 6, "failed": 0},
                 60, "the running master to lease the retried job")
        assert "cycle 1 has pending jobs again" in cluster.log("master")
        wait_for(lambda: "cycle 1 finished: 6 done, 0 failed" in cluster.log("master"), 30,
                 "the reopened cycle to be finished again")
        assert_stored_exactly_once(cluster, fixed)
    finally:
        cluster.stop()
        broken.stop()
        if fixed is not None:
            fixed.stop()


def test_unknown_airport_fails_at_once_without_retries(tmp_path, airline):
    cluster = Cluster(tmp_path, airline.url, airports='["GRU", "XYZ"]', days=1)
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1")
        assert cluster.wait_master(master) == 0
        rows = cluster.ledger_rows()
        assert [(row["state"], row["attempt"]) for row in rows] == [("failed", 1)] * 2
        assert all("XYZ" in row["last_error"] for row in rows)
    finally:
        cluster.stop()


def test_slow_worker_never_holds_more_than_its_credit(tmp_path, airline):
    very_slow = Airline(tmp_path, latency_ms=1500)
    cluster = Cluster(tmp_path, airline.url, days=10,
                      airports='["GRU", "REC", "SSA", "POA", "BSB"]')  # 200 jobs
    # The credit as configured: a prefetch that follows the pace is tests/test_credit.py's.
    cluster.env["VOE_PREFETCH_SECONDS"] = "0"
    try:
        cluster.sink()
        cluster.worker("slow", concurrency=2, prefetch=1, airline_url=very_slow.url)
        for number in range(3):
            cluster.worker(f"fast{number}", concurrency=4, prefetch=1)
        # Every worker up before the master: one that started late on a loaded machine
        # could find the plan finished by the others.
        cluster.wait_log("worker", ": concurrency", 4)
        master = cluster.master()
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, airline)
        outcomes = cluster.store_rows("outcomes")
        by_worker: dict[str, int] = {}
        for row in outcomes:
            by_worker[row["worker"]] = by_worker.get(row["worker"], 0) + 1
        assert by_worker["slow"] < min(by_worker[f"fast{n}"] for n in range(3))
        peaks = {}
        for line in cluster.log("master").splitlines():
            if "peak held" in line:
                name, peak = line.split("worker ")[1].split(" peak held ")
                peaks[name] = int(peak.split()[0])
        assert peaks["slow"] <= 3 and all(peaks[f"fast{n}"] <= 5 for n in range(3)), peaks
        assert peaks["slow"] == 3  # it was offered work up to its credit, and no more
    finally:
        cluster.stop()
        very_slow.stop()


def test_continuous_collection_starts_a_new_cycle_every_interval(tmp_path, airline):
    plan = """
[plan]
name = "every-two-seconds"
cycle = "2s"
[dates]
days_ahead = 1
[[routes]]
backend = "demo-api"
airports = ["GRU", "REC"]
"""
    cluster = Cluster(tmp_path, airline.url, plan=plan)
    try:
        cluster.sink()
        master = cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        cluster.worker("w1")
        wait_for(lambda: (cluster.status()["cycle"] or {}).get("number", 0) >= 3
                 and cluster.jobs()["done"] == 2, 30, "a third cycle, done")
        assert master.stop() == 0
        results = cluster.store_rows("results")
        per_cycle: dict[int, list[str]] = {}
        for row in results:
            per_cycle.setdefault(row["cycle"], []).append(row["job_id"])
        assert {1, 2, 3} <= set(per_cycle)
        for cycle in (1, 2, 3):
            assert sorted(per_cycle[cycle]) == ["demo-api:GRU-REC:" + per_cycle[cycle][0][-10:],
                                                "demo-api:REC-GRU:" + per_cycle[cycle][0][-10:]]
        assert "cycle 2 started" in cluster.log("master")
    finally:
        cluster.stop()


def test_thousands_of_jobs_are_each_leased_once(tmp_path, airline):
    airports = ", ".join(f'"A{n:02d}"' for n in range(20))
    cluster = Cluster(tmp_path, airline.url, backend="null", airports=f"[{airports}]",
                      days=60)  # 22,800 jobs: refills and expansions of the master's queue
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=50)
        cluster.worker("w2", concurrency=50)
        assert cluster.wait_master(master) == 0
        rows = cluster.ledger_rows()
        assert len(rows) == 22_800
        assert {(row["state"], row["attempt"]) for row in rows} == {("done", 1)}
        assert len(cluster.store_rows("outcomes")) == 22_800
        assert len(cluster.store_rows("fares")) == 5 * 22_800
        assert "progress: 22800 leased, 22800 done" in cluster.log("master")
    finally:
        cluster.stop()
