"""The outbox's queries, alike in both SQL stores: the events after a destination's cursor,
its dead letters, their retries, its progress and the pruning of what every destination
has passed. A mixin of ``SqlStore``: it uses the store's placeholder and its locked
``_read``, ``_write``, ``_all`` and ``_many``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from voe.store import queries
from voe.store.rows import Event, event_from_row


class OutboxQueries:
    """The outbox part of the ``Store`` contract, over ``SqlStore``'s locked helpers."""

    mark: str

    def outbox_pending(self, destination: str, limit: int) -> list[Event]:
        """The next ``limit`` events after ``destination``'s cursor, oldest first."""
        rows = self._all("read the outbox", queries.outbox_pending(self.mark), (destination, limit))
        return [event_from_row(row) for row in rows]

    def outbox_retries(self, destination: str, limit: int) -> list[Event]:
        """Dead letters of ``destination`` sent back for retry, oldest first."""
        rows = self._all("read the outbox", queries.outbox_retries(self.mark), (destination, limit))
        return [event_from_row(row) for row in rows]

    def outbox_settle(self, destination: str, through: int | None, delivered: Sequence[int] = (),
                      dead: Sequence[tuple[int, int, str]] = ()) -> None:
        """Record a publisher's progress in one transaction.

        The cursor of ``destination`` moves to ``through`` (every event up to it is
        delivered or dead); ``delivered`` are retried dead letters now delivered;
        ``dead`` are ``(seq, attempts, error)`` of events given up on.
        """
        now = time.time()
        mark = self.mark
        with self._write("record deliveries") as db:
            if through is not None:
                db.execute(queries.move_cursor(mark), (destination, through, now))
            self._many(db, f"DELETE FROM outbox_dead WHERE destination = {mark} AND seq = {mark}",
                       [(destination, seq) for seq in delivered])
            self._many(db, queries.bury(mark), [(destination, seq, attempts, error, now)
                                                for seq, attempts, error in dead])

    def outbox_backlog(self, destinations: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Per destination (these and any the store knows): events waiting, dead letters."""
        with self._read("read the outbox", snapshot=True) as db:
            cursors = dict(db.execute("SELECT destination, seq FROM outbox_cursors").fetchall())
            dead = {name: (count, retry) for name, count, retry in db.execute(queries.DEAD_COUNTS)}
            report = {}
            for name in sorted({*destinations, *cursors, *dead}):
                waiting = db.execute(f"SELECT COUNT(*) FROM outbox WHERE seq > {self.mark}",
                                     (cursors.get(name, 0),)).fetchone()[0]
                count, retry = dead.get(name, (0, 0))
                report[name] = {"backlog": waiting, "dead": count - retry, "retrying": retry}
        return report

    def outbox_prune(self, destinations: Sequence[str], before: float, limit: int) -> int:
        """Delete up to ``limit`` events every one of ``destinations`` has passed, stored
        before ``before`` (Unix time) and dead for none; return how many."""
        if not destinations:
            return 0
        with self._write("prune the outbox") as db:
            cursors = dict(db.execute("SELECT destination, seq FROM outbox_cursors").fetchall())
            passed = min(cursors.get(name, 0) for name in destinations)
            return db.execute(queries.prune(self.mark), (passed, before, limit)).rowcount

    def dead_letters(self, destination: str | None = None) -> list[dict[str, Any]]:
        """Events a destination gave up on (``state`` dead, or retry once sent back)."""
        rows = self._all("read dead letters", queries.dead_letters(self.mark, bool(destination)),
                         (destination,) if destination else ())
        return [dict(zip(queries.DEAD_FIELDS, row, strict=True)) for row in rows]

    def retry_dead_letters(self, destination: str | None = None) -> int:
        """Send dead letters (of ``destination`` if given) back to their publisher; how many."""
        where, params = (f" AND destination = {self.mark}", (destination,)) if destination else (
            "", ())
        with self._write("retry dead letters") as db:
            return db.execute(f"UPDATE outbox_dead SET state = 'retry' WHERE state = 'dead'{where}",
                              params).rowcount
