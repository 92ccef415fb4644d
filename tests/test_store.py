"""The store on real SQLite files: exactly-once storage, acks, concurrency, durability, export."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest

import voe
from tests import legacystores
from tests.postgres import fresh_schema
from voe.cli.export import export_fares
from voe.model import CalendarDay, Fare, FieldCount, MultiCityFare, Result, RoundTripFare, SearchJob
from voe.store import SqliteStore, StoreError, open_store

REPO = Path(voe.__file__).resolve().parents[1]

WRITER = """
import sys, time
from voe.model import Fare, Result, SearchJob
from voe.store import open_store

path, worker, batches, size, mode = sys.argv[1:6]
store = open_store(path)
for batch in range(int(batches)):
    if mode == "reopen":
        store.close()
        store = open_store(path)
    results = []
    for n in range(int(size)):
        number = batch * int(size) + n
        job = SearchJob(f"demo:AAA-B{number:05d}:2025-05-01", 1, 1, "demo", "AAA",
                        f"B{number:05d}", "2025-05-01")
        fares = (Fare("VO1", "08:00", "10:00", "99.90", "EUR"),
                 Fare("VO2", "12:00", "14:00", "120.00", "EUR"))
        results.append(Result(job, "ok", fares, None, worker, 0.1))
    acks = store.save(results)
    assert acks == ["done"] * len(results), acks
    print("saved", flush=True)
if mode == "hold":
    time.sleep(120)
