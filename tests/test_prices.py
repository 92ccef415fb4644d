"""Price history: a price change the demo airline plants between two cycles, in `voe prices`."""

from __future__ import annotations

import json
from decimal import Decimal

from tests.cluster import Airline, Cluster
from voe.demo.airline.fares import drift_prices, fares_for


def test_price_drift_is_deterministic_and_bounded():
    fares = fares_for("GRU", "REC", "2026-12-01")
    assert drift_prices(fares, "GRU-REC:2026-12-01", 3, 0.0) == fares
    moved = drift_prices(fares, "GRU-REC:2026-12-01", 3, 0.5)
    assert moved == drift_prices(fares, "GRU-REC:2026-12-01", 3, 0.5)
    assert moved != drift_prices(fares, "GRU-REC:2026-12-01", 4, 0.5)
    for before, after in zip(fares, moved, strict=True):
        assert before._replace(price=after.price) == after
        assert abs(Decimal(after.price) / Decimal(before.price) - 1) <= Decimal("0.5001")


def _cheapest(airline: Airline, origin: str, destination: str, date: str) -> Decimal:
    return min(Decimal(fare["price"]) for fare in airline.api_fares(origin, destination, date))


def test_prices_shows_a_drop_planted_between_two_cycles(tmp_path):
    airline = Airline(tmp_path)
    cluster = Cluster(tmp_path, airline.url, airports='["GRU", "REC"]', days=3)  # 6 jobs
    drifted = None
    try:
        cluster.sink()
        cluster.worker("w1")
        assert cluster.wait_master(cluster.master()) == 0
        jobs = [(row["origin"], row["destination"], row["date"]) for row in cluster.ledger_rows()]
        first = {job: _cheapest(airline, *job) for job in jobs}
        airline.stop()  # the airline changes its prices: same port, drift with seed 3
        drifted = Airline(tmp_path, port=airline.port,
                          options=("--price-drift", "0.5", "--seed", "3"))
        assert cluster.wait_master(cluster.master()) == 0  # the second cycle
        second = {job: _cheapest(drifted, *job) for job in jobs}
    finally:
        cluster.stop()
        airline.stop()
        if drifted is not None:
            drifted.stop()
    drops = [job for job in jobs if second[job] < first[job]]
    assert drops and len(drops) < len(jobs), "seed 3 should move prices both ways"
    origin, destination, date = drops[0]
    rows = json.loads(cluster.voe("prices", f"{origin}-{destination}", "--json").stdout)
    by_date = {(row["date"], row["cycle"]): row for row in rows
               if (origin, destination, row["date"]) in first}
    route_jobs = sum(1 for job in jobs if job[:2] == (origin, destination))
    assert len(by_date) == len(rows) == 2 * route_jobs
    for (day, cycle), row in by_date.items():
        job = (origin, destination, day)
        assert Decimal(row["price"]) == (first if cycle == 1 else second)[job]
        assert row["drop"] is (cycle == 2 and second[job] < first[job])
    dropped = by_date[(date, 2)]
    assert Decimal(dropped["change"]) == second[drops[0]] - first[drops[0]]
    text = cluster.voe("prices", f"{origin.lower()}-{destination}", "--date", date).stdout
    assert text.count("\n") == 2 and f"cycle 2: {dropped['price']}" in text
    assert f"DROP from {by_date[(date, 1)]['price']}" in text
    exported = cluster.voe("export", "--since", "2").stdout.splitlines()
    assert exported and {json.loads(line)["cycle"] for line in exported} == {2}
    assert len(cluster.voe("export", "--cycle", "1").stdout.splitlines()) == sum(
        1 for line in cluster.voe("export").stdout.splitlines() if '"cycle": 1,' in line)
    bad = cluster.voe("prices", "GRU", check=False)
    assert bad.returncode == 2 and "ORIG-DEST" in bad.stderr
