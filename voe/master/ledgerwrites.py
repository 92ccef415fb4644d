"""The master's batched job-state writes: one UPDATE per group of equal values, by row number.

A ledger flush changes hundreds of jobs' states. One UPDATE per job pays, for every job,
what SQLite and Python's driver charge per statement row: binding, a search of the
``(cycle, id)`` index, the interpreter's lock dropped and taken around each step. Jobs
the ledger added or handed out itself (``add_jobs``, ``take_pending``, ``leases``) have
their row number (``seq``) remembered until they are done or failed, so their changes
go as one UPDATE per group of equal values, the row numbers as one JSON array
(``json_each``), about a third of the cost. A job not
remembered (one a worker re-announced to a restarted master) is written by
``(cycle, id)``, row by row, after the groups, so a later change of a job always wins.

Mixed into ``Ledger`` (it needs only its connection, ``db``); the master's loop is the
only writer of job states while it runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

Key = tuple[int, str]

_BY_KEY = "cycle = ? AND id = ?"
_BY_SEQ = "seq IN (SELECT value FROM json_each(?))"


def _update(assign: str, guard: str, where: str) -> str:
    """An UPDATE of job rows: ``assign`` (then ``updated_at``) where ``where`` and ``guard``."""
    return f"UPDATE jobs SET {assign}, updated_at = ? WHERE {where} AND {guard}"


class LedgerWrites:
    """State changes of jobs, as ``(values..., cycle, id)`` rows, in the caller's transaction."""

    db: sqlite3.Connection
    # Row numbers of jobs handed out and not yet done or failed, by (cycle, id).
    seqs: dict[Key, int]

    def remember(self, rows: Iterable[Sequence[Any]]) -> None:
        """Note the row numbers of ``(seq, cycle, id, ...)`` rows read from the jobs table."""
        self.seqs.update(((row[1], row[2]), row[0]) for row in rows)

    def _write(self, assign: str, guard: str, rows: Iterable[Sequence[Any]],
               now: float | None, final: bool) -> None:
        """Apply ``rows`` (values for ``assign``, then cycle and id) at ``now``; a ``final``
        state lets the row numbers go."""
        now = time.time() if now is None else now
        groups: dict[tuple[Any, ...], list[int]] = {}
        by_key: list[tuple[Any, ...]] = []
        seen: set[Key] = set()
        for row in rows:
            key = (row[-2], row[-1])
            seq = None if key in seen else self.seqs.get(key)
            seen.add(key)
            if seq is None:
                by_key.append((*row[:-2], now, *key))
            else:
                groups.setdefault(tuple(row[:-2]), []).append(seq)
            if final:
                self.seqs.pop(key, None)
        for values, seqs in groups.items():
            self.db.execute(_update(assign, guard, _BY_SEQ), (*values, now, json.dumps(seqs)))
        if by_key:
            self.db.executemany(_update(assign, guard, _BY_KEY), by_key)

    def mark_leased(self, leases: Iterable[tuple[float, str, int, int, str]],
                    now: float | None = None) -> None:
        """Record leases as (deadline, worker, attempt, cycle, id), taken at ``now``."""
        self._write("state = 'leased', deadline = ?, worker = ?, attempt = ?",
                    "state != 'done'", leases, now, final=False)

    def mark_done(self, keys: Iterable[tuple[int, str]], now: float | None = None) -> None:
        """Record jobs whose results the sink stored, as (cycle, id), at ``now``."""
        self._write("state = 'done', deadline = NULL", "state != 'done'", keys, now, final=True)

    def mark_done_leased(self, rows: Iterable[tuple[str, int, int, str]],
                         now: float | None = None) -> None:
        """Record jobs leased and done since the last write, as (worker, attempt, cycle, id):
        the state a lease then a done would leave, in one UPDATE."""
        self._write("state = 'done', deadline = NULL, worker = ?, attempt = ?",
                    "state != 'done'", rows, now, final=True)

    def mark_pending(self, items: Iterable[tuple[str | None, float | None, int, str]],
                     now: float | None = None) -> None:
        """Send jobs back to pending as (last error, not before (wall time, None: at once),
        cycle, id) at ``now``, keeping their attempts."""
        self._write("state = 'pending', deadline = NULL, worker = NULL, last_error = ?,"
                    " not_before = ?", "state = 'leased'", items, now, final=False)

    def mark_failed(self, items: Iterable[tuple[str | None, int, str]],
                    now: float | None = None) -> None:
        """End jobs as failed with their last error, as (error, cycle, id), at ``now``."""
        self._write("state = 'failed', deadline = NULL, last_error = ?", "state != 'done'",
                    items, now, final=True)