"""


def _job(
    number: int = 0,
    cycle: int = 1,
    attempt: int = 1,
    origin: str = "AAA",
    destination: str = "BBB",
    date: str = "2025-05-01",
    return_date: str | None = None,
) -> SearchJob:
    job_id = f"demo:{origin}-{destination}:{date}:{number}"
    return SearchJob(job_id, cycle, attempt, "demo", origin, destination, date, return_date)


def _fares(*prices: str) -> tuple[Fare, ...]:
    return tuple(
        Fare(f"VO{index}", f"2025-05-01T0{index}:00", f"2025-05-01T1{index}:00", price, "EUR")
        for index, price in enumerate(prices)
    )


def _ok(job: SearchJob, *prices: str, worker: str = "w1") -> Result:
    return Result(job, "ok", _fares(*prices), None, worker, 0.25)


def _failed(job: SearchJob, status: str = "transient", worker: str = "w1") -> Result:
    return Result(job, status, (), f"{status} failure", worker, 1.5)


def _writer(
    path: Path, worker: str, batches: int, size: int, mode: str = "exit"
) -> subprocess.Popen:
    """Start a process that saves ``batches`` of ``size`` results, printing "saved" after each.

    ``mode`` "hold" sleeps after saving (to be killed); "reopen" reopens the store per batch.
    """
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    args = [sys.executable, "-c", WRITER, str(path), worker, str(batches), str(size)]
    return subprocess.Popen(
        [*args, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_same_result_saved_twice_is_stored_once(store: SqliteStore) -> None:
    result = _ok(_job(), "10.00", "12.50")
    assert store.save([result]) == ["done"]
    assert store.save([result]) == ["done"]
    assert store.fare_count() == 2
    assert store.result_count() == 1


def test_duplicates_within_one_batch_are_stored_once(store: SqliteStore) -> None:
    first = _ok(_job(), "10.00", "12.50", worker="w1")
    again = _ok(_job(attempt=2), "11.00", worker="w2")
    assert store.save([first, first, again]) == ["done", "done", "done"]
    assert store.fare_count() == 2
    assert [fare["price"] for fare in store.iter_fares()] == ["10.00", "12.50"]


def test_acks_of_failure_success_failure(store: SqliteStore) -> None:
    job = _job()
    assert store.save([_failed(_job(attempt=1), "transient")]) == ["transient"]
    assert store.save([_failed(_job(attempt=2), "parse")]) == ["parse"]
    assert store.save([_ok(_job(attempt=3), "10.00")]) == ["done"]
    assert store.save([_failed(_job(attempt=4), "permanent")]) == ["done"]
    assert store.save([_failed(_job(number=1), "permanent")]) == ["permanent"]
    assert store.fare_count() == 1
    assert store.counts() == {
        "fares": 1,
        "results": 1,
        "outcomes": {"ok": 1, "transient": 1, "parse": 1, "permanent": 2, "blocked": 0},
    }
    assert [o["status"] for o in store.outcomes(job.cycle, job.id)] == [
        "transient", "parse", "ok", "permanent",
    ]


def test_acks_in_one_batch_reflect_the_committed_state(store: SqliteStore) -> None:
    batch = [_failed(_job(attempt=1)), _ok(_job(attempt=2), "10.00"), _failed(_job(number=1))]
    assert store.save(batch) == ["done", "done", "transient"]


def test_ok_without_fares_is_stored_and_wins(store: SqliteStore) -> None:
    assert store.save([_ok(_job(attempt=1))]) == ["done"]
    assert store.save([_ok(_job(attempt=2), "10.00")]) == ["done"]
    assert store.result_count() == 1
    assert store.fare_count() == 0


def test_each_cycle_is_stored_separately(store: SqliteStore) -> None:
    assert store.save([_ok(_job(cycle=1), "10.00"), _ok(_job(cycle=2), "11.00")]) == [
        "done", "done",
    ]
    assert store.save([_ok(_job(cycle=2), "12.00")]) == ["done"]
    assert [(f["cycle"], f["price"]) for f in store.iter_fares()] == [(1, "10.00"), (2, "11.00")]


def test_one_outcome_per_attempt(store: SqliteStore) -> None:
    job = _job()
    store.save([_failed(_job(attempt=1), worker="w1")])
    store.save([_failed(_job(attempt=1), worker="w1")])
    store.save([_failed(_job(attempt=1), worker="w2"), _ok(_job(attempt=2), "9.00", worker="w1")])
    outcomes = store.outcomes(job.cycle, job.id)
    assert [(o["attempt"], o["worker"], o["status"]) for o in outcomes] == [
        (1, "w1", "transient"), (1, "w2", "transient"), (2, "w1", "ok"),
    ]
    assert outcomes[0]["error"] == "transient failure"
    assert outcomes[0]["duration"] == 1.5
    assert outcomes[2]["error"] is None
    assert store.outcomes(job.cycle, "no-such-job") == []


def test_unknown_status_is_refused_before_storing(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="bogus"):
        store.save([_ok(_job(), "1.00"), Result(_job(number=1), "bogus", (), None, "w1", 0.0)])
    assert store.counts()["results"] == 0
    assert store.save([]) == []


def test_readers_in_another_process_are_never_locked_out(tmp_path: Path) -> None:
    path = tmp_path / "fares.db"
    writer = _writer(path, "w1", batches=300, size=20, mode="reopen")
    assert writer.stdout is not None
    assert writer.stdout.readline() == "saved\n"
    seen = []
    while writer.poll() is None:
        with open_store(path, readonly=True) as reader:
            counts = reader.counts()
        assert counts["fares"] == 2 * counts["results"]
        seen.append(counts["results"])
    _, errors = writer.communicate(timeout=60)
    assert writer.returncode == 0, errors
    assert seen == sorted(seen) and len(seen) > 1
    with open_store(path, readonly=True) as reader:
        assert reader.result_count() == 300 * 20


def test_concurrent_writers_store_each_job_once(tmp_path: Path) -> None:
    path = tmp_path / "fares.db"
    writers = [_writer(path, worker, batches=50, size=40) for worker in ("w1", "w2", "w3")]
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    with open_store(path) as store:
        assert store.result_count() == 50 * 40
        assert store.fare_count() == 2 * 50 * 40
        assert store.counts()["outcomes"]["ok"] == 3 * 50 * 40


@pytest.mark.parametrize("readonly", [True, False])
def test_saved_results_survive_sigkill(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "fares.db"
    writer = _writer(path, "w1", batches=1, size=100, mode="hold")
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline() == "saved\n"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    with open_store(path, readonly=readonly) as store:
        assert store.result_count() == 100
        assert store.fare_count() == 200


def _route_fixture(store: SqliteStore) -> None:
    store.save([
        _ok(_job(0, cycle=1, destination="BBB"), "100.00", "9.99"),
        _ok(_job(1, cycle=1, destination="CCC"), "50.00"),
        _ok(_job(0, cycle=2, destination="BBB"), "10.10", "100.5", "10.05"),
        _ok(_job(2, cycle=2, destination="BBB", return_date="2025-05-08"), "200.00", "199.99"),
    ])


def test_iter_fares_orders_by_cycle_job_and_decimal_price(store: SqliteStore) -> None:
    _route_fixture(store)
    fares = list(store.iter_fares())
    assert [(f["cycle"], f["job_id"][-1], f["price"]) for f in fares] == [
        (1, "0", "9.99"), (1, "0", "100.00"), (1, "1", "50.00"),
        (2, "0", "10.05"), (2, "0", "10.10"), (2, "0", "100.5"),
        (2, "2", "199.99"), (2, "2", "200.00"),
    ]
    assert fares[0] == {
        "backend": "demo", "origin": "AAA", "destination": "BBB", "date": "2025-05-01",
        "return_date": None, "flight": "VO1", "departure": "2025-05-01T01:00",
        "arrival": "2025-05-01T11:00", "price": "9.99", "currency": "EUR", "cycle": 1,
        "job_id": "demo:AAA-BBB:2025-05-01:0",
        "return_flight": None, "return_departure": None, "return_arrival": None, "options": "",
        "legs": "", "leg_flights": None,
    }
    assert [f["price"] for f in store.iter_fares(cycle=1)] == ["9.99", "100.00", "50.00"]
    assert list(store.iter_fares(cycle=9)) == []


def test_cheapest_per_route_in_the_latest_or_given_cycle(store: SqliteStore) -> None:
    _route_fixture(store)
    latest = {
        (f["destination"], f["return_date"]): (f["cycle"], f["price"]) for f in store.cheapest()
    }
    assert latest == {
        ("BBB", None): (2, "10.05"),
        ("BBB", "2025-05-08"): (2, "199.99"),
        ("CCC", None): (1, "50.00"),
    }
    first = {(f["destination"], f["return_date"]): f["price"] for f in store.cheapest(cycle=1)}
    assert first == {("BBB", None): "9.99", ("CCC", None): "50.00"}
    assert store.cheapest(cycle=9) == []


def test_price_history_of_one_route_per_cycle_and_dates(store: SqliteStore) -> None:
    _route_fixture(store)
    store.save([_ok(_job(3, cycle=2, destination="BBB", date="2025-05-02"), "7.00", "70.00")])
    history = [(f["cycle"], f["date"], f["return_date"], f["price"])
               for f in store.price_history("AAA", "BBB")]
    assert sorted(history, key=lambda row: (row[1], row[2] or "", row[0])) == [
        (1, "2025-05-01", None, "9.99"), (2, "2025-05-01", None, "10.05"),
        (2, "2025-05-01", "2025-05-08", "199.99"), (2, "2025-05-02", None, "7.00")]
    on_the_second = store.price_history("AAA", "BBB", "2025-05-02")
    assert [(f["cycle"], f["price"]) for f in on_the_second] == [(2, "7.00")]
    assert [f["price"] for f in store.price_history("AAA", "CCC")] == ["50.00"]
    assert store.price_history("BBB", "AAA") == []


def test_cheapest_keeps_the_exact_price_string(store: SqliteStore) -> None:
    store.save([_ok(_job(), "1234.50", "1234.5000001", "999999999999.10")])
    assert [f["price"] for f in store.cheapest()] == ["1234.50"]


def test_export_csv_round_trips(store: SqliteStore) -> None:
    _route_fixture(store)
    out = io.StringIO(newline="")
    assert export_fares(store, out, "csv") == 8
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    expected = list(store.iter_fares())
    assert len(rows) == len(expected)
    for row, fare in zip(rows, expected, strict=True):
        assert row == {
            key: "" if value is None else str(value) for key, value in fare.items()
        }
    assert sum(Decimal(row["price"]) for row in rows) == sum(Decimal(f["price"]) for f in expected)


def test_export_jsonl_round_trips(store: SqliteStore) -> None:
    _route_fixture(store)
    out = io.StringIO()
    assert export_fares(store, out, "jsonl") == 8
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == list(store.iter_fares())
    assert all(isinstance(json.loads(line)["price"], str) for line in lines)


def test_export_of_an_empty_store_and_unknown_format(store: SqliteStore) -> None:
    out = io.StringIO()
    assert export_fares(store, out, "csv") == 0
    assert out.getvalue().startswith("cycle,job_id,backend,")
    with pytest.raises(ValueError, match="xml"):
        export_fares(store, io.StringIO(), "xml")


def test_readonly_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no store"):
        SqliteStore(path, readonly=True)
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{path}", readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_readonly_store_refuses_writes_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "fares.db"
    SqliteStore(path).close()
    with SqliteStore(path, readonly=True) as reader:
        assert reader.counts()["fares"] == 0
        with pytest.raises(StoreError):
            reader.save([_ok(_job(), "1.00")])
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database at all, just some text " * 10)
    with pytest.raises(StoreError):
        SqliteStore(foreign, readonly=True)


def test_closed_store_raises(store: SqliteStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.fare_count()


def test_open_store_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///relative.db") as relative:
        relative.save([_ok(_job(), "1.00")])
    with open_store(tmp_path / "relative.db", readonly=True) as same:
        assert same.fare_count() == 1
    with open_store(f"sqlite:///{tmp_path}/absolute.db") as absolute:
        assert absolute.fare_count() == 0
    assert (tmp_path / "absolute.db").is_file()
    with open_store(str(tmp_path / "plain.db")) as plain:
        assert plain.counts()["results"] == 0
    with pytest.raises(StoreError, match=r"no \+driver"):
        open_store("postgresql+psycopg://voe@localhost/voe")
    with pytest.raises(StoreError, match="unknown store"):
        open_store("mysql://localhost/voe")


def test_schema_version_is_set_and_checked(tmp_path: Path) -> None:
    import sqlite3

    from voe.store import sqlite as sqlite_store

    path = tmp_path / "fares.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (sqlite_store.SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        newer = sqlite_store.SCHEMA_VERSION + 1  # a store written by a later voe
        db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError, match=f"version {newer}"):
        SqliteStore(path)


def test_a_large_batch_is_fast(store: SqliteStore) -> None:
    batch = [
        _ok(_job(number), "10.00", "11.00", "12.00", "13.00", "14.00") for number in range(1000)
    ]
    started = time.perf_counter()
    assert set(store.save(batch)) == {"done"}
    elapsed = time.perf_counter() - started
    assert store.fare_count() == 5000
    assert elapsed < 1.0


def test_postgres_schema_is_versioned_and_migrated() -> None:
    from voe.store import postgres

    with fresh_schema() as url:
        with pytest.raises(StoreError, match="no voe store"):
            open_store(url, readonly=True)
        open_store(url).close()
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(url, autocommit=True) as db:
            versions = [v for (v,) in db.execute("SELECT version FROM voe_schema ORDER BY 1")]
            assert versions == list(range(1, postgres.SCHEMA_VERSION + 1))
            # An old store (version 1 only) is migrated on open, its data kept.
            db.execute("DELETE FROM voe_schema WHERE version > 1")
            db.execute("DROP INDEX fares_cycle_job")
        with open_store(url) as store:
            assert store.save([_ok(_job(), "1.00")]) == ["done"]
        with psycopg.connect(url, autocommit=True) as db:
            assert db.execute("SELECT MAX(version) FROM voe_schema").fetchone() == (
                postgres.SCHEMA_VERSION,)
            db.execute("INSERT INTO voe_schema VALUES (99, 0)")
        with pytest.raises(StoreError, match="version 99"):
            open_store(url)
        with pytest.raises(StoreError, match="version 99"):
            open_store(url, readonly=True)


def test_postgres_unreachable_is_one_line_without_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://voe:s3cret@127.0.0.1:1/fares")
    message = str(caught.value)
    assert "127.0.0.1:1/fares" in message and "s3cret" not in message
    assert "\n" not in message


def test_stored_jobs_audits_markers_and_fare_rows(store: SqliteStore) -> None:
    store.save([_ok(_job(0), "1.00", "2.00"), _ok(_job(1)), _ok(_job(2, cycle=2), "3.00")])
    assert store.stored_jobs(1) == {
        "demo:AAA-BBB:2025-05-01:0": (2, 2), "demo:AAA-BBB:2025-05-01:1": (0, 0)}
    assert store.stored_jobs(9) == {}


def test_export_of_one_cycle_or_since_a_cycle(store: SqliteStore) -> None:
    _route_fixture(store)
    store.save([_ok(_job(0, cycle=3), "7.00")])

    def cycles(**chosen: int) -> list[int]:
        out = io.StringIO()
        export_fares(store, out, "jsonl", **chosen)
        return [json.loads(line)["cycle"] for line in out.getvalue().splitlines()]

    assert cycles() == [1, 1, 1, 2, 2, 2, 2, 2, 3]
    assert cycles(cycle=2) == [2] * 5
    assert cycles(since=2) == [2] * 5 + [3]
    assert cycles(since=3) == [3]
    assert cycles(since=2, cycle=1) == []
    assert cycles(cycle=9) == []


# Per-field counts (issue 12) ---------------------------------------------------------

def _counted(result: Result, **counts: tuple[int, int]) -> Result:
    """``result`` carrying per-field counts, e.g. ``flight=(2, 1)``."""
    return result._replace(field_counts=tuple(
        FieldCount(field, valid, invalid) for field, (valid, invalid) in counts.items()))


def test_field_counts_are_added_once_per_stored_answer_and_refused_attempt(store) -> None:
    assert store.field_counts(1) == {} and store.field_cycle() is None
    ok = _counted(_ok(_job(0), "1.00", "2.00"), flight=(2, 0), price=(2, 0))
    refused = _counted(_failed(_job(1), "parse"), flight=(1, 2), price=(3, 0))
    assert store.save([ok, ok, refused, refused]) == ["done", "done", "parse", "parse"]
    assert store.save([ok, refused]) == ["done", "parse"]  # redelivered: counted already
    # Another ok attempt of a stored job stores nothing, so counts nothing; another attempt
    # of a refused job is another answer; an ok result without counts (as workers send
    # them) counts every field of its fares valid.
    again = _counted(_ok(_job(0, attempt=2), "1.00", worker="w2"), flight=(1, 0))
    retried = _counted(_failed(_job(1, attempt=2), "parse"), flight=(0, 3))
    older = _ok(_job(2), "5.00")
    assert store.save([again, retried, older, _failed(_job(3))]) == [
        "done", "parse", "done", "transient"]
    other = _counted(_ok(_job(0, cycle=2)._replace(backend="demo-api"), "1.00"), flight=(1, 0))
    store.save([other, retried])
    assert store.field_counts(1) == {"demo": {
        "flight": (4, 5), "price": (6, 0), "departure": (1, 0), "arrival": (1, 0),
        "currency": (1, 0)}}
    assert store.field_counts(2) == {"demo-api": {"flight": (1, 0)}}
    assert store.field_counts(3) == {}
    assert store.field_cycle() == 2 and store.field_cycle(before=2) == 1
    assert store.field_cycle(before=1) is None
    assert store.fare_count() == 4  # fares as ever: 2 + 1 (older) + 1 (cycle 2)


def test_many_refused_answers_in_one_batch_count_once_each(store) -> None:
    batch = [_counted(_failed(_job(n, attempt=1 + n % 3), "parse", worker=f"w{n % 2}"),
                      price=(n, 1)) for n in range(1200)]  # more than one lookup chunk
    store.save(batch[:700])
    store.save(batch)
    total = sum(range(1200))
    assert store.field_counts(1) == {"demo": {"price": (total, 1200)}}


def test_field_counts_are_saved_in_the_results_transaction(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "fares.db"
    with SqliteStore(path) as store:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON field_counts"
                       " BEGIN SELECT RAISE(ABORT, 'no counts today'); END")
        ok = _counted(_ok(_job(0), "1.00"), flight=(1, 0))
        with pytest.raises(StoreError, match="no counts today"):
            store.save([ok])
        assert store.result_count() == 0 and store.fare_count() == 0  # nothing half-stored
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER refuse")
        assert store.save([ok]) == ["done"]
        assert store.field_counts(1) == {"demo": {"flight": (1, 0)}}


def test_an_older_sqlite_store_is_migrated_with_its_data(tmp_path: Path) -> None:
    import sqlite3

    from voe.store import sqlite as sqlite_store

    path = tmp_path / "fares.db"
    # A store of SQLite's own schema version 2, before field counts (3 of both stores now).
    with closing(legacystores.sqlite_store(path, 2)) as db, db:
        db.execute("INSERT INTO results VALUES (1, 'demo:A-B:d', 'demo', 'A', 'B', 'd', NULL,"
                   " 1, 'w1', 0)")
        db.execute("INSERT INTO fares VALUES (1, 'demo:A-B:d', 'demo', 'A', 'B', 'd', NULL,"
                   " 'G3 1', '05:00', '06:00', '1.00', 'BRL')")
    assert sqlite_store.SCHEMA_VERSION == 7
    with pytest.raises(StoreError, match="schema version 3, expected 7"):
        SqliteStore(path, readonly=True)  # reports never migrate
    with SqliteStore(path) as store:
        assert store.fare_count() == 1 and store.result_count() == 1
        assert store.field_counts(1) == {}
        store.save([_counted(_ok(_job(0), "1.00"), flight=(1, 0))])
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (sqlite_store.SCHEMA_VERSION,)
    with SqliteStore(path, readonly=True) as report:
        assert report.field_counts(1) == {"demo": {"flight": (1, 0)}}
        assert report.fare_count() == 2


def test_an_older_postgres_store_gains_field_counts() -> None:
    from voe.store import postgres

    psycopg = pytest.importorskip("psycopg")
    with fresh_schema() as url:
        with open_store(url) as store:
            store.save([_ok(_job(0), "1.00")])
        with psycopg.connect(url, autocommit=True) as db:  # back to version 3
            db.execute("DELETE FROM voe_schema WHERE version > 3")
            db.execute("DROP TABLE field_counts")
        with pytest.raises(StoreError, match="schema version 3, expected 7"):
            open_store(url, readonly=True)
        with open_store(url) as store:
            assert store.fare_count() == 1
            store.save([_counted(_ok(_job(1), "1.00"), flight=(1, 0))])
            assert store.field_counts(1) == {"demo": {"flight": (1, 0)}}
        with psycopg.connect(url, autocommit=True) as db:
            assert db.execute("SELECT MAX(version) FROM voe_schema").fetchone() == (
                postgres.SCHEMA_VERSION,)


def test_postgres_reads_fares_as_a_stream_on_a_connection_of_its_own() -> None:
    from voe.store import postgres

    with fresh_schema() as url, open_store(url) as store:
        rows = postgres.ITER_ROWS + 500
        jobs = [_job(f"B{n:05d}") for n in range(rows)]
        store.save([_ok(job, "10.00") for job in jobs])
        fares = store.iter_fares()
        first = next(fares)
        # The store's own connection is free meanwhile, and the reader fetches in batches
        # through a server-side cursor (a full read would show no FETCH).
        assert store.counts()["fares"] == rows
        with store._lock:
            activity = store._db.execute(
                "SELECT query FROM pg_stat_activity WHERE query LIKE 'FETCH FORWARD %%'"
                " AND pid <> pg_backend_pid()").fetchall()
        assert [query for (query,) in activity] == [
            f'FETCH FORWARD {postgres.ITER_ROWS} FROM "voe_iter_fares"'], activity
        assert first["job_id"] == jobs[0].id
        assert 1 + sum(1 for _ in fares) == rows


def test_a_round_trip_fare_is_stored_with_its_return_leg(store: SqliteStore) -> None:
    job = _job(7, return_date="2025-05-08")
    going = RoundTripFare("VO1", "08:00", "10:00", "300.00", "BRL", "VO2", "18:00", "20:00")
    result = Result(job, "ok", (going, going._replace(return_flight="VO3", price="280.00")),
                    None, "w1", 0.2)
    assert store.save([result]) == ["done"]
    fares = sorted(store.iter_fares(), key=lambda fare: fare["price"])
    assert [(f["return_flight"], f["return_departure"], f["return_arrival"], f["price"])
            for f in fares] == [("VO3", "18:00", "20:00", "280.00"),
                                ("VO2", "18:00", "20:00", "300.00")]


def test_plain_fares_bind_no_none_and_a_round_trip_jobs_one_way_fare_keeps_its_return_date(
        store) -> None:
    from voe.store.rows import PLAIN_FARE_FIELDS, fare_rows_by_width

    one_way, back = _job(1), _job(2, return_date="2025-05-08")
    batch = [_ok(one_way, "100.00", "110.00"), _ok(back, "200.00"), _ok(_job(3), "300.00")]
    plain, full = fare_rows_by_width(batch)
    assert len(plain) == 3 * len(PLAIN_FARE_FIELDS) and None not in plain
    assert [row[1] for row in full] == [back.id]
    assert store.save(batch) == ["done"] * 3
    assert sorted((f["job_id"], f["return_date"], f["price"], f["return_flight"], f["options"])
                  for f in store.iter_fares()) == [
        (one_way.id, None, "100.00", None, ""), (one_way.id, None, "110.00", None, ""),
        (back.id, "2025-05-08", "200.00", None, ""), (_job(3).id, None, "300.00", None, "")]


def test_a_sqlite_store_of_version_4_gains_the_return_leg_and_keeps_its_fares(
        tmp_path: Path) -> None:
    import sqlite3

    from voe.store import schema

    path = tmp_path / "fares.db"
    with closing(sqlite3.connect(path)) as db, db:  # a store as voe wrote it before round trips
        db.executescript(";".join(schema.ddl(schema.SQLITE, 4)))
        db.execute("PRAGMA user_version = 4")
        db.execute("INSERT INTO fares VALUES (1, 'demo:A-B:d', 'demo', 'A', 'B', 'd', NULL,"
                   " 'G3 1', '05:00', '06:00', '1.00', 'BRL')")
    with pytest.raises(StoreError, match="schema version 4, expected 7"):
        SqliteStore(path, readonly=True)
    with SqliteStore(path) as store:
        assert [(f["flight"], f["return_flight"]) for f in store.iter_fares()] == [("G3 1", None)]


def test_fares_keep_their_search_options_and_the_cheapest_never_mixes_them(store) -> None:
    plain = _job(1)
    party = plain._replace(id=f"{plain.id}/adults=2,cabin=business",
                           options="adults=2,cabin=business")
    assert store.save([_ok(plain, "300.00"), _ok(party, "150.00")]) == ["done", "done"]
    fares = sorted(store.iter_fares(), key=lambda fare: fare["options"])
    assert [(f["options"], f["price"]) for f in fares] == [
        ("", "300.00"), ("adults=2,cabin=business", "150.00")]
    cheapest = store.cheapest()
    assert [(f["options"], f["price"]) for f in cheapest] == [
        ("", "300.00"), ("adults=2,cabin=business", "150.00")]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_store_of_version_5_gains_search_options_and_keeps_its_fares(
        tmp_path: Path, dialect: str) -> None:
    import sqlite3

    from voe.store import schema

    before = ("INSERT INTO results (cycle, job_id, backend, origin, destination, date,"
              " return_date, fare_count, worker, stored_at) VALUES"
              " (1, 'demo:A-B:d', 'demo', 'A', 'B', 'd', NULL, 1, 'w1', 0)",
              "INSERT INTO fares (cycle, job_id, backend, origin, destination, date,"
              " return_date, flight, departure, arrival, price, currency) VALUES"
              " (1, 'demo:A-B:d', 'demo', 'A', 'B', 'd', NULL, 'G3 1', '05:00', '06:00',"
              " '1.00', 'BRL')")
    if dialect == "sqlite":
        url: str = str(tmp_path / "fares.db")
        with closing(sqlite3.connect(url)) as db, db:  # as voe wrote it before options
            db.executescript(";".join([*schema.ddl(schema.SQLITE, 5), *before]))
            db.execute("PRAGMA user_version = 5")
        context = contextlib.nullcontext(url)
    else:
        psycopg = pytest.importorskip("psycopg")
        context = fresh_schema()
    with context as url:
        if dialect == "postgresql":
            with psycopg.connect(url, autocommit=True) as db:
                db.execute("CREATE TABLE voe_schema (version INTEGER PRIMARY KEY,"
                           " applied_at DOUBLE PRECISION NOT NULL)")
                for sql in [*schema.ddl(schema.POSTGRES, 5), *before]:
                    db.execute(sql)
                db.execute("INSERT INTO voe_schema SELECT n, 0 FROM generate_series(1, 5) n")
        with pytest.raises(StoreError, match="schema version 5, expected 7"):
            open_store(url, readonly=True)
        with open_store(url) as store:
            assert [(f["flight"], f["options"]) for f in store.iter_fares()] == [("G3 1", "")]
            job = _job(2)._replace(options="pos=US", id="demo:A-B:e/pos=US")
            assert store.save([_ok(job, "2.00")]) == ["done"]
            assert sorted((f["job_id"], f["options"]) for f in store.iter_fares()) == [
                ("demo:A-B:d", ""), ("demo:A-B:e/pos=US", "pos=US")]


def test_a_repeat_is_acknowledged_with_the_answer_stored_first(store) -> None:
    from voe.answers import answer_digest

    first, repeat = _ok(_job(1), "10.00", "20.00"), _ok(_job(1, attempt=2), "10.00", "25.00")
    assert answer_digest(first.fares) != answer_digest(repeat.fares)  # prices moved between
    assert store.save_answers([first]) == [("done", answer_digest(first.fares))]
    failed = _failed(_job(2))
    # The repeat (its fares are not stored) says what is stored, in this batch or a later one.
    assert store.save_answers([repeat, failed]) == [("done", answer_digest(first.fares)),
                                                    ("transient", None)]
    other, again = _ok(_job(3), "30.00"), _ok(_job(3, attempt=2), "31.00")
    assert store.save_answers([other, again]) == [("done", answer_digest(other.fares))] * 2
    assert store.save([repeat]) == ["done"]


def test_a_result_stored_before_answers_were_kept_acknowledges_a_repeats_own(
        tmp_path: Path) -> None:
    import sqlite3

    from voe.answers import answer_digest
    from voe.store import schema

    path = tmp_path / "fares.db"
    with closing(sqlite3.connect(path)) as db, db:  # as voe wrote it before answer digests
        db.executescript(";".join(schema.ddl(schema.SQLITE, 6)))
        db.execute("INSERT INTO results (cycle, job_id, backend, origin, destination, date,"
                   " return_date, fare_count, worker, stored_at) VALUES"
                   " (1, ?, 'demo', 'AAA', 'BBB', '2025-05-01', NULL, 1, 'w1', 0)",
                   (_job(1).id,))
        db.execute("PRAGMA user_version = 6")
    with SqliteStore(path) as store:
        repeat = _ok(_job(1, attempt=2), "12.00")
        assert store.save_answers([repeat]) == [("done", answer_digest(repeat.fares))]
        assert store.fare_count() == 0  # still not stored twice


def test_a_calendars_days_are_stored_as_fares_of_their_own_dates(store) -> None:
    month = _job(3, date="2025-05")
    days = (CalendarDay("2025-05-01", "90.00", "BRL"), CalendarDay("2025-05-02", "80.00", "BRL"))
    assert store.save([Result(month, "ok", days, None, "w1", 0.2), _ok(_job(4), "85.00")]) == [
        "done", "done"]
    fares = sorted(store.iter_fares(), key=lambda fare: (fare["date"], fare["flight"]))
    assert [(f["job_id"], f["date"], f["flight"], f["departure"], f["price"]) for f in fares] == [
        (month.id, "2025-05-01", "", "", "90.00"), (_job(4).id, "2025-05-01", "VO0",
                                                    "2025-05-01T00:00", "85.00"),
        (month.id, "2025-05-02", "", "", "80.00")]
    assert store.stored_jobs(1)[month.id] == (2, 2)  # the audit counts days as fares
    # The cheapest fare of a day compares the calendar's with a full search's; at the same
    # price the full search's (its flight named) is shown.
    assert [(f["date"], f["price"], f["flight"]) for f in store.cheapest()] == [
        ("2025-05-01", "85.00", "VO0"), ("2025-05-02", "80.00", "")]
    assert store.field_counts(1)["demo"] == {"flight": (1, 0), "departure": (1, 0),
                                             "arrival": (1, 0), "price": (3, 0),
                                             "currency": (3, 0)}
    store.save([_ok(_job(6, date="2025-05-02"), "80.00")])  # the calendar's price that day
    assert [(f["date"], f["price"], f["flight"]) for f in store.cheapest(1)] == [
        ("2025-05-01", "85.00", "VO0"), ("2025-05-02", "80.00", "VO0")]


def test_a_multi_city_fare_is_stored_with_its_legs_and_compared_per_trip(store) -> None:
    def trip(legs: str, price: str) -> Result:
        job = _job(5, destination="CCC")._replace(id=f"demo:{legs}", legs=legs)
        fare = MultiCityFare("VO1", "08:00", "09:00", price, "BRL", (("VO2", "10:00", "11:00"),))
        return Result(job, "ok", (fare,), None, "w1", 0.2)

    via_b = trip("AAA-BBB:2025-05-01,BBB-CCC:2025-05-03", "300.00")
    via_d = trip("AAA-DDD:2025-05-01,DDD-CCC:2025-05-03", "200.00")
    assert store.save([via_b, via_d]) == ["done", "done"]
    fares = sorted(store.iter_fares(), key=lambda fare: fare["legs"])
    assert [(f["legs"], f["flight"], json.loads(f["leg_flights"]), f["price"]) for f in fares] == [
        ("AAA-BBB:2025-05-01,BBB-CCC:2025-05-03", "VO1", [["VO2", "10:00", "11:00"]], "300.00"),
        ("AAA-DDD:2025-05-01,DDD-CCC:2025-05-03", "VO1", [["VO2", "10:00", "11:00"]], "200.00")]
    # Two trips from AAA to CCC on one day are two searches: each has its cheapest.
    assert sorted(f["price"] for f in store.cheapest()) == ["200.00", "300.00"]
