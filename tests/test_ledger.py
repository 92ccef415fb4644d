"""The ledger's schema migration: a ledger written before the workers' address and errors
columns (version 1), or before their identities column (version 2), opens fine, read-only
as it is, and migrated by the first writer."""

from __future__ import annotations

import re
import sqlite3

from voe.master import ledger as ledger_module
from voe.master.ledger import Ledger
from voe.model import SearchJob

V1_WORKER = ("w1@abc123", 4, 1, 2, 5, 40, 1_700_000_000.0, 1)
IDENTITIES = ",\n    identities TEXT NOT NULL DEFAULT '[]'"
NO_ROUTES = {"identities": []}


def _version_1_ledger(path) -> None:
    """A ledger as voe wrote it at schema version 1 (no address, no errors per worker)."""
    added = (",\n    address TEXT NOT NULL DEFAULT '',\n"
             "    errors INTEGER NOT NULL DEFAULT 0")
    assert added + IDENTITIES in ledger_module._SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(ledger_module._SCHEMA.replace(added + IDENTITIES, ""))
        db.execute("INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", V1_WORKER)
        db.execute("INSERT INTO jobs (cycle, id, backend, origin, destination, date) "
                   "VALUES (1, 'demo:GRU-REC:2026-01-01', 'demo', 'GRU', 'REC', '2026-01-01')")
        db.execute("PRAGMA user_version=1")
    db.close()


def _columns(path) -> list[str]:
    with sqlite3.connect(path) as db:
        names = [row[1] for row in db.execute("PRAGMA table_info(workers)")]
    db.close()
    return names


