"""The master's durable job state: one SQLite row per job and cycle.

States: ``pending`` (waiting for a lease; after a failed attempt, not before its
``not_before`` time: the retry's backoff, kept as data), ``leased`` (sent to a worker, with a
deadline and attempt number), ``done`` (the sink stored it and acknowledged) and
``failed`` (attempts used up or a permanent error, with the last error). Cycles
are expanded from the plan in batches, so memory stays bounded for huge plans.
The master batches its writes in one transaction per tick; other processes read
the same file safely (``voe status``), and write it only while no master runs (``voe
failed retry``, which otherwise asks the running master).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from voe.dbfile import create_atomically
from voe.master.ledgerreads import LedgerReads
from voe.master.ledgerwrites import LedgerWrites
from voe.master.observations import OBSERVATIONS_TABLE, LedgerObservations
from voe.model import SearchJob
from voe.sqlrows import insert_rows

PENDING, LEASED, DONE, FAILED = "pending", "leased", "done", "failed"
STATES = (PENDING, LEASED, DONE, FAILED)
SCHEMA_VERSION = 6
# How long a writer waits for another process's lock before giving up.
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cycles (
    cycle INTEGER PRIMARY KEY,
    plan_name TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    start_date TEXT NOT NULL,
    started_at REAL NOT NULL,
    total INTEGER NOT NULL,
    expanded INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    cycle INTEGER NOT NULL,
    id TEXT NOT NULL,
    backend TEXT NOT NULL,
    origin TEXT NOT NULL,
    destination TEXT NOT NULL,
    date TEXT NOT NULL,
    return_date TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempt INTEGER NOT NULL DEFAULT 0,
    deadline REAL,
    worker TEXT,
    last_error TEXT,
    updated_at REAL,
    not_before REAL,
    options TEXT NOT NULL DEFAULT '',
    legs TEXT NOT NULL DEFAULT '',
    UNIQUE (cycle, id)
);
-- Partial indexes: a job moving from leased to done touches no index at all.
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_failed ON jobs (cycle, seq) WHERE state = 'failed';
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY,
    concurrency INTEGER NOT NULL,
    prefetch INTEGER NOT NULL,
    held INTEGER NOT NULL,
    max_held INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    last_seen REAL NOT NULL,
    alive INTEGER NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    errors INTEGER NOT NULL DEFAULT 0,
    identities TEXT NOT NULL DEFAULT '[]'
);
""" + OBSERVATIONS_TABLE + ";"
# Columns added to the workers table since schema version 1, as ALTER TABLE adds them
# (version 2: address and errors; version 3: identities, a JSON list per route).
_WORKER_COLUMNS_ADDED = {"address": "TEXT NOT NULL DEFAULT ''",
                         "errors": "INTEGER NOT NULL DEFAULT 0",
                         "identities": "TEXT NOT NULL DEFAULT '[]'"}
_WORKER_COLUMNS = ("worker", "concurrency", "prefetch", "held", "max_held", "finished",
                   "last_seen", "alive", "address", "errors", "identities")
# Columns added to the jobs table since (version 4: not_before, when a retry is due;
# version 5: options, the search's options as text, and legs, a multi-city trip's).
_JOB_COLUMNS_ADDED = {"not_before": "REAL", "options": "TEXT NOT NULL DEFAULT ''",
                      "legs": "TEXT NOT NULL DEFAULT ''"}
# Keys of one route's entry in the workers' identities column.
_ROUTE_KEYS = ("route", "blocks", "jobs", "retired")


def identities_json(routes: Iterable[tuple[str, int, int, int]]) -> str:
    """The workers' identities column: [{"route", "blocks", "jobs", "retired"}, ...]."""
    return json.dumps([dict(zip(_ROUTE_KEYS, route, strict=True)) for route in routes])


class LedgerError(Exception):
    """The ledger cannot be opened or read; the message is meant for the user."""


