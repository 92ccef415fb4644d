"""The ledger's observations: each search's answers over time, for the continuous schedulers.

One row per job done (a search of one round), written in the transaction that marks it
done and keyed by (cycle, search), so each observation is kept exactly once however often
its acknowledgement arrives; a restarted master reads them back to resume its estimates.
``answer`` is a digest of the stored answer (``voe.answers``): equal digests, same answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

OBSERVATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS observations (
    cycle INTEGER NOT NULL,
    search TEXT NOT NULL,
    at REAL NOT NULL,
    answer INTEGER NOT NULL,
    audit INTEGER NOT NULL DEFAULT 0,
    changed INTEGER,
    age REAL,
    PRIMARY KEY (cycle, search)
)"""
"""Times are on the scheduler's clock (``voe.master.scheduling.clock``); ``audit`` marks a
search chosen at random to measure staleness (``voe.master.scheduling.audits``);
``changed`` and ``age`` compare with the search's previous observation (NULL for a first)."""


class LedgerObservations:
    """Observations and rounds' in-flight searches, mixed into ``Ledger`` (needs ``db``)."""

    db: sqlite3.Connection

    def add_observations(self, rows: Iterable[tuple], now: float | None = None) -> None:
        """Keep observations as (answer, at, audit, changed, age, cycle, search), each once,
        in the caller's transaction (``now`` is unused: a flush passes its time to all)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO observations (answer, at, audit, changed, age, cycle, search)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def audit_outcomes(self, limit: int) -> list[tuple[float, bool]]:
        """The latest ``limit`` audits as (age, changed), oldest first."""
        rows = self.db.execute(
            "SELECT age, changed FROM observations WHERE audit = 1 AND changed IS NOT NULL "
            "ORDER BY at DESC LIMIT ?", (limit,)).fetchall()
        return [(age, bool(changed)) for age, changed in reversed(rows)]

    def has_observations(self) -> bool:
        """Whether the table exists and holds any row (a ledger of a cycle plan has none)."""
        try:
            return self.db.execute("SELECT 1 FROM observations LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError:  # a ledger older than schema 6, read-only
            return False

    def observations(self) -> Iterator[tuple[str, float, int]]:
        """Every observation as (search, at, answer), oldest first."""
        yield from self.db.execute("SELECT search, at, answer FROM observations ORDER BY at")

    def in_flight(self, cycles: Iterable[int]) -> list[tuple[int, str]]:
        """The (cycle, search) of every job of ``cycles`` pending or leased."""
        found: list[tuple[int, str]] = []
        for cycle in cycles:
            found.extend(self.db.execute(
                "SELECT cycle, id FROM jobs WHERE cycle = ? AND state IN ('pending', 'leased')",
                (cycle,)))
        return found

    def extend_round(self, cycle: int, count: int) -> None:
        """Count ``count`` more jobs, just added, in round ``cycle``'s total."""
        self.db.execute("UPDATE cycles SET total = total + ?, expanded = expanded + ? "
                        "WHERE cycle = ?", (count, count, cycle))
