"""What ``voe status``, ``voe check``, ``voe failed`` and the dashboard read from the ledger.

The ledger's schema and every write are ``voe.master.ledger``'s; this is its read side,
mixed into ``Ledger`` (it needs only its connection, ``db``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time

log = logging.getLogger("voe.ledger")
# The keys of a job as ``jobs`` and ``retries`` list it.
_LISTED = ("cycle", "job_id", "backend", "origin", "destination", "date", "return_date",
           "state", "attempt", "worker", "error", "updated_at", "not_before", "options", "legs")


def _identities(text: object) -> list[dict]:
    """The identities column read back; anything unreadable shows as none (and is logged)."""
    try:
        routes = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        log.warning("unreadable identities in the workers table: %r", str(text)[:80])
        return []
    if not isinstance(routes, list):
        return []
    return [route for route in routes if isinstance(route, dict)]


class LedgerReads:
    """The ledger's reports: dead letters, pages of jobs, workers, overdue leases, retries."""

    db: sqlite3.Connection

    def failed(self, limit: int = 1000) -> list[dict]:
        """Failed jobs (dead letters) with their last error, newest cycle first."""
        rows = self.db.execute(
            "SELECT cycle, id, attempt, last_error, updated_at FROM jobs WHERE state = 'failed' "
            "ORDER BY cycle DESC, seq LIMIT ?", (limit,)).fetchall()
        return [dict(zip(("cycle", "job_id", "attempts", "error", "at"), row, strict=True))
                for row in rows]

    def jobs(self, state: str | None = None, cycle: int | None = None, limit: int = 50,
             offset: int = 0) -> tuple[int, list[dict]]:
        """A page of jobs (of one state and cycle, or all), newest cycle first, with the
        total that match: what the control API lists."""
        clauses = [clause for clause, value in (("state = ?", state), ("cycle = ?", cycle))
                   if value is not None]
        params = [value for value in (state, cycle) if value is not None]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM jobs {where}", params).fetchone()[0]
        cursor = self.db.execute(
            f"SELECT {self._listed()} FROM jobs {where} "
            "ORDER BY cycle DESC, seq LIMIT ? OFFSET ?", [*params, limit, offset])
        return total, [dict(zip(_LISTED, row, strict=True)) for row in cursor.fetchall()]

    def _listed(self) -> str:
        """The columns of a listed job (``_LISTED``); a ledger a reader sees before its
        master migrated it (version 4) lists every job without options nor legs."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        added = ", ".join(name if name in columns else f"'' AS {name}"
                          for name in ("options", "legs"))
        return ("cycle, id, backend, origin, destination, date, return_date, state, attempt, "
                f"worker, last_error, updated_at, not_before, {added}")

    def routes(self, cycle: int) -> list[tuple[str, str]]:
        """The distinct (origin, destination) pairs searched in ``cycle``."""
        return [tuple(row) for row in self.db.execute(
            "SELECT DISTINCT origin, destination FROM jobs WHERE cycle = ? ORDER BY 1, 2",
            (cycle,))]

    def job(self, cycle: int, job_id: str) -> dict | None:
        """One job's ledger row as a dict (for status and tests)."""
        cursor = self.db.execute("SELECT * FROM jobs WHERE cycle = ? AND id = ?", (cycle, job_id))
        row = cursor.fetchone()
        return dict(zip([c[0] for c in cursor.description], row, strict=True)) if row else None

    def workers(self) -> list[dict]:
        """The last snapshot of workers the master wrote, ``identities`` read as a list (an
        older ledger, read-only and not yet migrated, shows no address, errors, identities)."""
        cursor = self.db.execute("SELECT * FROM workers ORDER BY worker")
        names = [c[0] for c in cursor.description]
        missing = {name: default for name, default in (("address", ""), ("errors", 0))
                   if name not in names}
        workers = [dict(zip(names, row, strict=True)) | missing for row in cursor.fetchall()]
        for worker in workers:
            worker["identities"] = _identities(worker.get("identities", "[]"))
        return workers

    # Health (what voe check and voe status report) ---
    # An overdue lease (two parameters: the wall time a deadline must be before, the one a
    # lease must be taken after): a deadline long past, or a lease taken in the future.
    _OVERDUE = ("state = 'leased' AND (COALESCE(deadline, 0) < ? "
                "OR COALESCE(updated_at, 0) > ?)")

    def overdue_counts(self, grace: float, now: float | None = None) -> dict[int, dict[str, int]]:
        """Overdue leases per cycle at ``now`` (wall time), as {"past": n, "ahead": n}: past
        their deadline by more than ``grace`` seconds, or taken more than ``grace`` seconds
        after ``now`` (the clock stepped back since, so a deadline compared on it would wait)."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT cycle, COUNT(*), SUM(COALESCE(updated_at, 0) > ?) FROM jobs "
            f"WHERE {self._OVERDUE} GROUP BY cycle", (now + grace, now - grace, now + grace))
        return {cycle: {"past": count - ahead, "ahead": ahead} for cycle, count, ahead in rows}

    def overdue_leases(self, grace: float, now: float | None = None,
                       limit: int = 5) -> list[dict]:
        """Up to ``limit`` overdue leases (as ``overdue_counts`` counts them), the longest
        overdue first: cycle, job_id, worker, deadline, leased_at and either ``past`` (seconds
        since the deadline) or ``ahead`` (seconds the lease was taken after ``now``)."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            f"SELECT cycle, id, worker, deadline, updated_at FROM jobs WHERE {self._OVERDUE} "
            "ORDER BY MAX(? - COALESCE(deadline, 0), COALESCE(updated_at, 0) - ?) DESC, seq "
            "LIMIT ?", (now - grace, now + grace, now, now, limit)).fetchall()
        leases = []
        for cycle, job_id, worker, deadline, leased_at in rows:
            lease = {"cycle": cycle, "job_id": job_id, "worker": worker, "deadline": deadline,
                     "leased_at": leased_at}
            if leased_at is not None and leased_at > now + grace:
                lease["ahead"] = round(leased_at - now, 1)
            else:  # a lease without a deadline is taken back at once: overdue since ever
                lease["past"] = round(now - (deadline or 0.0), 1)
            leases.append(lease)
        return leases

    def has_retry_times(self) -> bool:
        """Whether jobs carry retry times (``not_before``): a ledger older than schema 4, read
        as it is while an older master runs, has none, so none of its jobs waits to retry."""
        return any(row[1] == "not_before" for row in self.db.execute("PRAGMA table_info(jobs)"))

    def retries(self, cycle: int | None = None, now: float | None = None,
                limit: int = 5) -> list[dict]:
        """Up to ``limit`` pending jobs (of ``cycle``, or all) whose retry is not due yet at
        ``now``, the soonest first, as ``jobs`` gives them plus ``due_in`` (seconds)."""
        now = time.time() if now is None else now
        where, params = "state = 'pending' AND not_before > ?", [now]
        if cycle is not None:
            where, params = where + " AND cycle = ?", [now, cycle]
        cursor = self.db.execute(
            f"SELECT {self._listed()} FROM jobs INDEXED BY jobs_pending "
            f"WHERE {where} ORDER BY not_before, seq LIMIT ?", [*params, limit])
        jobs = [dict(zip(_LISTED, row, strict=True)) for row in cursor.fetchall()]
        for job in jobs:
            job["due_in"] = round(job["not_before"] - now, 1)
        return jobs
