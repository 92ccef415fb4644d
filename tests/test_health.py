"""Stuck states in `voe status` and `voe check` (issue 14): leases past their deadline or
taken in the future, cycles that cannot finish, jobs waiting to retry; each written through
the `Ledger` API and read back by the real commands, which exit 1 naming them."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest

from tests.cluster import Cluster
from voe.cli import report
from voe.master import ledger as ledger_module
from voe.master.ledger import Ledger
from voe.model import SearchJob

DATES = ("2026-12-01", "2026-12-02", "2026-12-03")
JOBS = [f"demo:GRU-REC:{date}" for date in DATES]


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    """A data dir and settings for `voe` commands; no process of it runs."""
    return Cluster(tmp_path, "http://127.0.0.1:9")


def _open_cycle(cluster: Cluster) -> Ledger:
    """The cluster's ledger with cycle 1 open and its three jobs pending."""
    ledger = Ledger(cluster.data_dir / "ledger.db")
    cycle = ledger.start_cycle("test", "digest", DATES[0], len(JOBS), 3)
    ledger.add_jobs(cycle.cycle, [SearchJob(job_id, cycle.cycle, 0, "demo", "GRU", "REC", date)
                                  for job_id, date in zip(JOBS, DATES, strict=True)], len(JOBS))
    return ledger


def _lease_taken_at(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, when: float,
                    lease: tuple[float, str, int, int, str]) -> None:
    """Record ``lease`` as a master whose wall clock read ``when`` would have."""
    with monkeypatch.context() as patched:
        patched.setattr(ledger_module.time, "time", lambda: when)
        ledger.mark_leased([lease])


def _voe(cluster: Cluster, *args: str) -> tuple[int, str]:
    result = cluster.voe(*args, check=False)
    assert result.stderr == "", result.stderr
    return result.returncode, result.stdout


def test_overdue_leases_make_status_and_check_exit_1_naming_them(cluster, monkeypatch):
    ledger = _open_cycle(cluster)
    now = time.time()
    try:
        ledger.mark_leased([(now - 120, "w1", 1, 1, JOBS[0]),  # two minutes past its deadline
                            (now + 20, "w1", 1, 1, JOBS[2])])  # running: not overdue
        # Leased while the clock read an hour ahead: it stepped back since.
        _lease_taken_at(ledger, monkeypatch, now + 3600, (now + 3620, "w2", 1, 1, JOBS[1]))
    finally:
        ledger.close()

    code, out = _voe(cluster, "check", "--json")
    assert code == 1
    found = json.loads(out)
    assert found["ok"] is False and found["totals"]["lost"] == 0
    overdue = found["overdue_leases"]
    assert (overdue["count"], overdue["past"], overdue["ahead"]) == (2, 1, 1)
    assert [lease["job_id"] for lease in overdue["first"]] == [JOBS[1], JOBS[0]]  # longest first
    assert 3590 < overdue["first"][0]["ahead"] <= 3600 and "past" not in overdue["first"][0]
    assert 120 <= overdue["first"][1]["past"] < 130 and overdue["first"][1]["worker"] == "w1"
    assert found["stuck_cycles"] == [
        {"cycle": 1, "reason": "no master runs on this data dir (it holds 2 overdue lease(s))"}]
    assert found["hints"] == [report.START_A_MASTER, report.CLOCK_MOVED]

    code, text = _voe(cluster, "check")
    assert code == 1
    assert "check: FAILED, 0 lost, 0 duplicated, 2 overdue lease(s), 1 cycle(s) that cannot " \
           "finish" in text
    code, text = _voe(cluster, "status")
    assert code == 1
    lines = text.splitlines()
    assert "overdue leases: 2 (1 past their deadline, 1 leased in the future)" in lines
    assert re.search(rf"^  {JOBS[0]} \(cycle 1, worker w1\): 12\d s past its deadline$",
                     text, re.MULTILINE), text
    assert re.search(rf"^  {JOBS[1]} \(cycle 1, worker w2\): leased 3[56]\d\d s in the future$",
                     text, re.MULTILINE), text
    assert "cycle 1 cannot finish: no master runs on this data dir (it holds 2 overdue " \
           "lease(s))" in lines
    assert f"hint: {report.START_A_MASTER}" in lines and f"hint: {report.CLOCK_MOVED}" in lines
    code, out = _voe(cluster, "status", "--json")
    assert code == 1
    assert json.loads(out)["overdue_leases"]["count"] == 2


