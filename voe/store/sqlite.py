"""The SQLite store: one file, written by the sink, read by reports from other processes.

Durability: WAL mode with ``synchronous=NORMAL``. A commit is in the WAL file (the
operating system's page cache) before ``save`` returns, so it survives the sink being
killed, even by SIGKILL, which is what the commit-then-ack guarantee covers. Power loss
or a kernel crash may lose the last commits; that is out of scope (``FULL`` would cost
an fsync per batch to cover it).

Concurrency: WAL lets readers run while the sink writes; every connection waits up to
``BUSY_TIMEOUT`` seconds for a lock instead of failing with "database is locked".

Errors that pass (a full disk, a lock held too long, a disk I/O error) raise
``StoreUnavailable``: the transaction was rolled back, and the connection, in doubt, is
replaced by a fresh one on the next call, which works again once space is free.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voe.dbfile import create_atomically
from voe.model import RESULT_STATUSES, Result
from voe.store import queries, schema
from voe.store.base import FARE_FIELDS, Closing, NoStore, StoreError, StoreUnavailable
from voe.store.rows import (
    EVENTS_PAUSED,
    LATEST_FARES,
    PAUSE_EVENTS,
    RESUME_EVENTS,
    Event,
    acknowledgements,
    check_statuses,
    decode_prices,
    event_from_row,
    fare_rows,
    field_count_rows,
    jobs_by_cycle,
    last_prices_rows,
    new_results,
    outbox_rows,
    outcome_key,
    outcome_row,
    refused_results,
    result_row,
)
from voe.store.schema import SCHEMA_VERSION

log = logging.getLogger("voe.store")

BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another one's lock before giving up."""

_PASSING_CODES = {
    sqlite3.SQLITE_FULL: "full",
    sqlite3.SQLITE_BUSY: "locked",
    sqlite3.SQLITE_LOCKED: "locked",
    sqlite3.SQLITE_PROTOCOL: "locked",  # a race for the WAL's locks that outlasted its retries
    sqlite3.SQLITE_IOERR: "io",
}
"""SQLite's primary result codes of errors that pass by themselves, with their kind."""

_PASSING_ERRNOS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EIO: "io"}
"""File errors (creating or opening the file) that pass by themselves, with their kind."""

_KEY_CHUNK = 500
"""Job ids per ``IN (...)`` lookup, well under SQLite's limit on bound parameters."""

_LEGACY_VERSIONS = {1: 1, 2: 3, 3: 4}
"""``PRAGMA user_version`` as voe wrote it before both stores shared one schema version
(SQLite counted its own steps, without PostgreSQL's fares index), as that version."""

