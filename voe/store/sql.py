"""What both SQL stores do alike: every query, transaction, lock and error, written once.

A store of a dialect (``SqliteStore``, ``PostgresStore``) gives the pieces its database
spells its own way (placeholder, numeric order of prices, the row order column) and the
few operations it does differently: opening a connection, a write transaction (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), a read snapshot, many rows at once (many
a statement, COPY) and a stream of fares on a connection of its own.

Every call holds the store's lock while it uses the connection, reads as well as writes,
so one store object may move between threads. Every driver error becomes a ``StoreError``
naming the store and what it was doing; one that passes by itself is ``StoreUnavailable``
and drops the connection, so the next call starts from a fresh one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from voe.answers import answer_digest
from voe.model import RESULT_STATUSES, Result
from voe.store import queries, schema
from voe.store.base import DONE, FARE_FIELDS, Closing, Saved, StoreError, StoreUnavailable
from voe.store.outboxsql import OutboxQueries
from voe.store.rows import (
    EVENTS_PAUSED,
    LATEST_FARES,
    PAUSE_EVENTS,
    RESUME_EVENTS,
    acknowledgements,
    check_statuses,
    decode_prices,
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
from voe.store.yieldsql import YieldQueries

OUTCOME_FIELDS = ("cycle", "job_id", "attempt", "worker", "status", "duration", "error", "at")


def _or_own(answer: int | None, result: Result) -> int:
    """A stored answer's digest, or (none kept) that of ``result``'s own answer."""
    return answer_digest(result.fares) if answer is None else answer


class SqlStore(OutboxQueries, YieldQueries, Closing):
    """The ``Store`` contract over a dialect's hooks (the methods that raise here)."""

    dialect: schema.Dialect
    mark: str
    """The parameter placeholder: ``?`` or ``%s``."""
    by_price: str
    """Orders prices as numbers (then as text, for equal numbers)."""
    row_order: str
    """The column that keeps the order rows were inserted in."""
    same: str
    """Compares two values equal when both are NULL."""
    any_job: str
    """``job_id`` among a list of job ids, one parameter (see ``_job_list``)."""
    driver_error: type[Exception] | tuple[type[Exception], ...] = ()

    def __init__(self, name: str, readonly: bool) -> None:
        """``name`` is how errors name the store."""
        self.name = name
        self.readonly = readonly
        self.fares_written = 0
        self.events = True  # outbox events with each save (see keep_events)
        self._lock = threading.Lock()
        self._conn: Any = None  # None: opened on the next call
        self._closed = False

    # What each dialect does its own way ----------------------------------------------

    def _open(self) -> None:
        """Open ``self._conn`` (``StoreUnavailable`` while it cannot)."""
        raise NotImplementedError

    def _lost(self) -> bool:
        """Whether the open connection was lost meanwhile (the driver noticed)."""
        return False

    def _transaction(self, write: bool) -> AbstractContextManager[Any]:
        """One transaction on the connection: a write one holds the store's write lock, a
        read one sees one snapshot. Commits on success, rolls back on any exception."""
        raise NotImplementedError

    def _many(self, db: Any, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run ``sql`` once per row."""
        raise NotImplementedError

    def _insert(self, db: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with ``sql`` (one row's INSERT); by default ``_many``."""
        self._many(db, sql, rows)

    def _insert_fares(self, db: Any, fresh: Sequence[Result]) -> int:
        """Insert the fares of ``fresh``; return how many."""
        raise NotImplementedError

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """Yield the rows of ``sql`` a batch at a time, on a connection of its own."""
        raise NotImplementedError

    def _job_list(self, jobs: list[str]) -> Any:
        """The one parameter ``any_job`` takes for ``jobs``."""
        raise NotImplementedError

    def _version(self) -> int:
        """The store's schema version, 0 without the schema."""
        raise NotImplementedError

    def _record(self, db: Any, applied: list[int]) -> None:
        """Record that the migrations numbered ``applied`` ran (maybe none)."""
        raise NotImplementedError

    def _reason(self, error: Exception) -> str:
        """The driver's own short words for ``error``, fit for a log."""
        return str(error)

    def _passing_kind(self, error: Exception) -> str | None:
        """The kind of a driver error that passes by itself, or None when it is fatal."""
        raise NotImplementedError

    # Connection, errors, locking --------------------------------------------------------

    @property
    def _db(self) -> Any:
        if self._closed:
            raise StoreError(f"the store {self.name} is closed")
        if self._conn is None or self._lost():
            self._drop()
            self._open()
        return self._conn

    def _drop(self) -> None:
        """Close the connection; the next call opens a fresh one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def reconnect(self) -> None:
        """Replace the connection with a fresh one; ``StoreUnavailable`` while it cannot open."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.name} is closed")
            self._drop()
            self._open()

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self._closed = True
        self._drop()

    def _store_error(self, doing: str, error: Exception) -> StoreError:
        """``StoreUnavailable`` for an error that passes, else a plain (fatal) ``StoreError``."""
        reason = self._reason(error)
        message = f"cannot {doing} in the store {self.name}: {reason}"
        kind = self._passing_kind(error)
        return StoreError(message) if kind is None else StoreUnavailable(message, kind, reason)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn the driver's errors into ``StoreError`` naming the store and the operation."""
        try:
            yield
        except self.driver_error as error:
            failure = self._store_error(doing, error)
            if isinstance(failure, StoreUnavailable):
                self._drop()
            raise failure from error

    @contextmanager
    def _read(self, doing: str, snapshot: bool = False) -> Iterator[Any]:
        """The connection under the store's lock (in one read snapshot if asked)."""
        with self._lock, self._errors(doing):
            if not snapshot:
                yield self._db
                return
            with self._transaction(write=False) as db:
                yield db

    @contextmanager
    def _write(self, doing: str) -> Iterator[Any]:
        """One write transaction under the store's lock; a read-only store refuses."""
        if self.readonly:
            raise StoreError(f"the store {self.name} is open read-only")
        with self._lock, self._errors(doing), self._transaction(write=True) as db:
            yield db

    def _one(self, doing: str, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._read(doing) as db:
            return db.execute(sql, params).fetchone()[0]

    def _all(self, doing: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._read(doing) as db:
            return db.execute(sql, params).fetchall()

    # The schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Create the schema or bring it to ``SCHEMA_VERSION``, in one write transaction."""
        with self._transaction(write=True) as db:
            applied, fill = [], False
            for number, steps, fills in schema.pending(self._version(), self.dialect, self.name):
                for statement in steps:
                    db.execute(statement)
                fill = fill or fills
                applied.append(number)
            if fill:  # once every column it reads exists
                self._many(db, self._upsert_prices,
                           last_prices_rows(db.execute(LATEST_FARES).fetchall()))
            self._record(db, applied)

    def _empty(self) -> StoreError | None:
        """What a report opening a store without the schema raises (None: ``NoStore``)."""
        return None

    def _check_version(self) -> None:
        """Refuse a store without the schema of this version (reports never migrate)."""
        schema.check_readable(self._version(), self.name, self._empty())

    # Saving -------------------------------------------------------------------------------

    @property
    def _upsert_prices(self) -> str:
        return queries.upsert_prices(self.mark)

    def save(self, results: Sequence[Result]) -> list[str]:
        """Record every attempt and store each job's fares once per cycle; ack after commit.

        Returns, per result, ``"done"`` if its job's fares of that cycle are stored once
        the batch is committed (by this batch or an earlier one), else its status.
        Raises ``ValueError`` for an unknown status (nothing is stored then).
        """
        return [status for status, _ in self.save_answers(results)]

    def save_answers(self, results: Sequence[Result]) -> list[Saved]:
        """``save``, each status with the digest (``voe.answers``) of the answer stored for a
        done result: its own when this batch stores it, the one stored first for a repeat
        (its own if that was stored before the store kept digests); None if not done."""
        check_statuses(results)
        if not results:
            return []
        now = time.time()
        mark = self.mark
        with self._write("save results") as db:
            answers = self._stored_answers(db, {(r.job.cycle, r.job.id) for r in results})
            stored = set(answers)
            refused = refused_results(results)
            if refused:  # counted once per attempt: only those whose outcome is new
                known = self._stored_outcomes(db, {outcome_key(r) for r in refused})
                refused = [r for r in refused if outcome_key(r) not in known]
            self._insert(db, queries.insert_outcome(mark), [outcome_row(r, now) for r in results])
            fresh = new_results(results, stored)
            fares = 0
            if fresh:
                answers.update(((r.job.cycle, r.job.id), answer_digest(r.fares)) for r in fresh)
                self._insert(db, queries.insert_result(mark),
                             [result_row(r, now, answers[r.job.cycle, r.job.id]) for r in fresh])
                fares = self._insert_fares(db, fresh)
            counts = field_count_rows((*fresh, *refused))
            if counts:
                self._many(db, queries.add_field_counts(mark), counts)
            if fresh and self.events:
                events, prices = outbox_rows(fresh, self._last_prices(db, fresh), now)
                self._many(db, queries.insert_event(mark), events)
                self._many(db, self._upsert_prices, prices)
        self.fares_written += fares
        return [(status, None if status != DONE else
                 _or_own(answers.get((r.job.cycle, r.job.id)), r))
                for r, status in zip(results, acknowledgements(results, stored), strict=True)]

    def keep_events(self, on: bool) -> None:
        """Write outbox events with each save, or not (a sink with no destination to publish to).

        Off skips the events and the prices they compare, a third of a save's cost; on
        again, ``last_prices`` is first refreshed from the fares stored meanwhile.
        """
        with self._write("switch events") as db:
            if not on:
                db.execute(PAUSE_EVENTS.format(mark=self.mark), (time.time(),))
            elif db.execute(EVENTS_PAUSED).fetchone() is not None:
                self._many(db, self._upsert_prices,
                           last_prices_rows(db.execute(LATEST_FARES).fetchall()))
                db.execute(RESUME_EVENTS)
        self.events = on

    def _last_prices(self, db: Any, fresh: Sequence[Result]
                     ) -> dict[str, tuple[int, dict[str, str]]]:
        """The latest stored cycle and prices of each job of ``fresh``: one indexed query."""
        rows = db.execute(f"SELECT job_id, cycle, prices FROM last_prices WHERE {self.any_job}",
                          (self._job_list(sorted({result.job.id for result in fresh})),))
        return {job: (cycle, decode_prices(prices)) for job, cycle, prices in rows}

    def _stored_answers(self, db: Any, keys: Iterable[tuple[int, str]]
                        ) -> dict[tuple[int, str], int | None]:
        """Which of ``keys`` already have their fares stored, with their answers' digests
        (None: stored before the store kept them); one query per cycle."""
        stored: dict[tuple[int, str], int | None] = {}
        for cycle, jobs in jobs_by_cycle(keys).items():
            rows = db.execute(f"SELECT job_id, answer FROM results WHERE cycle = {self.mark}"
                              f" AND {self.any_job}", (cycle, self._job_list(jobs)))
            stored.update(((cycle, job), answer) for job, answer in rows)
        return stored

    def _stored_outcomes(self, db: Any, keys: set[tuple[int, str, int, str]]
                         ) -> set[tuple[int, str, int, str]]:
        """Return which of ``keys`` (``outcome_key``) have their outcome stored already."""
        found: set[tuple[int, str, int, str]] = set()
        for cycle, jobs in jobs_by_cycle(keys).items():
            rows = db.execute(f"SELECT job_id, attempt, worker FROM outcomes WHERE cycle ="
                              f" {self.mark} AND {self.any_job}", (cycle, self._job_list(jobs)))
            found.update((cycle, job, attempt, worker) for job, attempt, worker in rows)
        return found & keys

    # Reading ----------------------------------------------------------------------------

    def fare_count(self, cycle: int | None = None) -> int:
        """Return how many fares are stored (in ``cycle`` only, when given)."""
        if cycle is None:
            return self._one("count fares", "SELECT COUNT(*) FROM fares")
        return self._one("count fares", queries.fares_of_cycle(self.mark), (cycle,))

    def result_count(self) -> int:
        """Return how many (cycle, job) pairs have their fares stored."""
        return self._one("count results", "SELECT COUNT(*) FROM results")

    def counts(self) -> dict[str, Any]:
        """Return fares, stored jobs and outcomes by status, read from one snapshot."""
        with self._read("count", snapshot=True) as db:
            fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
            stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            by_status = dict.fromkeys(RESULT_STATUSES, 0)
            for status, count in db.execute("SELECT status, COUNT(*) FROM outcomes GROUP BY 1"):
                by_status[status] = count
        return {"fares": fares, "results": stored, "outcomes": by_status}

    def iter_fares(self, cycle: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield stored fares (of ``cycle`` if given) by cycle, job id and decimal price.

        The fares come a batch at a time on a connection of their own (an export of
        millions stays small), so the store's connection and lock stay free meanwhile.
        """
        where, params = (f"WHERE cycle = {self.mark}", (cycle,)) if cycle is not None else ("", ())
        sql = (f"SELECT {queries.COLUMNS} FROM fares {where}"
               f" ORDER BY cycle, job_id, {self.by_price}, {self.row_order}")
        if self._closed:
            raise StoreError(f"the store {self.name} is closed")
        with self._errors("read fares"):
            for row in self._stream(sql, params):
                yield dict(zip(FARE_FIELDS, row, strict=True))

    def cheapest(self, cycle: int | None = None) -> list[dict[str, Any]]:
        """Return the cheapest fare per (origin, destination, date, return date, options).

        With ``cycle`` only that cycle counts; without, each route's latest cycle with fares.
        Prices are compared as numbers and returned as the stored decimal strings.
        """
        if cycle is not None:
            chosen, params = f"SELECT * FROM fares WHERE cycle = {self.mark}", (cycle,)
        else:
            chosen, params = queries.latest_per_route(self.same), ()
        rows = self._all("find the cheapest fares", queries.cheapest(chosen, self.by_price),
                         params)
        return [dict(zip(FARE_FIELDS, row, strict=True)) for row in rows]

    def price_history(self, origin: str, destination: str,
                      date: str | None = None) -> list[dict[str, Any]]:
        """Return a route's cheapest fare per cycle and dates (of ``date`` if given)."""
        sql = queries.price_history(self.by_price, self.mark, date is not None)
        params = (origin, destination) if date is None else (origin, destination, date)
        rows = self._all("read the price history", sql, params)
        return [dict(zip(FARE_FIELDS, row, strict=True)) for row in rows]

    def stored_jobs(self, cycle: int) -> dict[str, tuple[int | None, int]]:
        """Per job of ``cycle`` with a marker or fares: (fares it recorded or None, fare rows)."""
        markers = f"SELECT job_id, fare_count FROM results WHERE cycle = {self.mark}"
        rows = f"SELECT job_id, COUNT(*) FROM fares WHERE cycle = {self.mark} GROUP BY job_id"
        with self._read("audit stored jobs", snapshot=True) as db:
            found: dict[str, tuple[int | None, int]] = {
                job: (count, 0) for job, count in db.execute(markers, (cycle,))}
            for job, count in db.execute(rows, (cycle,)):
                found[job] = (found.get(job, (None, 0))[0], count)
        return found

    def outcomes(self, cycle: int, job_id: str) -> list[dict[str, Any]]:
        """Return the recorded outcome of every attempt of one job in one cycle, oldest first."""
        sql = (f"SELECT {', '.join(OUTCOME_FIELDS)} FROM outcomes WHERE cycle = {self.mark}"
               f" AND job_id = {self.mark} ORDER BY attempt, {self.row_order}")
        rows = self._all("read outcomes", sql, (cycle, job_id))
        return [dict(zip(OUTCOME_FIELDS, row, strict=True)) for row in rows]