def test_a_lease_within_the_grace_is_not_overdue_and_a_running_master_is_named(cluster):
    ledger = _open_cycle(cluster)
    try:
        now = time.time()
        ledger.mark_leased([(now - 10, "w1", 1, 1, JOBS[0]),  # a master takes it back soon
                            (now - report.LEASE_GRACE_SECONDS - 5, "w1", 1, 1, JOBS[1])])
        found = report.health(ledger, pid=4242, now=now)
    finally:
        ledger.close()
    assert found["overdue_leases"]["count"] == 1
    assert [lease["job_id"] for lease in found["overdue_leases"]["first"]] == [JOBS[1]]
    # A master runs: the cycle cannot finish only because of the lease it did not take back.
    assert found["stuck_cycles"] == [{"cycle": 1, "reason": "it holds 1 overdue lease(s)"}]
    assert found["hints"] == [report.MASTER_STUCK.format(pid="pid 4242")]


def test_an_open_cycle_without_a_master_cannot_finish_and_a_finished_one_is_ok(cluster):
    ledger = _open_cycle(cluster)
    ledger.close()
    code, text = _voe(cluster, "status")
    assert code == 1
    assert "cycle 1 cannot finish: no master runs on this data dir" in text.splitlines()
    assert f"hint: {report.START_A_MASTER_TO_FINISH}" in text.splitlines()
    assert "overdue" not in text

    ledger = Ledger(cluster.data_dir / "ledger.db")
    try:
        ledger.mark_leased([(time.time() + 20, "w1", 1, 1, job_id) for job_id in JOBS])
        ledger.mark_done([(1, job_id) for job_id in JOBS])
        ledger.finish_cycle(1)
    finally:
        ledger.close()
    code, text = _voe(cluster, "status")
    assert code == 0 and "cannot finish" not in text and "hint" not in text
    code, out = _voe(cluster, "status", "--json")
    assert code == 0
    found = json.loads(out)
    assert (found["stuck_cycles"], found["overdue_leases"]["count"], found["hints"]) == ([], 0, [])


def test_status_counts_the_jobs_waiting_to_retry(cluster):
    ledger = _open_cycle(cluster)
    now = time.time()
    try:
        with ledger.transaction():
            ledger.mark_leased([(now + 20, "w1", 1, 1, JOBS[0]), (now + 20, "w1", 1, 1, JOBS[1])])
            ledger.mark_pending([("503 Service Unavailable", now + 90, 1, JOBS[0]),
                                 ("timed out", None, 1, JOBS[1])])  # due at once
    finally:
        ledger.close()
    code, text = _voe(cluster, "status")
    assert code == 1  # the cycle waits for a master, retries or not
    assert re.search(r"^cycle 1 \(plan test\): 3 pending \(1 waiting to retry, the next in "
                     r"(8\d|90) s\), 0 leased, 0 done, 0 failed of 3$", text, re.MULTILINE), text
    code, out = _voe(cluster, "status", "--json")
    found = json.loads(out)
    assert found["waiting_to_retry"] == 1
    [retry] = found["retries"]
    assert (retry["job_id"], retry["state"], retry["attempt"], retry["error"]) == (
        JOBS[0], "pending", 1, "503 Service Unavailable")
    assert retry["not_before"] == pytest.approx(now + 90) and 60 < retry["due_in"] <= 90


def test_status_reads_a_ledger_older_than_retry_times(cluster):
    ledger = _open_cycle(cluster)
    ledger.close()
    with sqlite3.connect(cluster.data_dir / "ledger.db") as db:  # as schema 3 wrote it
        db.execute("ALTER TABLE jobs DROP COLUMN not_before")
        db.execute("PRAGMA user_version=3")
    db.close()
    code, out = _voe(cluster, "status", "--json")
    found = json.loads(out)
    assert (code, found["waiting_to_retry"], found["retries"]) == (1, 0, [])
    assert found["jobs"]["pending"] == 3
