"""The PostgreSQL store (psycopg 3): the same contract as SQLite, for a shared database server.

Selected by ``VOE_STORE_URL=postgresql://user@host:5432/db``. Fares go in with COPY,
attempts and stored-job markers with batched inserts, all in one transaction per batch;
a job's fares are stored once per cycle, exactly as in the SQLite store (the queries,
locking and errors are ``voe.store.sql``'s, the tables ``voe.store.schema``'s). Every
write transaction first takes one advisory lock, as SQLite's ``BEGIN IMMEDIATE`` takes
the file's write lock; ``iter_fares`` reads through a server-side cursor on a
connection of its own.

The schema is created on first use and versioned in the ``voe_schema`` table: opening
a store applies every migration above the recorded version (under an advisory lock, so
two processes never migrate at once); a store newer than this code is refused.
Tables live in the connection's ``search_path`` (e.g. ``?options=-csearch_path%3Dvoe``).

Errors that pass (the connection terminated, lost or refused while the server restarts,
a full disk, a lock) raise ``StoreUnavailable``; a lost connection is opened again on
the next call. Bad credentials, a missing database or role, a read-only server and
programming errors stay fatal ``StoreError``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

try:
    import psycopg
    from psycopg import conninfo
except ImportError:  # the optional extra is missing; open() explains
    psycopg = None  # type: ignore[assignment]
    conninfo = None  # type: ignore[assignment]

from voe.model import Result
from voe.store import queries, schema
from voe.store.base import StoreError, StoreUnavailable
from voe.store.rows import fare_rows
from voe.store.schema import SCHEMA_VERSION as SCHEMA_VERSION
from voe.store.sql import SqlStore

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server before giving up with a one-line error."""

ITER_ROWS = 2000
"""Fares fetched at a time when fares are read as a stream (``iter_fares``)."""

_LOCK_KEY = 0x766F65  # "voe": the advisory lock every write transaction takes first

_PASSING_STATES = {
    "57P01": "connection",  # admin_shutdown: the backend was terminated, or the server stops
    "57P02": "connection",  # crash_shutdown
    "57P03": "connection",  # cannot_connect_now: the server is starting or shutting down
    "53300": "connection",  # too_many_connections
    "53000": "full",  # insufficient_resources
    "53100": "full",  # disk_full
    "53200": "full",  # out_of_memory
    "58030": "io",  # io_error
    "55P03": "locked",  # lock_not_available
    "40P01": "locked",  # deadlock_detected
    "40001": "locked",  # serialization_failure
}
"""SQLSTATEs of server errors that pass by themselves, with their kind (class 08 too)."""

_FATAL_CONNECT_WORDS = ("authentication", "password", "pg_hba.conf", "does not exist",
                        "permission denied", "not permitted to log in")
"""Words of a failed connection that waiting does not cure (libpq gives no SQLSTATE then)."""

_COPY_FARES = f"COPY fares ({queries.COLUMNS}) FROM STDIN"


def describe_url(url: str) -> str:
    """Name the server and database of ``url`` without user or password: ``host:port/db``."""
    try:
        params = conninfo.conninfo_to_dict(url) if conninfo is not None else {}
    except psycopg.ProgrammingError:
        return "an unreadable PostgreSQL URL"
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


