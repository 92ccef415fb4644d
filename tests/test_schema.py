"""The store's one table description: both dialects' DDL, one schema version, old stores."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests import legacystores
from tests.postgres import fresh_schema
from voe.model import Fare, Result, SearchJob
from voe.store import SqliteStore, StoreError, open_store, schema
from voe.store.schema import POSTGRES, SCHEMA_VERSION, SQLITE


def _result(number: int, cycle: int = 1, price: str = "10.00") -> Result:
    job = SearchJob(f"demo:AAA-B{number}:2025-05-01", cycle, 1, "demo", "AAA", f"B{number}",
                    "2025-05-01")
    return Result(job, "ok", (Fare("VO1", "08:00", "10:00", price, "EUR"),), None, "w1", 0.1)


def test_each_dialect_spells_the_same_tables() -> None:
    sqlite, postgres = "\n".join(schema.ddl(SQLITE)), "\n".join(schema.ddl(POSTGRES))
    assert sqlite.count("CREATE TABLE") == postgres.count("CREATE TABLE") == len(schema.TABLES)
    assert ("CREATE TABLE IF NOT EXISTS results (cycle INTEGER NOT NULL, job_id TEXT NOT NULL,"
            in sqlite)
    assert "stored_at REAL NOT NULL, PRIMARY KEY (cycle, job_id)) WITHOUT ROWID" in sqlite
    assert "stored_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (cycle, job_id))\n" in postgres
    assert "seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL" in sqlite
    assert "seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL" in postgres
    assert "payload BLOB NOT NULL" in sqlite and "payload BYTEA NOT NULL" in postgres
    assert "valid BIGINT NOT NULL" in postgres and "valid INTEGER NOT NULL" in sqlite
    # SQLite keeps its implicit rowid and no index on fares, the sink's hottest path.
    assert "CREATE TABLE IF NOT EXISTS fares (cycle INTEGER NOT NULL" in sqlite
    assert "CREATE TABLE IF NOT EXISTS fares (id BIGSERIAL PRIMARY KEY, cycle" in postgres
    assert "fares_cycle_job" not in sqlite and "fares_cycle_job" in postgres
    assert "UNIQUE (id)" in postgres and "UNIQUE (id)" not in sqlite
    assert schema.statements(schema.MIGRATIONS[1], SQLITE, 2) == []
    # A column added by a later migration is added to an older table, not created with it.
    assert "return_flight" not in sqlite.split("ALTER TABLE")[0]
    assert schema.statements(schema.MIGRATIONS[4], POSTGRES, 5) == [
        f"ALTER TABLE fares ADD COLUMN IF NOT EXISTS {name} TEXT"
        for name in ("return_flight", "return_departure", "return_arrival")]


def test_both_stores_record_the_one_schema_version(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == len(schema.MIGRATIONS) == 7
    path = tmp_path / "fares.db"
    SqliteStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    psycopg = pytest.importorskip("psycopg")
    with fresh_schema() as url:
        open_store(url).close()
        with psycopg.connect(url, autocommit=True) as db:
            assert db.execute("SELECT MAX(version) FROM voe_schema").fetchone() == (
                SCHEMA_VERSION,)


def _sqlite_tables(path: Path) -> dict[str, Any]:
    """Each table's columns, indexes, rowid and AUTOINCREMENT, as SQLite describes them."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {}
        for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                                    " AND name <> 'sqlite_sequence'"):
            indexes = [(unique, origin, [c for (_, _, c) in db.execute(
                f"PRAGMA index_info('{index}')")]) for _, index, unique, origin, _ in
                db.execute(f"PRAGMA index_list('{name}')")]
            tables[name] = (db.execute(f"PRAGMA table_xinfo('{name}')").fetchall(),
                            sorted(indexes), "WITHOUT ROWID" in sql, "AUTOINCREMENT" in sql)
    return tables


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_old_sqlite_store_keeps_its_fares_and_gains_the_one_version(
        tmp_path: Path, version: int) -> None:
    old = tmp_path / "old.db"
    legacystores.sqlite_store(old, version).close()
    with SqliteStore(old) as store:
        store.save([_result(0)])
    with SqliteStore(old) as store:
        store.save([_result(0, cycle=2, price="12.00"), _result(1, cycle=2)])
    with contextlib.closing(sqlite3.connect(old)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    with SqliteStore(old, readonly=True) as report:
        assert [f["price"] for f in report.iter_fares()] == ["10.00", "12.00", "10.00"]
        assert report.field_counts(2)["demo"]["price"] == (2, 0)
    new = tmp_path / "new.db"
    SqliteStore(new).close()
    assert _sqlite_tables(old) == _sqlite_tables(new)


def test_old_sqlite_stores_are_left_as_they_are_by_reports(tmp_path: Path) -> None:
    # SQLite's own last number (3) is the one schema's version 4, before round trips.
    path = tmp_path / "fares.db"
    with contextlib.closing(legacystores.sqlite_store(path, 3)) as db, db:
        db.execute("INSERT INTO fares VALUES (1, 'j', 'demo', 'A', 'B', 'd', NULL,"
                   " 'VO1', 'a', 'b', '1.00', 'EUR')")
    with pytest.raises(StoreError, match="schema version 4, expected 7 .start the sink once"):
        SqliteStore(path, readonly=True)  # a report never writes the file
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
    for older in (1, 2):
        legacystores.sqlite_store(tmp_path / f"{older}.db", older).close()
        with pytest.raises(StoreError, match="start the sink once to migrate"):
            SqliteStore(tmp_path / f"{older}.db", readonly=True)
    with SqliteStore(path) as store:  # the sink migrates it, its fare kept
        assert store.fare_count() == 1
        assert next(store.iter_fares())["return_flight"] is None


def _postgres_tables(db: Any) -> list[tuple[Any, ...]]:
    """Columns and indexes of the connection's schema, as PostgreSQL describes them."""
    columns = db.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default IS NOT NULL"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, ordinal_position").fetchall()
    indexes = db.execute("SELECT tablename, indexname, regexp_replace(indexdef, ' ON \\S+', '')"
                         " FROM pg_indexes WHERE schemaname = current_schema()"
                         " ORDER BY 1, 2").fetchall()
    return columns + indexes


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_old_postgres_store_keeps_its_fares_and_gains_the_one_version(version: int) -> None:
    psycopg = pytest.importorskip("psycopg")
    with fresh_schema() as url, fresh_schema() as new_url:
        with psycopg.connect(url, autocommit=True) as db:
            legacystores.postgres_store(db, version)
            db.execute("INSERT INTO fares (cycle, job_id, backend, origin, destination, date,"
                       " flight, departure, arrival, price, currency) VALUES"
                       " (1, 'j', 'demo', 'A', 'B', 'd', 'VO1', 'a', 'b', '1.00', 'EUR')")
            db.execute("INSERT INTO results VALUES (1, 'j', 'demo', 'A', 'B', 'd', NULL, 1,"
                       " 'w1', 0)")
        if version < SCHEMA_VERSION:
            expected = f"schema version {version}, expected {SCHEMA_VERSION}"
            with pytest.raises(StoreError, match=expected):
                open_store(url, readonly=True)
        with open_store(url) as store:
            store.save([_result(0)])
            assert store.fare_count() == 2 and store.result_count() == 2
        open_store(new_url).close()
        with psycopg.connect(url, autocommit=True) as db, psycopg.connect(new_url) as new:
            assert [v for (v,) in db.execute("SELECT version FROM voe_schema ORDER BY 1")] == list(
                range(1, SCHEMA_VERSION + 1))
            assert _postgres_tables(db) == _postgres_tables(new)


