"""`voe check`, the delivery audit, on a real run; and the PostgreSQL store's one-line errors."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.cluster import Airline, Cluster
from voe.ledger import Ledger


@pytest.fixture
def finished(tmp_path):
    """A cluster whose one cycle (12 jobs) ran to the end, with its processes stopped."""
    airline = Airline(tmp_path)
    cluster = Cluster(tmp_path, airline.url)
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1")
        assert cluster.wait_master(master) == 0
    finally:
        cluster.stop()
        airline.stop()
    return cluster


def _check(cluster: Cluster) -> tuple[int, dict]:
    result = cluster.voe("check", "--json", check=False)
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout)


def test_check_of_a_clean_run_passes_then_finds_planted_damage(finished):
    cluster = finished
    status, report = _check(cluster)
    assert status == 0
    assert report["ok"] is True
    assert report["totals"] == {"lost": 0, "not_done": 0, "duplicated": 0, "failed": 0}
    [cycle] = report["cycles"]
    assert (cycle["cycle"], cycle["jobs"], cycle["done"], cycle["stored"]) == (1, 12, 12, 12)
    text = cluster.voe("check")
    assert text.returncode == 0 and "check: OK" in text.stdout

    jobs = sorted(row["id"] for row in cluster.ledger_rows())
    no_marker, no_fares, doubled, pending, failed = jobs[:5]
    with sqlite3.connect(cluster.data_dir / "fares.db") as store:
        store.execute("DELETE FROM results WHERE job_id = ?", (no_marker,))
        store.execute("DELETE FROM fares WHERE job_id = ?", (no_fares,))
        store.execute("INSERT INTO fares SELECT * FROM fares WHERE job_id = ? LIMIT 1",
                      (doubled,))
    with sqlite3.connect(cluster.data_dir / "ledger.db") as ledger:
        ledger.execute("UPDATE jobs SET state = 'pending' WHERE id = ?", (pending,))
        ledger.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", (failed,))

    status, report = _check(cluster)
    assert status == 1
    assert report["ok"] is False
    assert report["totals"] == {"lost": 2, "not_done": 2, "duplicated": 1, "failed": 1}
    [cycle] = report["cycles"]
    assert cycle["lost"] == sorted([no_marker, no_fares])
    assert cycle["duplicated"] == [doubled]
    assert cycle["not_done"] == sorted([pending, failed])
    assert cycle["failed"] == [failed]
    text = cluster.voe("check", check=False)
    assert text.returncode == 1
    assert "check: FAILED, 2 lost, 1 duplicated" in text.stdout
    assert f"lost (done, fares not stored): {no_marker}" in text.stdout


def test_check_without_a_ledger_says_there_is_nothing_to_check(tmp_path):
    airline_free = Cluster(tmp_path, "http://127.0.0.1:9")
    result = airline_free.voe("check", check=False)
    assert result.returncode == 0 and not result.stderr  # like status, failed, cheapest
    assert result.stdout.strip().splitlines() == [
        f"nothing to check in {airline_free.data_dir.resolve()}: no ledger yet (run `voe run` "
        "first)"]


@pytest.mark.parametrize("command", [("status",), ("check",), ("export",), ("cheapest",)])
def test_unreachable_postgres_store_is_one_line_naming_the_host(tmp_path, command):
    cluster = Cluster(tmp_path, "http://127.0.0.1:9")
    Ledger(cluster.data_dir / "ledger.db").close()  # an empty ledger, for `voe check`
    cluster.env["VOE_STORE_URL"] = "postgresql://voe:s3cret@127.0.0.1:1/fares"
    result = cluster.voe(*command, check=False)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "127.0.0.1:1/fares" in lines[0] and "s3cret" not in result.stderr