@dataclass(frozen=True, slots=True)
class Cycle:
    """One pass over the plan."""

    cycle: int
    plan_name: str
    plan_digest: str
    start_date: str
    started_at: float
    total: int
    expanded: int
    max_attempts: int
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A leased job as the ledger remembers it."""

    job: SearchJob
    deadline: float
    worker: str | None


def _job(row: sqlite3.Row | tuple) -> SearchJob:
    cycle, job_id, backend, origin, destination, date, return_date, attempt, options, legs = row
    return SearchJob(job_id, cycle, attempt, backend, origin, destination, date, return_date,
                     options, legs)


_JOB_COLUMNS = ("cycle, id, backend, origin, destination, date, return_date, attempt, options,"
                " legs")


class Ledger(LedgerReads, LedgerWrites, LedgerObservations):
    """The job ledger in ``path`` (created on first use unless ``readonly``)."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.seqs = {}
        if readonly and not self.path.is_file():
            raise LedgerError(f"no ledger at {self.path} (has a master run here?)")
        try:
            if not readonly:
                create_atomically(self.path, _SCHEMA, SCHEMA_VERSION)
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                      isolation_level=None, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                # WAL with synchronous=NORMAL survives a killed process, our guarantee.
                self.db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"cannot open the ledger {self.path}: {error}") from None

    def _migrate(self) -> None:
        """Bring a ledger of an older schema version up to this one (once, in a transaction)."""
        if self.db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self.transaction():  # looked at again: another process may have migrated it
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            present = {row[1] for row in self.db.execute("PRAGMA table_info(workers)")}
            for name, definition in _WORKER_COLUMNS_ADDED.items():
                if name not in present:
                    self.db.execute(f"ALTER TABLE workers ADD COLUMN {name} {definition}")
            present = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
            for name, definition in _JOB_COLUMNS_ADDED.items():
                if name not in present:
                    self.db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
            self.db.execute(OBSERVATIONS_TABLE)  # version 6
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction (the master's batching unit)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # Cycles -----------------------------------------------------------------

    def latest_cycle(self) -> Cycle | None:
        """The most recent cycle, or None before the first."""
        row = self.db.execute("SELECT * FROM cycles ORDER BY cycle DESC LIMIT 1").fetchone()
        return Cycle(*row) if row else None

    def open_cycles(self) -> list[Cycle]:
        """Cycles not yet finished, oldest first."""
        rows = self.db.execute(
            "SELECT * FROM cycles WHERE finished_at IS NULL ORDER BY cycle").fetchall()
        return [Cycle(*row) for row in rows]

    def start_cycle(self, plan_name: str, plan_digest: str, start_date: str, total: int,
                    max_attempts: int, now: float | None = None) -> Cycle:
        """Record a new cycle started at ``now`` (wall time) and return it (jobs are added
        later by ``add_jobs``)."""
        now = time.time() if now is None else now
        with self.transaction():
            row = self.db.execute("SELECT COALESCE(MAX(cycle), 0) + 1 FROM cycles").fetchone()
            self.db.execute(
                "INSERT INTO cycles (cycle, plan_name, plan_digest, start_date, started_at, "
                "total, expanded, max_attempts) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                (row[0], plan_name, plan_digest, start_date, now, total, max_attempts))
        cycle = self.latest_cycle()
        assert cycle is not None
        return cycle

    def add_jobs(self, cycle: int, jobs: Iterable[SearchJob],
                 expanded: int) -> list[SearchJob] | None:
        """Insert a batch of a cycle's jobs as pending and record how far expansion got.

        Returns the jobs as ``take_pending`` would read them back, their row numbers
        remembered, when every one was new (the usual batch); None when some were in the
        ledger already (a batch expanded again after a restart): read them back then."""
        batch = list(jobs)
        with self.transaction():
            before = self.db.total_changes
            insert_rows(self.db, "INSERT OR IGNORE INTO jobs (cycle, id, backend, origin, "
                        "destination, date, return_date, options, legs) VALUES (?, ?, ?, ?, ?, ?,"
                        " ?, ?, ?)", [(cycle, j.id, j.backend, j.origin, j.destination, j.date,
                                      j.return_date, j.options, j.legs) for j in batch])
            fresh = self._fresh(cycle, batch, self.db.total_changes - before)
            self.db.execute("UPDATE cycles SET expanded = ? WHERE cycle = ?", (expanded, cycle))
        return fresh

    def _fresh(self, cycle: int, batch: list[SearchJob], inserted: int) -> list[SearchJob] | None:
        """``batch`` as pending jobs of ``cycle`` with their row numbers remembered, if all of
        it was just inserted: SQLite numbers new rows one after the largest, so theirs are the
        last ``len(batch)`` numbers (checked at both ends)."""
        if not batch or inserted != len(batch):
            return None
        last = self.db.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(batch) + 1
        ends = dict(self.db.execute("SELECT seq, id FROM jobs WHERE seq IN (?, ?)",
                                    (first, last)))
        if ends.get(first) != batch[0].id or ends.get(last) != batch[-1].id:
            return None
        pending = [job if job.cycle == cycle and job.attempt == 0
                   else job._replace(cycle=cycle, attempt=0) for job in batch]
        self.seqs.update(zip([(cycle, job.id) for job in pending], range(first, last + 1),
                             strict=True))
        return pending

    def add_found(self, batches: Iterable[list[SearchJob]], now: float | None = None) -> None:
        """Insert jobs found while collecting (a calendar's cheapest days to search in full)
        as pending, each once, in the caller's transaction; the plan's expansion of their
        cycle is untouched."""
        self.db.executemany(
            "INSERT OR IGNORE INTO jobs (cycle, id, backend, origin, destination, date, "
            "return_date, options, legs, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((j.cycle, j.id, j.backend, j.origin, j.destination, j.date, j.return_date,
              j.options, j.legs, now) for batch in batches for j in batch))

    def close_expansion(self, cycle: int) -> None:
        """Stop expanding ``cycle``: its total becomes the jobs it already holds."""
        with self.transaction():
            count = self.db.execute("SELECT COUNT(*) FROM jobs WHERE cycle = ?",
                                    (cycle,)).fetchone()[0]
            self.db.execute("UPDATE cycles SET total = ?, expanded = ? WHERE cycle = ?",
                            (count, count, cycle))

    def finish_cycle(self, cycle: int) -> None:
        """Mark ``cycle`` finished (every job done or failed)."""
        self.db.execute("UPDATE cycles SET finished_at = ? WHERE cycle = ?", (time.time(), cycle))

    def has_pending(self, cycle: int) -> bool:
        """Whether ``cycle`` still has jobs waiting for a lease (leases the master knows)."""
        row = self.db.execute(
            "SELECT 1 FROM jobs INDEXED BY jobs_pending WHERE state = 'pending' AND cycle = ? "
            "LIMIT 1", (cycle,)).fetchone()
        return row is not None

    # Jobs -------------------------------------------------------------------

    def take_pending(self, limit: int, now: float | None = None,
                     horizon: float = 0.0) -> list[SearchJob]:
        """Up to ``limit`` pending jobs due at ``now`` (wall time), oldest first; they stay
        pending until leased. A retry due more than ``horizon`` seconds ahead (further than
        any backoff: the clock stepped back) counts as due."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            f"SELECT seq, {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_pending WHERE state = "
            "'pending' AND (not_before IS NULL OR not_before <= ? OR not_before > ?) ORDER BY seq "
            "LIMIT ?", (now, now + horizon, limit)).fetchall()
        self.remember(rows)
        return [_job(row[1:]) for row in rows]

    def next_retry(self) -> float | None:
        """The wall time the earliest waiting retry is due, or None when none waits."""
        row = self.db.execute("SELECT MIN(not_before) FROM jobs INDEXED BY jobs_pending "
                              "WHERE state = 'pending'").fetchone()
        return row[0]

    def leases(self) -> list[Lease]:
        """Every job currently leased (used by a restarted master)."""
        rows = self.db.execute(f"SELECT seq, {_JOB_COLUMNS}, deadline, worker FROM jobs"
                               " WHERE state = 'leased'").fetchall()
        self.remember(rows)
        return [Lease(_job(row[1:11]), row[11] or 0.0, row[12]) for row in rows]

    def retry_failed(self, cycle: int | None = None, job_id: str | None = None,
                     now: float | None = None) -> int:
        """Send failed jobs (all, of one cycle, or one job of it) back to pending with fresh
        attempts at ``now``; return how many."""
        now = time.time() if now is None else now
        where, params = "state = 'failed'", [now]
        if cycle is not None:
            where, params = where + " AND cycle = ?", [now, cycle]
            if job_id is not None:
                where, params = where + " AND id = ?", [now, cycle, job_id]
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE jobs SET state = 'pending', attempt = 0, deadline = NULL, worker = NULL, "
                f"not_before = NULL, updated_at = ? WHERE {where}", params)
            self.db.execute(
                "UPDATE cycles SET finished_at = NULL WHERE cycle IN "
                "(SELECT DISTINCT cycle FROM jobs WHERE state = 'pending')")
        return cursor.rowcount

    def counts(self, cycle: int) -> dict[str, int]:
        """Jobs of ``cycle`` by state; jobs not yet expanded count as pending."""
        counts = dict.fromkeys(STATES, 0)
        for state, count in self.db.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE cycle = ? GROUP BY state", (cycle,)):
            counts[state] = count
        row = self.db.execute("SELECT total, expanded FROM cycles WHERE cycle = ?",
                              (cycle,)).fetchone()
        if row:
            counts[PENDING] += max(0, row[0] - row[1])
        return counts

    def waiting_to_retry(self, cycle: int | None = None, now: float | None = None) -> int:
        """Pending jobs (of ``cycle``, or all) whose retry is not due yet at ``now``."""
        now = time.time() if now is None else now
        where, params = "state = 'pending' AND not_before > ?", [now]
        if cycle is not None:
            where, params = where + " AND cycle = ?", [now, cycle]
        return self.db.execute(f"SELECT COUNT(*) FROM jobs INDEXED BY jobs_pending WHERE {where}",
                               params).fetchone()[0]

    # Workers (a status snapshot written by the master) -----------------------

    def save_workers(self, rows: Iterable[tuple]) -> None:
        """Replace the snapshot of workers (name, concurrency, prefetch, held, max_held,
        finished, last_seen, alive, address, errors[, identities as ``identities_json``];
        a row without identities saves none)."""
        self.db.execute("DELETE FROM workers")
        self.db.executemany(
            f"INSERT OR REPLACE INTO workers ({', '.join(_WORKER_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_WORKER_COLUMNS))})",
            (row if len(row) == len(_WORKER_COLUMNS) else (*row, "[]") for row in rows))






