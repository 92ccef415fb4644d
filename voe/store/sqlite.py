"""The SQLite store: one file, written by the sink, read by reports from other processes.

Durability: WAL mode with ``synchronous=NORMAL``. A commit is in the WAL file (the
operating system's page cache) before ``save`` returns, so it survives the sink being
killed, even by SIGKILL, which is what the commit-then-ack guarantee covers. Power loss
or a kernel crash may lose the last commits; that is out of scope (``FULL`` would cost
an fsync per batch to cover it).

Concurrency: WAL lets readers run while the sink writes; every connection waits up to
``BUSY_TIMEOUT`` seconds for a lock instead of failing with "database is locked".
Writes take the file's write lock first (``BEGIN IMMEDIATE``), so two writers queue
instead of failing halfway.

Errors that pass (a full disk, a lock held too long, a disk I/O error) raise
``StoreUnavailable``: the transaction was rolled back, and the connection, in doubt, is
replaced by a fresh one on the next call, which works again once space is free.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from voe.dbfile import create_atomically
from voe.model import Result
from voe.sqlrows import insert_rows, insert_values
from voe.store import queries, schema
from voe.store.base import NoStore, StoreError, StoreUnavailable
from voe.store.rows import PLAIN_FARE_FIELDS, fare_rows_by_width
from voe.store.schema import SCHEMA_VERSION
from voe.store.sql import SqlStore

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

_LEGACY_VERSIONS = {1: 1, 2: 3, 3: 4}
"""``PRAGMA user_version`` as voe wrote it before both stores shared one schema version
(SQLite counted its own steps, without PostgreSQL's fares index), as that version."""

_INSERT_FARE = queries.insert_fare("?")
_INSERT_PLAIN_FARE = queries.insert_fare("?", PLAIN_FARE_FIELDS)


def passing_kind(error: BaseException) -> str | None:
    """The kind of a SQLite or file error that passes by itself, or None when it is fatal."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return None if code is None else _PASSING_CODES.get(code & 0xFF)
    if isinstance(error, OSError):
        return _PASSING_ERRNOS.get(error.errno)
    return None


class SqliteStore(SqlStore):
    """A ``Store`` in one SQLite file; ``readonly=True`` opens an existing file for reports.

    Use one instance from one thread at a time (it may move between threads, e.g. a pool).
    """

    dialect = schema.SQLITE
    mark = "?"
    by_price = "CAST(price AS REAL), price"
    row_order = "rowid"
    same = "IS"
    any_job = "job_id IN (SELECT value FROM json_each(?))"
    driver_error = sqlite3.Error

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        super().__init__(str(self.path), readonly)
        if readonly and not self.path.is_file():
            raise NoStore(f"no store at {self.path}")
        self._open()

    def __str__(self) -> str:
        """The SQLite file, as logs and errors name the store."""
        return f"SQLite {self.path.resolve()}"

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
            message = f"cannot open the store {self.path}: {error}"
            kind = passing_kind(error)
            if kind is None:
                raise StoreError(message) from error
            raise StoreUnavailable(message, kind, str(error)) from error
        except StoreError:
            self._drop()
            raise

    def _connect(self, readonly: bool | None = None) -> sqlite3.Connection:
        """Open a connection in autocommit mode, so transactions are explicit."""
        readonly = self.readonly if readonly is None else readonly
        if readonly:
            target, uri = self.path.resolve().as_uri() + "?mode=ro", True
        else:
            create_atomically(self.path, ";".join(schema.ddl(schema.SQLITE)), SCHEMA_VERSION)
            target, uri = str(self.path), False
        conn = sqlite3.connect(
            target, uri=uri, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def _prepare(self) -> None:
        """Switch to WAL, create the schema if the file is new, migrate an older one."""
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"the store {self.path} cannot use WAL mode (got {mode!r})")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _version(self) -> int:
        """The schema version, 0 for a file without the schema (a legacy number read as such)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        return _LEGACY_VERSIONS.get(version, version)

    def _record(self, db: sqlite3.Connection, applied: list[int]) -> None:
        """Write the one schema version (also over a legacy number of the same schema)."""
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _empty(self) -> StoreError:
        """A file without the schema is somebody else's, not an empty store."""
        return StoreError(f"{self.path} is not a voe store (schema version 0, expected "
                          f"{SCHEMA_VERSION})")

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, a write one holding the file's write lock from its start."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
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

    def _many(self, db: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        db.executemany(sql, rows)

    def _insert(self, db: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        insert_rows(db, sql, rows)

    def _insert_fares(self, db: sqlite3.Connection, fresh: Sequence[Result]) -> int:
        plain, full = fare_rows_by_width(fresh)
        # Most rows are plain: fewer columns to bind, the rest take their defaults.
        insert_values(db, _INSERT_PLAIN_FARE, len(PLAIN_FARE_FIELDS), plain)
        insert_rows(db, _INSERT_FARE, full)
        return len(plain) // len(PLAIN_FARE_FIELDS) + len(full)

    def _job_list(self, jobs: list[str]) -> str:
        return json.dumps(jobs)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        with closing(self._connect(readonly=True)) as conn:
            yield from conn.execute(sql, params)

    def _passing_kind(self, error: Exception) -> str | None:
        return passing_kind(error)
