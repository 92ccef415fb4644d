"""Fleet-wide politeness: the master paces leases per airline across every worker."""

from __future__ import annotations

import json
import re
import time
import urllib.request

from tests.cluster import Airline, Cluster, assert_stored_exactly_once

PACED_PLAN = """
[plan]
name = "paced"
cycle = "once"
[dates]
days_ahead = 10
[[routes]]
backend = "demo"
airports = ["GRU", "REC", "SSA", "POA"]
requests_per_second = {rps}
"""


def airline_requests(airline: Airline) -> int:
    with urllib.request.urlopen(airline.url + "/stats", timeout=5) as answer:
        return json.load(answer)["requests"]


def test_four_workers_stay_within_the_fleet_budget(tmp_path):
    airline = Airline(tmp_path, latency_ms=20)
    cluster = Cluster(tmp_path, airline.url, plan=PACED_PLAN.format(rps=20))  # 120 jobs
    samples: list[tuple[float, int]] = []
    try:
        cluster.sink()
        master = cluster.master()
        for number in range(4):
            cluster.worker(f"w{number}", concurrency=8)
        deadline = time.monotonic() + 60
        while master.poll() is None and time.monotonic() < deadline:
            samples.append((time.monotonic(), airline_requests(airline)))
            time.sleep(0.25)
        assert master.poll() == 0
        assert_stored_exactly_once(cluster, airline)
    finally:
        cluster.stop()
        airline.stop()
    busy = [(t, n) for t, n in samples if 0 < n < 120]
    assert len(busy) >= 8, samples
    elapsed = busy[-1][0] - busy[0][0]
    average = (busy[-1][1] - busy[0][1]) / elapsed
    assert 14 <= average <= 22, (average, samples)
    for (t0, n0), (t1, n1) in zip(busy, busy[8:], strict=False):  # every 2 s window
        assert (n1 - n0) / (t1 - t0) <= 25, ((t0, n0), (t1, n1))


def test_throttling_answers_slow_the_masters_leases(tmp_path):
    airline = Airline(tmp_path, latency_ms=20, options=("--rate-limit", "8"))
    plan = PACED_PLAN.format(rps=40).replace("days_ahead = 10", "days_ahead = 6")  # 72 jobs
    cluster = Cluster(tmp_path, airline.url, plan=plan)
    try:
        cluster.sink()
        master = cluster.master()
        for number in range(4):
            cluster.worker(f"w{number}", concurrency=8)
        assert cluster.wait_master(master, timeout=90) == 0
        assert_stored_exactly_once(cluster, airline)
        log = cluster.log("master")
    finally:
        cluster.stop()
        airline.stop()
    assert "throttled by airlines" in cluster.log("worker")
    paces = [float(pace) for pace in re.findall(r"leasing slowed to ([\d.]+) jobs/s", log)]
    # The 40/s budget came down step by step, well under half, towards the airline's 8/s.
    assert len(paces) >= 2 and paces == sorted(paces, reverse=True), paces
    assert paces[0] < 40 and paces[-1] <= 16, paces