def test_both_stores_refuse_a_newer_schema_in_the_same_words(tmp_path: Path) -> None:
    path = tmp_path / "fares.db"
    SqliteStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    words = re.escape(f"has unknown schema version 99, newer than this voe ({SCHEMA_VERSION}): "
                      "upgrade voe")
    for readonly in (False, True):
        with pytest.raises(StoreError, match=f"the store {re.escape(str(path))} {words}"):
            SqliteStore(path, readonly=readonly)
    psycopg = pytest.importorskip("psycopg")
    with fresh_schema() as url:
        open_store(url).close()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("INSERT INTO voe_schema VALUES (99, 0)")
        for readonly in (False, True):
            with pytest.raises(StoreError, match=f"the store postgresql://\\S+ {words}"):
                open_store(url, readonly=readonly)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_both_stores_refuse_writes_when_read_only_in_the_same_words(
        tmp_path: Path, dialect: str) -> None:
    with contextlib.ExitStack() as stack:
        target = (str(tmp_path / "fares.db") if dialect == "sqlite"
                  else stack.enter_context(fresh_schema()))
        open_store(target).close()
        reader = stack.enter_context(open_store(target, readonly=True))
        for write in (lambda: reader.save([_result(0)]), reader.retry_dead_letters,
                      lambda: reader.outbox_settle("hook", 1),
                      lambda: reader.outbox_prune(["hook"], 0, 10),
                      lambda: reader.keep_events(False)):
            with pytest.raises(StoreError, match=r"^the store \S+ is open read-only$"):
                write()


def test_sqlite_streams_fares_on_a_connection_of_its_own(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "fares.db") as store:
        store.save([_result(number) for number in range(3)])
        fares = store.iter_fares()
        first = next(fares)
        # The store's connection and lock are free meanwhile; the stream keeps its snapshot.
        assert store.save([_result(9, cycle=2)]) == ["done"]
        assert [first["job_id"], *(fare["job_id"] for fare in fares)] == [
            _result(number).job.id for number in range(3)]
        assert store.fare_count() == 4