def _reason(error: Exception, url: str) -> str:
    """The first line of a driver error, with any password in ``url`` blanked out."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if conninfo is not None:
        try:
            password = conninfo.conninfo_to_dict(url).get("password")
        except psycopg.ProgrammingError:
            password = None
        if password:
            text = text.replace(str(password), "********")
    return text


def _names_application(url: str) -> bool:
    """Whether ``url`` sets ``application_name`` itself (an unreadable one fails to connect)."""
    try:
        return "application_name" in conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return False


def passing_kind(error: Exception) -> str | None:
    """The kind of a psycopg error that passes by itself, or None when it is fatal.

    Authentication failures (SQLSTATE class 28, or a refused login) are fatal, although
    psycopg counts them among its ``OperationalError`` s.
    """
    state = getattr(error, "sqlstate", None)
    if state:
        return "connection" if state.startswith("08") else _PASSING_STATES.get(state)
    if psycopg is not None and isinstance(error, psycopg.OperationalError):
        # No SQLSTATE: the connection is closed or lost, or could not be opened.
        text = str(error)
        return None if any(word in text for word in _FATAL_CONNECT_WORDS) else "connection"
    return None


class PostgresStore(SqlStore):
    """A ``Store`` in a PostgreSQL database; ``readonly=True`` for reports (needs the schema).

    Use one instance from one thread at a time (a lock guards the connection).
    """

    dialect = schema.POSTGRES
    mark = "%s"
    by_price = "CAST(price AS NUMERIC), price"
    row_order = "id"
    same = "IS NOT DISTINCT FROM"
    any_job = "job_id = ANY(%s)"
    driver_error = psycopg.Error if psycopg is not None else ()

    def __init__(self, url: str, *, readonly: bool = False, application_name: str = "") -> None:
        """``application_name`` names the connection (``pg_stat_activity``) unless ``url`` does."""
        if psycopg is None:
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'voe[postgres]'")
        self.url = url
        self.where = describe_url(url)
        super().__init__(f"postgresql://{self.where}", readonly)
        self._options: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT}
        if application_name and not _names_application(url):
            self._options["application_name"] = application_name
        self._open()
        try:
            with self._errors("prepare the schema"):
                if readonly:
                    self._check_version()
                else:
                    self._migrate()
        except StoreError:
            self.close()
            raise

    def __str__(self) -> str:
        """The server and database, never the password."""
        return self.name

    def _open(self) -> None:
        self._conn = self._connect()

    def _lost(self) -> bool:
        return self._conn.closed  # terminated, or the server restarted

    def _connect(self) -> psycopg.Connection:
        """A new connection (read-only for reports); ``StoreUnavailable`` while the server is
        away, ``StoreError`` when waiting would not help (credentials, no such database)."""
        try:
            conn = psycopg.connect(self.url, **self._options)
        except psycopg.Error as error:
            reason = _reason(error, self.url)
            message = f"cannot connect to the PostgreSQL store at {self.where}: {reason}"
            kind = passing_kind(error)
            if kind is None:
                raise StoreError(message) from None
            raise StoreUnavailable(message, kind, reason) from None
        if self.readonly:
            try:
                conn.execute("SET default_transaction_read_only = on")
            except psycopg.Error as error:
                conn.close()
                raise self._store_error("open the store read-only", error) from error
        return conn

    def _version(self) -> int:
        """The recorded schema version, 0 when the schema does not exist yet."""
        exists = self._db.execute("SELECT to_regclass('voe_schema')").fetchone()[0]
        if exists is None:
            return 0
        row = self._db.execute("SELECT MAX(version) FROM voe_schema").fetchone()
        return row[0] or 0

    def _record(self, db: psycopg.Connection, applied: list[int]) -> None:
        """Add a row per migration applied to ``voe_schema`` (created with the first)."""
        if not applied:
            return
        db.execute("CREATE TABLE IF NOT EXISTS voe_schema ("
                   " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO voe_schema (version, applied_at) VALUES (%s, %s)",
                               [(number, time.time()) for number in applied])

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[psycopg.Connection]:
        """One transaction; a write one first takes the advisory lock every writer takes
        (migrations too), a read one sees one snapshot (repeatable read)."""
        db = self._db
        with db.transaction():
            if write:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            else:
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield db

    def _many(self, db: psycopg.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with db.cursor() as cursor:
            cursor.executemany(sql, rows)

    def _insert_fares(self, db: psycopg.Connection, fresh: Sequence[Result]) -> int:
        fares = 0
        with db.cursor() as cursor, cursor.copy(_COPY_FARES) as copy:
            for result in fresh:
                for row in fare_rows(result):
                    copy.write_row(row)
                    fares += 1
        return fares

    def _job_list(self, jobs: list[str]) -> list[str]:
        return jobs

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """A server-side cursor that fetches ``ITER_ROWS`` rows at a time."""
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name="voe_iter_fares") as cursor:
                cursor.itersize = ITER_ROWS
                cursor.execute(sql, params)
                yield from cursor
        finally:
            conn.close()

    def _reason(self, error: Exception) -> str:
        return _reason(error, self.url)

    def _passing_kind(self, error: Exception) -> str | None:
        return passing_kind(error)
