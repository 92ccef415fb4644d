"""The PostgreSQL store (psycopg 3): the same contract as SQLite, for a shared database server.

Selected by ``VOE_STORE_URL=postgresql://user@host:5432/db``. Fares go in with COPY,
attempts and stored-job markers with batched inserts, all in one transaction per batch;
a job's fares are stored once per cycle, exactly as in the SQLite store.

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

import threading
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

from voe.model import RESULT_STATUSES, Result
from voe.store import queries, schema
from voe.store.base import FARE_FIELDS, Closing, StoreError, StoreUnavailable
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
from voe.store.schema import SCHEMA_VERSION as SCHEMA_VERSION

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server before giving up with a one-line error."""

ITER_ROWS = 2000
"""Fares fetched at a time when fares are read as a stream (``iter_fares``)."""

_LOCK_KEY = 0x766F65  # "voe": the advisory lock serializing migrations and saves

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

_COLUMNS = queries.COLUMNS
_INSERT_RESULT = (
    "INSERT INTO results (cycle, job_id, backend, origin, destination, date, return_date,"
    " fare_count, worker, stored_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_OUTCOME = (
    "INSERT INTO outcomes (cycle, job_id, attempt, worker, status, duration, error, at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_OUTCOME_FIELDS = ("cycle", "job_id", "attempt", "worker", "status", "duration", "error", "at")
_INSERT_EVENT = (
    "INSERT INTO outbox (id, kind, cycle, job_id, backend, origin, destination, created_at,"
    " payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_UPSERT_PRICES = (
    "INSERT INTO last_prices (job_id, cycle, prices) VALUES (%s, %s, %s) ON CONFLICT (job_id)"
    " DO UPDATE SET cycle = excluded.cycle, prices = excluded.prices"
    " WHERE excluded.cycle > last_prices.cycle"
)
_ADD_FIELD_COUNTS = queries.add_field_counts("%s")
_BY_PRICE = "CAST(price AS NUMERIC), price"
_LATEST_PER_ROUTE = (
    "SELECT f.* FROM fares AS f JOIN ("
    " SELECT origin, destination, date, return_date, MAX(cycle) AS cycle FROM fares"
    " GROUP BY origin, destination, date, return_date"
    ") AS latest ON f.origin = latest.origin AND f.destination = latest.destination"
    " AND f.date = latest.date AND f.return_date IS NOT DISTINCT FROM latest.return_date"
    " AND f.cycle = latest.cycle"
)


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


class PostgresStore(Closing):
    """A ``Store`` in a PostgreSQL database; ``readonly=True`` for reports (needs the schema).

    Use one instance from one thread at a time (a lock guards the connection).
    """

    def __init__(self, url: str, *, readonly: bool = False, application_name: str = "") -> None:
        """``application_name`` names the connection (``pg_stat_activity``) unless ``url`` does."""
        if psycopg is None:
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'voe[postgres]'")
        self.url = url
        self.readonly = readonly
        self.fares_written = 0
        self.events = True  # outbox events with each save (see keep_events)
        self.where = describe_url(url)
        self._options: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT}
        if application_name and not _names_application(url):
            self._options["application_name"] = application_name
        self._lock = threading.Lock()
        self._closed = False
        self._conn: psycopg.Connection | None = self._connect()
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
        return f"postgresql://{self.where}"

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

    def reconnect(self) -> None:
        """Replace the connection with a new one (``StoreUnavailable`` while the server is away)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self} is closed")
            self._drop()
            self._conn = self._connect()

    def _drop(self) -> None:
        """Close the connection; the next call opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    @property
    def _db(self) -> psycopg.Connection:
        if self._closed:
            raise StoreError(f"the store {self} is closed")
        if self._conn is None or self._conn.closed:  # lost (terminated, server restarted)
            self._drop()
            self._conn = self._connect()
        return self._conn

    def _store_error(self, doing: str, error: Exception) -> StoreError:
        """``StoreUnavailable`` for an error that passes, else a plain (fatal) ``StoreError``."""
        reason = _reason(error, self.url)
        message = f"cannot {doing} in the store {self}: {reason}"
        kind = passing_kind(error)
        return StoreError(message) if kind is None else StoreUnavailable(message, kind, reason)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn psycopg's errors into ``StoreError`` naming the store and the operation."""
        try:
            yield
        except psycopg.Error as error:
            raise self._store_error(doing, error) from error

    def _version(self) -> int:
        """The recorded schema version, 0 when the schema does not exist yet."""
        exists = self._db.execute("SELECT to_regclass('voe_schema')").fetchone()[0]
        if exists is None:
            return 0
        row = self._db.execute("SELECT MAX(version) FROM voe_schema").fetchone()
        return row[0] or 0

    def _migrate(self) -> None:
        """Create the schema or bring it to ``SCHEMA_VERSION``, one transaction, locked."""
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS voe_schema ("
                " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            for number, steps, fills in schema.pending(self._version(), schema.POSTGRES,
                                                       str(self)):
                for statement in steps:
                    self._db.execute(statement)
                if fills:
                    with self._db.cursor() as cursor:
                        cursor.executemany(_UPSERT_PRICES, last_prices_rows(
                            self._db.execute(LATEST_FARES).fetchall()))
                self._db.execute("INSERT INTO voe_schema (version, applied_at) VALUES (%s, %s)",
                                 (number, time.time()))

    def _check_version(self) -> None:
        """Refuse a database without the voe schema of this version (reports never migrate)."""
        schema.check_readable(self._version(), str(self))

    def save(self, results: Sequence[Result]) -> list[str]:
        """Record every attempt and store each job's fares once per cycle; ack after commit.

        Returns, per result, ``"done"`` if its job's fares of that cycle are stored once
        the batch is committed (by this batch or an earlier one), else its status.
        Raises ``ValueError`` for an unknown status (nothing is stored then).
        """
        check_statuses(results)
        if not results:
            return []
        if self.readonly:
            raise StoreError(f"the store {self} is open read-only")
        now = time.time()
        with self._lock, self._errors("save results"), self._db.transaction():
            db = self._db
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            stored = self._stored_keys({(r.job.cycle, r.job.id) for r in results})
            refused = refused_results(results)
            if refused:  # counted once per attempt: only those whose outcome is new
                known = self._stored_outcomes({outcome_key(r) for r in refused})
                refused = [r for r in refused if outcome_key(r) not in known]
            fares = 0
            with db.cursor() as cursor:
                cursor.executemany(_INSERT_OUTCOME, [outcome_row(r, now) for r in results])
                fresh = new_results(results, stored)
                if fresh:
                    cursor.executemany(_INSERT_RESULT, [result_row(r, now) for r in fresh])
                    with cursor.copy(f"COPY fares ({_COLUMNS}) FROM STDIN") as copy:
                        for result in fresh:
                            for row in fare_rows(result):
                                copy.write_row(row)
                                fares += 1
                counts = field_count_rows((*fresh, *refused))
                if counts:
                    cursor.executemany(_ADD_FIELD_COUNTS, counts)
                if fresh and self.events:
                    events, prices = outbox_rows(fresh, self._last_prices(fresh), now)
                    cursor.executemany(_INSERT_EVENT, events)
                    cursor.executemany(_UPSERT_PRICES, prices)
        self.fares_written += fares
        return acknowledgements(results, stored)

    def keep_events(self, on: bool) -> None:
        """Write outbox events with each save, or not (a sink with no destination to publish to).

        Off skips the events and the prices they compare, a third of a save's cost; on
        again, ``last_prices`` is first refreshed from the fares stored meanwhile.
        """
        with self._lock, self._errors("switch events"), self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            if not on:
                self._db.execute(PAUSE_EVENTS.format(mark="%s"), (time.time(),))
            elif self._db.execute(EVENTS_PAUSED).fetchone() is not None:
                with self._db.cursor() as cursor:
                    cursor.executemany(_UPSERT_PRICES, last_prices_rows(
                        self._db.execute(LATEST_FARES).fetchall()))
                self._db.execute(RESUME_EVENTS)
        self.events = on

    def _last_prices(self, fresh: Sequence[Result]) -> dict[str, tuple[int, dict[str, str]]]:
        """The latest stored cycle and prices of each job of ``fresh``: one indexed query."""
        rows = self._db.execute(
            "SELECT job_id, cycle, prices FROM last_prices WHERE job_id = ANY(%s)",
            (sorted({result.job.id for result in fresh}),))
        return {job: (cycle, decode_prices(prices)) for job, cycle, prices in rows}

    def _stored_keys(self, keys: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
        """Return which of ``keys`` already have their fares stored, one query per cycle."""
        by_cycle = jobs_by_cycle(keys)
        stored: set[tuple[int, str]] = set()
        for cycle, jobs in by_cycle.items():
            rows = self._db.execute(
                "SELECT job_id FROM results WHERE cycle = %s AND job_id = ANY(%s)", (cycle, jobs))
            stored.update((cycle, job) for (job,) in rows)
        return stored

    def _stored_outcomes(self, keys: set[tuple[int, str, int, str]]
                         ) -> set[tuple[int, str, int, str]]:
        """Return which of ``keys`` (``outcome_key``) have their outcome stored already."""
        by_cycle = jobs_by_cycle(keys)
        found: set[tuple[int, str, int, str]] = set()
        for cycle, jobs in by_cycle.items():
            rows = self._db.execute(
                "SELECT job_id, attempt, worker FROM outcomes WHERE cycle = %s"
                " AND job_id = ANY(%s)", (cycle, jobs))
            found.update((cycle, job, attempt, worker) for job, attempt, worker in rows)
        return found & keys

    def _one(self, sql: str, params: tuple[Any, ...] = (), doing: str = "read") -> Any:
        with self._lock, self._errors(doing):
            return self._db.execute(sql, params).fetchone()[0]

    def fare_count(self, cycle: int | None = None) -> int:
        """Return how many fares are stored (in ``cycle`` only, when given)."""
        if cycle is None:
            return self._one("SELECT COUNT(*) FROM fares", doing="count fares")
        return self._one(queries.fares_of_cycle("%s"), (cycle,), doing="count fares")

    def result_count(self) -> int:
        """Return how many (cycle, job) pairs have their fares stored."""
        return self._one("SELECT COUNT(*) FROM results", doing="count results")

    def counts(self) -> dict[str, Any]:
        """Return fares, stored jobs and outcomes by status, read from one snapshot."""
        with self._lock, self._errors("count"), self._db.transaction():
            db = self._db
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
            stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            by_status = dict.fromkeys(RESULT_STATUSES, 0)
            for status, count in db.execute("SELECT status, COUNT(*) FROM outcomes GROUP BY 1"):
                by_status[status] = count
        return {"fares": fares, "results": stored, "outcomes": by_status}

    def iter_fares(self, cycle: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield stored fares (of ``cycle`` if given) by cycle, job id and decimal price."""
        where, params = ("WHERE cycle = %s", (cycle,)) if cycle is not None else ("", ())
        sql = f"SELECT {_COLUMNS} FROM fares {where} ORDER BY cycle, job_id, {_BY_PRICE}, id"
        with self._errors("read fares"):
            # A connection of its own with a server-side cursor: the rows come ITER_ROWS at a
            # time (an export of millions stays small), and the store's connection and lock
            # stay free for its other work meanwhile.
            conn = self._connect()
            try:
                with conn.transaction(), conn.cursor(name="voe_iter_fares") as cursor:
                    cursor.itersize = ITER_ROWS
                    cursor.execute(sql, params)
                    for row in cursor:
                        yield dict(zip(FARE_FIELDS, row, strict=True))
            finally:
                conn.close()

    def cheapest(self, cycle: int | None = None) -> list[dict[str, Any]]:
        """Return the cheapest fare per (origin, destination, date, return date).

        With ``cycle`` only that cycle counts; without, each route's latest cycle with fares.
        Prices are compared as numbers and returned as the stored decimal strings.
        """
        if cycle is not None:
            chosen, params = "SELECT * FROM fares WHERE cycle = %s", (cycle,)
        else:
            chosen, params = _LATEST_PER_ROUTE, ()
        sql = queries.cheapest(chosen, _BY_PRICE)
        with self._lock, self._errors("find the cheapest fares"):
            rows = self._db.execute(sql, params).fetchall()
        return [dict(zip(FARE_FIELDS, row, strict=True)) for row in rows]

    def price_history(self, origin: str, destination: str,
                      date: str | None = None) -> list[dict[str, Any]]:
        """Return a route's cheapest fare per cycle and dates (of ``date`` if given)."""
        sql = queries.price_history(_BY_PRICE, "%s", date is not None)
        params = (origin, destination) if date is None else (origin, destination, date)
        with self._lock, self._errors("read the price history"):
            rows = self._db.execute(sql, params).fetchall()
        return [dict(zip(FARE_FIELDS, row, strict=True)) for row in rows]

    def result_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with stored results (before ``before`` if given), or None."""
        sql, params = "SELECT MAX(cycle) FROM results", ()
        if before is not None:
            sql, params = sql + " WHERE cycle < %s", (before,)
        return self._one(sql, params, "find a cycle")

    def cycle_yields(self, cycle: int) -> dict[str, tuple[int, int]]:
        """Return, per backend, the stored results (successful pages) and fares of ``cycle``."""
        sql = ("SELECT backend, COUNT(*), SUM(fare_count) FROM results WHERE cycle = %s"
               " GROUP BY backend")
        with self._lock, self._errors("count fares per page"):
            rows = self._db.execute(sql, (cycle,)).fetchall()
        return {backend: (pages, int(fares)) for backend, pages, fares in rows}

    def field_counts(self, cycle: int) -> dict[str, dict[str, tuple[int, int]]]:
        """Return, per backend and field, the fares of ``cycle`` with it valid and invalid."""
        with self._lock, self._errors("read the field counts"):
            rows = self._db.execute(queries.field_counts_of_cycle("%s"), (cycle,)).fetchall()
        found: dict[str, dict[str, tuple[int, int]]] = {}
        for backend, field, valid, invalid in rows:
            found.setdefault(backend, {})[field] = (valid, invalid)
        return found

    def field_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with field counts (before ``before`` if given), or None."""
        return self._one(queries.field_cycle("%s", before is not None),
                         () if before is None else (before,), "find a cycle")

    def stored_jobs(self, cycle: int) -> dict[str, tuple[int | None, int]]:
        """Per job of ``cycle`` with a marker or fares: (fares it recorded or None, fare rows)."""
        sql = (
            "SELECT COALESCE(r.job_id, f.job_id), r.fare_count, COALESCE(f.n, 0) FROM"
            " (SELECT job_id, fare_count FROM results WHERE cycle = %s) AS r FULL JOIN"
            " (SELECT job_id, COUNT(*) AS n FROM fares WHERE cycle = %s GROUP BY job_id) AS f"
            " ON r.job_id = f.job_id"
        )
        with self._lock, self._errors("audit stored jobs"):
            rows = self._db.execute(sql, (cycle, cycle)).fetchall()
        return {job: (expected, found) for job, expected, found in rows}

    def outcomes(self, cycle: int, job_id: str) -> list[dict[str, Any]]:
        """Return the recorded outcome of every attempt of one job in one cycle, oldest first."""
        sql = (
            f"SELECT {', '.join(_OUTCOME_FIELDS)} FROM outcomes"
            " WHERE cycle = %s AND job_id = %s ORDER BY attempt, id"
        )
        with self._lock, self._errors("read outcomes"):
            rows = self._db.execute(sql, (cycle, job_id)).fetchall()
        return [dict(zip(_OUTCOME_FIELDS, row, strict=True)) for row in rows]

    def outbox_pending(self, destination: str, limit: int) -> list[Event]:
        """The next ``limit`` events after ``destination``'s cursor, oldest first."""
        with self._lock, self._errors("read the outbox"):
            rows = self._db.execute(queries.outbox_pending("%s"), (destination, limit)).fetchall()
        return [event_from_row(row) for row in rows]

    def outbox_retries(self, destination: str, limit: int) -> list[Event]:
        """Dead letters of ``destination`` sent back for retry, oldest first."""
        with self._lock, self._errors("read the outbox"):
            rows = self._db.execute(queries.outbox_retries("%s"), (destination, limit)).fetchall()
        return [event_from_row(row) for row in rows]

    def outbox_settle(self, destination: str, through: int | None, delivered: Sequence[int] = (),
                      dead: Sequence[tuple[int, int, str]] = ()) -> None:
        """Record a publisher's progress in one transaction (see ``SqliteStore.outbox_settle``)."""
        if self.readonly:
            raise StoreError(f"the store {self} is open read-only")
        now = time.time()
        with self._lock, self._errors("record deliveries"), self._db.transaction():
            db = self._db
            if through is not None:
                db.execute(queries.move_cursor("%s"), (destination, through, now))
            with db.cursor() as cursor:
                if delivered:
                    cursor.execute(
                        "DELETE FROM outbox_dead WHERE destination = %s AND seq = ANY(%s)",
                        (destination, list(delivered)))
                if dead:
                    cursor.executemany(queries.bury("%s"), [
                        (destination, seq, attempts, error, now) for seq, attempts, error in dead])

    def outbox_backlog(self, destinations: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Per destination (these and any the store knows): events waiting, dead letters."""
        with self._lock, self._errors("read the outbox"), self._db.transaction():
            db = self._db
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursors = dict(db.execute("SELECT destination, seq FROM outbox_cursors").fetchall())
            dead = {name: (count, retry) for name, count, retry in db.execute(
                "SELECT destination, COUNT(*), COUNT(*) FILTER (WHERE state = 'retry')"
                " FROM outbox_dead GROUP BY destination")}
            report = {}
            for name in sorted({*destinations, *cursors, *dead}):
                waiting = db.execute("SELECT COUNT(*) FROM outbox WHERE seq > %s",
                                     (cursors.get(name, 0),)).fetchone()[0]
                count, retry = dead.get(name, (0, 0))
                report[name] = {"backlog": waiting, "dead": count - retry, "retrying": retry}
        return report

    def outbox_prune(self, destinations: Sequence[str], before: float, limit: int) -> int:
        """Delete up to ``limit`` events every one of ``destinations`` has passed (see
        ``SqliteStore.outbox_prune``); return how many."""
        if not destinations:
            return 0
        if self.readonly:
            raise StoreError(f"the store {self} is open read-only")
        with self._lock, self._errors("prune the outbox"), self._db.transaction():
            cursors = dict(self._db.execute(
                "SELECT destination, seq FROM outbox_cursors").fetchall())
            passed = min(cursors.get(name, 0) for name in destinations)
            return self._db.execute(queries.prune("%s"), (passed, before, limit)).rowcount

    def dead_letters(self, destination: str | None = None) -> list[dict[str, Any]]:
        """Events a destination gave up on (``state`` dead, or retry once sent back)."""
        sql = queries.dead_letters("%s", bool(destination))
        with self._lock, self._errors("read dead letters"):
            rows = self._db.execute(sql, (destination,) if destination else ()).fetchall()
        return [dict(zip(queries.DEAD_FIELDS, row, strict=True)) for row in rows]

    def retry_dead_letters(self, destination: str | None = None) -> int:
        """Send dead letters (of ``destination`` if given) back to their publisher; how many."""
        if self.readonly:
            raise StoreError(f"the store {self} is open read-only")
        where, params = (" AND destination = %s", (destination,)) if destination else ("", ())
        with self._lock, self._errors("retry dead letters"), self._db.transaction():
            return self._db.execute(
                f"UPDATE outbox_dead SET state = 'retry' WHERE state = 'dead'{where}",
                params).rowcount

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self._closed = True
        self._drop()