def test_a_version_1_ledger_is_read_as_it_is_and_migrated_by_a_writer(tmp_path):
    path = tmp_path / "ledger.db"
    _version_1_ledger(path)
    expected = dict(zip(("worker", "concurrency", "prefetch", "held", "max_held", "finished",
                         "last_seen", "alive"), V1_WORKER, strict=True))

    reader = Ledger(path, readonly=True)  # `voe status` while an older master runs
    try:
        assert reader.workers() == [expected | {"address": "", "errors": 0} | NO_ROUTES]
    finally:
        reader.close()
    assert "address" not in _columns(path)

    writer = Ledger(path)
    try:
        assert writer.workers() == [expected | {"address": "", "errors": 0} | NO_ROUTES]
        assert writer.job(1, "demo:GRU-REC:2026-01-01")["state"] == "pending"
        with writer.transaction():
            writer.save_workers([(*V1_WORKER, "127.0.0.1 (host)", 3)])
        assert writer.workers() == [expected | {"address": "127.0.0.1 (host)", "errors": 3}
                                    | NO_ROUTES]
    finally:
        writer.close()
    assert _columns(path)[-3:] == ["address", "errors", "identities"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == ledger_module.SCHEMA_VERSION
    db.close()
    Ledger(path).close()  # a second open finds nothing to migrate


def test_a_new_ledger_has_the_columns_at_the_current_version(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    assert _columns(path)[-3:] == ["address", "errors", "identities"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == ledger_module.SCHEMA_VERSION
    db.close()


def test_a_version_2_ledger_gains_the_identities_column(tmp_path):
    path = tmp_path / "ledger.db"
    assert IDENTITIES in ledger_module._SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(ledger_module._SCHEMA.replace(IDENTITIES, ""))
        db.execute("INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*V1_WORKER, "127.0.0.1 (host)", 2))
        db.execute("PRAGMA user_version=2")
    db.close()
    reader = Ledger(path, readonly=True)
    try:
        assert reader.workers()[0]["identities"] == []
    finally:
        reader.close()
    writer = Ledger(path)
    try:
        assert writer.workers()[0]["identities"] == []
        routes = [("127.0.0.2:3128", 2, 7, 3), ("direct", 0, 1, 0)]
        with writer.transaction():
            writer.save_workers([(*V1_WORKER, "127.0.0.1 (host)", 2,
                                  ledger_module.identities_json(routes))])
        assert writer.workers()[0]["identities"] == [
            {"route": "127.0.0.2:3128", "blocks": 2, "jobs": 7, "retired": 3},
            {"route": "direct", "blocks": 0, "jobs": 1, "retired": 0}]
    finally:
        writer.close()
    assert _columns(path)[-1] == "identities"


def _job(number: int) -> SearchJob:
    return SearchJob(f"demo:GRU-REC:2026-01-{number:02d}", 1, 0, "demo", "GRU", "REC",
                     f"2026-01-{number:02d}", None)


def test_a_version_3_ledger_gains_the_retry_column(tmp_path):
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as db:
        db.executescript(ledger_module._SCHEMA.replace("    not_before REAL,\n", ""))
        db.execute("INSERT INTO jobs (cycle, id, backend, origin, destination, date) "
                   "VALUES (1, 'demo:GRU-REC:2026-01-01', 'demo', 'GRU', 'REC', '2026-01-01')")
        db.execute("PRAGMA user_version=3")
    db.close()
    ledger = Ledger(path)
    try:
        assert [job.id for job in ledger.take_pending(10)] == ["demo:GRU-REC:2026-01-01"]
        assert ledger.waiting_to_retry() == 0
    finally:
        ledger.close()


def test_a_retry_waits_in_the_ledger_until_due_or_beyond_any_backoff(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        ledger.start_cycle("p", "digest", "2026-01-01", 3, 5)
        ledger.add_jobs(1, [_job(1), _job(2), _job(3)], 3)
        now = 1_800_000_000.0
        with ledger.transaction():
            ledger.mark_leased([(now + 30, "w", 1, 1, _job(n).id) for n in (1, 2, 3)])
            ledger.mark_pending([("503", now + 20, 1, _job(1).id),
                                 ("503", now + 5000, 1, _job(2).id),
                                 ("timeout", None, 1, _job(3).id)])
        due = [job.id for job in ledger.take_pending(10, now=now, horizon=600)]
        # Job 2 waits longer than any backoff allows: the clock stepped back, it is due.
        assert due == [_job(2).id, _job(3).id]
        assert ledger.waiting_to_retry(now=now) == 2
        assert [job.id for job in ledger.take_pending(10, now=now + 21, horizon=600)] == [
            _job(1).id, _job(2).id, _job(3).id]
        assert ledger.next_retry() == now + 20
        assert ledger.job(1, _job(1).id)["attempt"] == 1  # attempts are kept
    finally:
        ledger.close()


class _Recorder:
    """The ledger's connection, recording the SQL text of every statement it runs."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.statements: list[str] = []

    def execute(self, sql: str, *args):
        self.statements.append(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self.statements.append(sql)
        return self.db.executemany(sql, *args)

    def close(self) -> None:
        self.db.close()

    def __getattr__(self, name: str):
        return getattr(self.db, name)  # anything else as the connection has it


def test_times_are_bound_as_parameters_never_written_into_the_sql(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    recorder = _Recorder(ledger.db)
    ledger.db = recorder
    moments = iter([1_812_345_678.25, 1_823_456_789.5, 1_834_567_890.75, 1_845_678_901.125,
                    1_856_789_012.0])
    try:
        ledger.start_cycle("p", "digest", "2026-01-01", 3, 5)
        ledger.add_jobs(1, [_job(1), _job(2), _job(3)], 3)
        with ledger.transaction():
            ledger.mark_leased([(1_900_000_000.0, "w", 1, 1, _job(n).id) for n in (1, 2, 3)],
                               now=next(moments))
            ledger.mark_done([(1, _job(1).id)], now=next(moments))
            ledger.mark_pending([("503", None, 1, _job(2).id)], now=next(moments))
            ledger.mark_failed([("gone", 1, _job(3).id)], now=next(moments))
        assert ledger.retry_failed(now=next(moments)) == 1
        updated = {job.id: ledger.job(1, job.id)["updated_at"] for job in map(_job, (1, 2, 3))}
        assert updated == {_job(1).id: 1_823_456_789.5, _job(2).id: 1_834_567_890.75,
                           _job(3).id: 1_856_789_012.0}
        # The default moment is the clock's: bound too, so the text of each write is the same
        # every time (SQLite reuses its compiled statement) and no time ever lands in it.
        with ledger.transaction():
            ledger.mark_leased([(1_900_000_000.0, "w", 1, 1, _job(3).id)])
            ledger.mark_failed([("gone", 1, _job(3).id)])
        ledger.retry_failed()
    finally:
        ledger.close()
    for sql in recorder.statements:
        assert not any(str(int(moment)) in sql for moment in (
            1_812_345_678, 1_823_456_789, 1_834_567_890, 1_845_678_901, 1_856_789_012)), sql
        assert not re.search(r"\d{9}", sql), sql  # no wall time of this century in the text


def test_a_version_4_ledger_gains_the_options_and_legs_columns(tmp_path):
    path = tmp_path / "ledger.db"
    options = "    options TEXT NOT NULL DEFAULT '',\n    legs TEXT NOT NULL DEFAULT '',\n"
    assert options in ledger_module._SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(ledger_module._SCHEMA.replace(options, ""))
        db.execute("INSERT INTO jobs (cycle, id, backend, origin, destination, date) "
                   "VALUES (1, 'demo:GRU-REC:2026-01-01', 'demo', 'GRU', 'REC', '2026-01-01')")
        db.execute("PRAGMA user_version=4")
    db.close()
    reader = Ledger(path, readonly=True)
    try:
        assert reader.jobs()[1][0]["options"] == ""
    finally:
        reader.close()
    ledger = Ledger(path)
    try:
        assert ledger.take_pending(10) == [SearchJob(
            "demo:GRU-REC:2026-01-01", 1, 0, "demo", "GRU", "REC", "2026-01-01", None, "", "")]
        party = SearchJob("demo:GRU-REC:2026-01-02/adults=2,pos=US", 1, 0, "demo", "GRU",
                          "REC", "2026-01-02", None, "adults=2,pos=US")
        ledger.add_jobs(1, [party], 2)
        assert ledger.take_pending(10)[1] == party
        assert ledger.jobs()[1][1]["options"] == "adults=2,pos=US"
        trip = SearchJob("demo:GRU-REC:2026-01-03,REC-SSA:2026-01-05", 1, 0, "demo", "GRU",
                         "SSA", "2026-01-03", None, "", "GRU-REC:2026-01-03,REC-SSA:2026-01-05")
        ledger.add_jobs(1, [trip], 3)
        assert ledger.take_pending(10)[2] == trip
    finally:
        ledger.close()


def _states(ledger: Ledger) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in ledger.db.execute(
        "SELECT id, state, worker, attempt, last_error FROM jobs ORDER BY seq")}


def test_jobs_handed_out_are_written_in_groups_by_row_number_and_others_by_key(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    recorder = _Recorder(ledger.db)
    try:
        ledger.start_cycle("p", "digest", "2026-01-01", 5, 5)
        fresh = ledger.add_jobs(1, [_job(n) for n in (1, 2, 3, 4)], 4)
        assert fresh == ledger.take_pending(10)  # a new batch is handed over as read back
        assert ledger.seqs == {(1, _job(n).id): n for n in (1, 2, 3, 4)}
        assert ledger.add_jobs(1, [_job(4), _job(5)], 5) is None  # job 4 was there: read back
        ledger.seqs.clear()  # as a restarted master's ledger, which knows no row numbers
        assert [job.id for job in ledger.take_pending(3)] == [_job(n).id for n in (1, 2, 3)]
        ledger.db = recorder
        with ledger.transaction():  # job 4 was never handed out: written by (cycle, id)
            ledger.mark_leased([(1_900_000_000.0, "w1", 1, 1, _job(n).id) for n in (1, 2, 4)]
                               + [(1_900_000_000.0, "w2", 2, 1, _job(3).id)])
        leased = [sql for sql in recorder.statements if sql.startswith("UPDATE")]
        assert [sql.count("json_each") for sql in leased] == [1, 1, 0]
        assert _states(ledger) == {_job(1).id: ("leased", "w1", 1, None),
                                   _job(2).id: ("leased", "w1", 1, None),
                                   _job(3).id: ("leased", "w2", 2, None),
                                   _job(4).id: ("leased", "w1", 1, None),
                                   _job(5).id: ("pending", None, 0, None)}
        with ledger.transaction():  # one job written twice in one write: in order, as written
            ledger.mark_leased([(1_900_000_000.0, "w1", 2, 1, _job(1).id),
                                (1_900_000_000.0, "w2", 3, 1, _job(1).id),
                                (1_900_000_000.0, "w1", 2, 1, _job(2).id),
                                (1_900_000_000.0, "w1", 2, 1, _job(1).id)])
        assert _states(ledger)[_job(1).id] == ("leased", "w1", 2, None)
        with ledger.transaction():
            ledger.mark_pending([("503", None, 1, _job(1).id), ("timeout", None, 1, _job(1).id)])
            ledger.mark_done([(1, _job(3).id)])
        # The second pending finds the job pending already: its guard (leased) refuses it.
        assert _states(ledger)[_job(1).id] == ("pending", None, 2, "503")
        assert _states(ledger)[_job(2).id] == ("leased", "w1", 2, None)
        assert (1, _job(3).id) not in ledger.seqs  # done: its row number is let go
        assert (1, _job(1).id) in ledger.seqs  # pending again: it will be handed out again
    finally:
        ledger.close()