_COLUMNS = queries.COLUMNS
_INSERT_FARE = f"INSERT INTO fares ({_COLUMNS}) VALUES ({', '.join('?' * len(FARE_FIELDS))})"
_INSERT_RESULT = (
    "INSERT INTO results (cycle, job_id, backend, origin, destination, date, return_date,"
    " fare_count, worker, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OUTCOME = (
    "INSERT OR IGNORE INTO outcomes (cycle, job_id, attempt, worker, status, duration, error, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_OUTCOME_FIELDS = ("cycle", "job_id", "attempt", "worker", "status", "duration", "error", "at")
_INSERT_EVENT = (
    "INSERT INTO outbox (id, kind, cycle, job_id, backend, origin, destination,"
    " created_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_PRICES = (
    "INSERT INTO last_prices (job_id, cycle, prices) VALUES (?, ?, ?) ON CONFLICT (job_id)"
    " DO UPDATE SET cycle = excluded.cycle, prices = excluded.prices"
    " WHERE excluded.cycle > last_prices.cycle"
)
_ADD_FIELD_COUNTS = queries.add_field_counts("?")
_BY_PRICE = "CAST(price AS REAL), price"


def passing_kind(error: BaseException) -> str | None:
    """The kind of a SQLite or file error that passes by itself, or None when it is fatal."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return None if code is None else _PASSING_CODES.get(code & 0xFF)
    if isinstance(error, OSError):
        return _PASSING_ERRNOS.get(error.errno)
    return None


def _store_error(message: str, error: BaseException) -> StoreError:
    """``StoreUnavailable`` for an error that passes, else a plain (fatal) ``StoreError``."""
    kind = passing_kind(error)
    if kind is None:
        return StoreError(message)
    return StoreUnavailable(message, kind, str(error))


class SqliteStore(Closing):
    """A ``Store`` in one SQLite file; ``readonly=True`` opens an existing file for reports.

    Use one instance from one thread at a time (it may move between threads, e.g. a pool).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.fares_written = 0
        self.events = True  # outbox events with each save (see keep_events)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None  # None: opened on the next call
        self._closed = False
        if readonly and not self.path.is_file():
            raise NoStore(f"no store at {self.path}")
        self._open()

    def _open(self) -> None:
        """Open the connection and make it ready: WAL, schema (migrated), or its version read."""
        try:
            self._conn = self._connect()
            if self.readonly:
                self._check_version()
            else:
                self._prepare()
        except (sqlite3.Error, OSError) as error:
            self._drop()
            raise _store_error(f"cannot open the store {self.path}: {error}", error) from error
        except StoreError:
            self._drop()
            raise

    def _drop(self) -> None:
        """Close the connection; the next call opens a fresh one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def reconnect(self) -> None:
        """Replace the connection with a fresh one; ``StoreUnavailable`` while it cannot open."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            self._drop()
            self._open()

    def _connect(self) -> sqlite3.Connection:
        """Open the connection in autocommit mode, so transactions are explicit."""
        if self.readonly:
            target, uri = self.path.resolve().as_uri() + "?mode=ro", True
        else:
            create_atomically(self.path, ";".join(schema.ddl(schema.SQLITE)), SCHEMA_VERSION)
            target, uri = str(self.path), False
        conn = sqlite3.connect(
            target, uri=uri, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        if self.readonly:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def _prepare(self) -> None:
        """Switch to WAL, create the schema if the file is new, migrate an older one."""
        conn = self._db
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"the store {self.path} cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._transaction("BEGIN IMMEDIATE"):
            for _, steps, fills in schema.pending(self._version(), schema.SQLITE, str(self.path)):
                for statement in steps:
                    conn.execute(statement)
                if fills:
                    conn.executemany(_UPSERT_PRICES, last_prices_rows(
                        conn.execute(LATEST_FARES).fetchall()))
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _version(self) -> int:
        """The schema version, 0 for a file without the schema (a legacy number read as such)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        return _LEGACY_VERSIONS.get(version, version)

    def _check_version(self) -> None:
        """Refuse a file that is not a voe store of this schema version."""
        schema.check_readable(self._version(), str(self.path), StoreError(
            f"{self.path} is not a voe store (schema version 0, expected {SCHEMA_VERSION})"))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")
        if self._conn is None:
            self._open()
        return self._conn

    @contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction: commit on success, roll back on any exception."""
        conn = self._db
        conn.execute(begin)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.rollback()
                except sqlite3.Error as error:
                    # SQLite undoes the unfinished transaction when the file is next used;
                    # this connection is in doubt, so the next call opens a fresh one.
                    log.warning("rolling back in the store %s failed (%s); reconnecting",
                                self.path, error)
                    self._drop()
            raise

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn SQLite's errors into ``StoreError`` naming the store and the operation.

        An error that passes is ``StoreUnavailable`` and drops the connection, so the
        next call starts from a fresh one.
        """
        try:
            yield
        except sqlite3.Error as error:
            failure = _store_error(f"cannot {doing} in the store {self.path}: {error}", error)
            if isinstance(failure, StoreUnavailable):
                self._drop()
            raise failure from error

    def save(self, results: Sequence[Result]) -> list[str]:
        """Record every attempt and store each job's fares once per cycle; ack after commit.

        Returns, per result, ``"done"`` if its job's fares of that cycle are stored once
        the batch is committed (by this batch or an earlier one), else its status.
        Raises ``ValueError`` for an unknown status (nothing is stored then).
        """
        check_statuses(results)
        if not results:
            return []
        now = time.time()
        fares = 0
        with self._lock, self._errors("save results"), self._transaction("BEGIN IMMEDIATE") as db:
            stored = self._stored_keys({(r.job.cycle, r.job.id) for r in results})
            refused = refused_results(results)
            if refused:  # counted once per attempt: only those whose outcome is new
                known = self._stored_outcomes({outcome_key(r) for r in refused})
                refused = [r for r in refused if outcome_key(r) not in known]
            db.executemany(_INSERT_OUTCOME, (outcome_row(r, now) for r in results))
            fresh = new_results(results, stored)
            if fresh:
                db.executemany(_INSERT_RESULT, (result_row(r, now) for r in fresh))
                rows = [row for result in fresh for row in fare_rows(result)]
                db.executemany(_INSERT_FARE, rows)
                fares = len(rows)
            counts = field_count_rows((*fresh, *refused))
            if counts:
                db.executemany(_ADD_FIELD_COUNTS, counts)
            if fresh and self.events:
                events, prices = outbox_rows(fresh, self._last_prices(fresh), now)
                db.executemany(_INSERT_EVENT, events)
                db.executemany(_UPSERT_PRICES, prices)
        self.fares_written += fares
        return acknowledgements(results, stored)

    def keep_events(self, on: bool) -> None:
        """Write outbox events with each save, or not (a sink with no destination to publish to).

        Off skips the events and the prices they compare, a third of a save's cost; on
        again, ``last_prices`` is first refreshed from the fares stored meanwhile.
        """
        with self._lock, self._errors("switch events"), self._transaction("BEGIN IMMEDIATE") as db:
            if not on:
                db.execute(PAUSE_EVENTS.format(mark="?"), (time.time(),))
            elif db.execute(EVENTS_PAUSED).fetchone() is not None:
                db.executemany(_UPSERT_PRICES, last_prices_rows(
                    db.execute(LATEST_FARES).fetchall()))
                db.execute(RESUME_EVENTS)
        self.events = on

    def _last_prices(self, fresh: Sequence[Result]) -> dict[str, tuple[int, dict[str, str]]]:
        """The latest stored cycle and prices of each job of ``fresh``: one indexed query."""
        ids = json.dumps(sorted({result.job.id for result in fresh}))
        rows = self._db.execute(
            "SELECT job_id, cycle, prices FROM last_prices"
            " WHERE job_id IN (SELECT value FROM json_each(?))", (ids,))
        return {job: (cycle, decode_prices(prices)) for job, cycle, prices in rows}

    def _stored_keys(self, keys: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
        """Return which of ``keys`` already have their fares stored, a few queries per cycle."""
        by_cycle = jobs_by_cycle(keys)
        stored: set[tuple[int, str]] = set()
        for cycle, jobs in by_cycle.items():
            for start in range(0, len(jobs), _KEY_CHUNK):
                chunk = jobs[start : start + _KEY_CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT job_id FROM results WHERE cycle = ? AND job_id IN ({marks})",
                    (cycle, *chunk),
                )
                stored.update((cycle, job) for (job,) in rows)
        return stored

    def _stored_outcomes(self, keys: set[tuple[int, str, int, str]]
                         ) -> set[tuple[int, str, int, str]]:
        """Return which of ``keys`` (``outcome_key``) have their outcome stored already."""
        by_cycle = jobs_by_cycle(keys)
        found: set[tuple[int, str, int, str]] = set()
        for cycle, jobs in by_cycle.items():
            for start in range(0, len(jobs), _KEY_CHUNK):
                chunk = jobs[start : start + _KEY_CHUNK]
                rows = self._db.execute(
                    "SELECT job_id, attempt, worker FROM outcomes WHERE cycle = ? AND job_id IN"
                    f" ({', '.join('?' * len(chunk))})", (cycle, *chunk))
                found.update((cycle, job, attempt, worker) for job, attempt, worker in rows)
        return found & keys

    def fare_count(self, cycle: int | None = None) -> int:
        """Return how many fares are stored (in ``cycle`` only, when given)."""
        with self._errors("count fares"):
            if cycle is None:
                return self._db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
            return self._db.execute(queries.fares_of_cycle("?"), (cycle,)).fetchone()[0]

    def result_count(self) -> int:
        """Return how many (cycle, job) pairs have their fares stored."""
        with self._errors("count results"):
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def counts(self) -> dict[str, Any]:
        """Return fares, stored jobs and outcomes by status, read from one snapshot."""
        with self._lock, self._errors("count"), self._transaction() as db:
            fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
            stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            by_status = dict.fromkeys(RESULT_STATUSES, 0)
            for status, count in db.execute("SELECT status, COUNT(*) FROM outcomes GROUP BY 1"):
                by_status[status] = count
        return {"fares": fares, "results": stored, "outcomes": by_status}

    def iter_fares(self, cycle: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield stored fares (of ``cycle`` if given) by cycle, job id and decimal price."""
        where, params = ("WHERE cycle = ?", (cycle,)) if cycle is not None else ("", ())
        sql = f"SELECT {_COLUMNS} FROM fares {where} ORDER BY cycle, job_id, {_BY_PRICE}, rowid"
        with self._errors("read fares"):
            for row in self._db.execute(sql, params):
                yield dict(zip(FARE_FIELDS, row, strict=True))

    def cheapest(self, cycle: int | None = None) -> list[dict[str, Any]]:
        """Return the cheapest fare per (origin, destination, date, return date).

        With ``cycle`` only that cycle counts; without, each route's latest cycle with fares.
        Prices are compared as numbers and returned as the stored decimal strings.
        """
        if cycle is not None:
            chosen, params = "SELECT * FROM fares WHERE cycle = ?", (cycle,)
        else:
            chosen, params = _LATEST_PER_ROUTE, ()
        sql = queries.cheapest(chosen, _BY_PRICE)
        with self._errors("find the cheapest fares"):
            rows = self._db.execute(sql, params).fetchall()
        return [dict(zip(FARE_FIELDS, row, strict=True)) for row in rows]

    def price_history(self, origin: str, destination: str,
                      date: str | None = None) -> list[dict[str, Any]]:
        """Return a route's cheapest fare per cycle and dates (of ``date`` if given)."""
        sql = queries.price_history(_BY_PRICE, "?", date is not None)
        params = (origin, destination) if date is None else (origin, destination, date)
        with self._errors("read the price history"):
            rows = self._db.execute(sql, params).fetchall()
        return [dict(zip(FARE_FIELDS, row, strict=True)) for row in rows]

    def result_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with stored results (before ``before`` if given), or None."""
        sql, params = "SELECT MAX(cycle) FROM results", ()
        if before is not None:
            sql, params = sql + " WHERE cycle < ?", (before,)
        with self._errors("find a cycle"):
            return self._db.execute(sql, params).fetchone()[0]

    def cycle_yields(self, cycle: int) -> dict[str, tuple[int, int]]:
        """Return, per backend, the stored results (successful pages) and fares of ``cycle``."""
        sql = ("SELECT backend, COUNT(*), SUM(fare_count) FROM results WHERE cycle = ?"
               " GROUP BY backend")
        with self._errors("count fares per page"):
            rows = self._db.execute(sql, (cycle,)).fetchall()
        return {backend: (pages, fares) for backend, pages, fares in rows}

    def field_counts(self, cycle: int) -> dict[str, dict[str, tuple[int, int]]]:
        """Return, per backend and field, the fares of ``cycle`` with it valid and invalid."""
        with self._errors("read the field counts"):
            rows = self._db.execute(queries.field_counts_of_cycle("?"), (cycle,)).fetchall()
        found: dict[str, dict[str, tuple[int, int]]] = {}
        for backend, field, valid, invalid in rows:
            found.setdefault(backend, {})[field] = (valid, invalid)
        return found

    def field_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with field counts (before ``before`` if given), or None."""
        sql = queries.field_cycle("?", before is not None)
        with self._errors("find a cycle"):
            return self._db.execute(sql, () if before is None else (before,)).fetchone()[0]

    def stored_jobs(self, cycle: int) -> dict[str, tuple[int | None, int]]:
        """Per job of ``cycle`` with a marker or fares: (fares it recorded or None, fare rows)."""
        markers = "SELECT job_id, fare_count FROM results WHERE cycle = ?"
        rows = "SELECT job_id, COUNT(*) FROM fares WHERE cycle = ? GROUP BY job_id"
        with self._lock, self._errors("audit stored jobs"):
            found: dict[str, tuple[int | None, int]] = {
                job: (count, 0) for job, count in self._db.execute(markers, (cycle,))}
            for job, count in self._db.execute(rows, (cycle,)):
                found[job] = (found.get(job, (None, 0))[0], count)
        return found

    def outcomes(self, cycle: int, job_id: str) -> list[dict[str, Any]]:
        """Return the recorded outcome of every attempt of one job in one cycle, oldest first."""
        sql = (
            f"SELECT {', '.join(_OUTCOME_FIELDS)} FROM outcomes"
            " WHERE cycle = ? AND job_id = ? ORDER BY attempt, rowid"
        )
        with self._errors("read outcomes"):
            rows = self._db.execute(sql, (cycle, job_id)).fetchall()
        return [dict(zip(_OUTCOME_FIELDS, row, strict=True)) for row in rows]

    def outbox_pending(self, destination: str, limit: int) -> list[Event]:
        """The next ``limit`` events after ``destination``'s cursor, oldest first."""
        with self._lock, self._errors("read the outbox"):
            rows = self._db.execute(queries.outbox_pending("?"), (destination, limit)).fetchall()
        return [event_from_row(row) for row in rows]

    def outbox_retries(self, destination: str, limit: int) -> list[Event]:
        """Dead letters of ``destination`` sent back for retry, oldest first."""
        with self._lock, self._errors("read the outbox"):
            rows = self._db.execute(queries.outbox_retries("?"), (destination, limit)).fetchall()
        return [event_from_row(row) for row in rows]

    def outbox_settle(self, destination: str, through: int | None, delivered: Sequence[int] = (),
                      dead: Sequence[tuple[int, int, str]] = ()) -> None:
        """Record a publisher's progress in one transaction.

        The cursor of ``destination`` moves to ``through`` (every event up to it is
        delivered or dead); ``delivered`` are retried dead letters now delivered;
        ``dead`` are ``(seq, attempts, error)`` of events given up on.
        """
        now = time.time()
        with self._lock, self._errors("record deliveries"), self._transaction("BEGIN IMMEDIATE"
                                                                              ) as db:
            if through is not None:
                db.execute(queries.move_cursor("?"), (destination, through, now))
            db.executemany("DELETE FROM outbox_dead WHERE destination = ? AND seq = ?",
                           [(destination, seq) for seq in delivered])
            db.executemany(queries.bury("?"), [(destination, seq, attempts, error, now)
                                                for seq, attempts, error in dead])

    def outbox_backlog(self, destinations: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Per destination (these and any the store knows): events waiting, dead letters."""
        with self._lock, self._errors("read the outbox"), self._transaction() as db:
            cursors = dict(db.execute("SELECT destination, seq FROM outbox_cursors"))
            dead = {name: (count, retry) for name, count, retry in db.execute(
                "SELECT destination, COUNT(*), SUM(state = 'retry') FROM outbox_dead"
                " GROUP BY destination")}
            report = {}
            for name in sorted({*destinations, *cursors, *dead}):
                waiting = db.execute("SELECT COUNT(*) FROM outbox WHERE seq > ?",
                                     (cursors.get(name, 0),)).fetchone()[0]
                count, retry = dead.get(name, (0, 0))
                report[name] = {"backlog": waiting, "dead": count - (retry or 0),
                                "retrying": retry or 0}
        return report

    def outbox_prune(self, destinations: Sequence[str], before: float, limit: int) -> int:
        """Delete up to ``limit`` events every one of ``destinations`` has passed, stored
        before ``before`` (Unix time) and dead for none; return how many."""
        if not destinations:
            return 0
        with self._lock, self._errors("prune the outbox"), self._transaction(
                "BEGIN IMMEDIATE") as db:
            cursors = dict(db.execute("SELECT destination, seq FROM outbox_cursors"))
            passed = min(cursors.get(name, 0) for name in destinations)
            return db.execute(queries.prune("?"), (passed, before, limit)).rowcount

    def dead_letters(self, destination: str | None = None) -> list[dict[str, Any]]:
        """Events a destination gave up on (``state`` dead, or retry once sent back)."""
        sql = queries.dead_letters("?", bool(destination))
        with self._lock, self._errors("read dead letters"):
            rows = self._db.execute(sql, (destination,) if destination else ()).fetchall()
        return [dict(zip(queries.DEAD_FIELDS, row, strict=True)) for row in rows]

    def retry_dead_letters(self, destination: str | None = None) -> int:
        """Send dead letters (of ``destination`` if given) back to their publisher; how many."""
        where, params = (" AND destination = ?", (destination,)) if destination else ("", ())
        with self._lock, self._errors("retry dead letters"), self._transaction(
                "BEGIN IMMEDIATE") as db:
            return db.execute(f"UPDATE outbox_dead SET state = 'retry' WHERE state = 'dead'{where}",
                              params).rowcount

    def __str__(self) -> str:
        """The SQLite file, as logs and errors name the store."""
        return f"SQLite {self.path.resolve()}"

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self._closed = True
        self._drop()


_LATEST_PER_ROUTE = (
    "SELECT f.* FROM fares AS f JOIN ("
    " SELECT origin, destination, date, return_date, MAX(cycle) AS cycle FROM fares"
    " GROUP BY origin, destination, date, return_date"
    ") AS latest ON f.origin = latest.origin AND f.destination = latest.destination"
    " AND f.date = latest.date AND f.return_date IS latest.return_date"
    " AND f.cycle = latest.cycle"
)
