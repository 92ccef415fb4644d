"""The master's cycles: which are open, how far the plan is expanded, when the next is due.

A cycle is one pass over the plan. Its jobs enter the ledger in batches as leasing
needs them (``expand``), so a plan of millions of jobs never sits in memory. The
schedule is on the monotonic clock; the ledger keeps wall times, read back bounded by
the plan's interval so a clock step while the master was down cannot hang it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable, Iterator

from voe.master.ledger import Cycle, Ledger
from voe.master.plan import Plan
from voe.model import SearchJob

log = logging.getLogger("voe.master")

# Jobs expanded from the plan into the ledger at a time. The loop leases nothing while
# it expands: 2,000 take about 15 ms, less than a fast worker's credit lasts (20,000
# took 100-150 ms, and workers of the null backend sat idle meanwhile).
EXPAND_BATCH = 2_000


class CycleBook:
    """Open cycles, their expansion streams and the next cycle's due time.

    ``clock`` gives monotonic seconds, ``wall`` the wall time (fakes in tests);
    ``today`` the date a new cycle starts from.
    """

    def __init__(self, plan: Plan, ledger: Ledger, once: bool,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        self.plan, self.ledger, self.once = plan, ledger, once
        self.clock, self.wall, self.today = clock, wall, today
        self.cycles: dict[int, Cycle] = {}
        self.expanders: dict[int, tuple[Iterator[SearchJob], int]] = {}
        self.next_cycle_at: float | None = None  # monotonic; None: no cycle scheduled
        self.waiting_to_retry = 0

    def resume(self) -> None:
        """Pick up the ledger's open cycles and the plan's schedule (a restart alone never
        starts a cycle the schedule has not made due)."""
        for cycle in self.ledger.open_cycles():
            self.track(cycle)
        if self.cycles:
            log.info("resuming cycle %s", ", ".join(str(number) for number in self.cycles))
        latest = self.ledger.latest_cycle()
        if self.once:
            if not self.cycles:
                self.start()
            return
        if latest is None:
            self.start()
            return
        interval = self.plan.interval or 0.0
        wall = self.wall()
        # Due at started_at + interval, read on the wall clock but never further than one
        # interval away (a clock stepped back must not postpone it).
        left = min(max(latest.started_at + interval - wall, 0.0), interval)
        self.next_cycle_at = self.clock() + left
        if left > 0 and not self.cycles:
            log.info("cycle %d started %s; the next is due in %.0fs (a cycle every %gs)",
                     latest.cycle, _ago(wall - latest.started_at), left, interval)

    def track(self, cycle: Cycle) -> None:
        """Lease ``cycle``'s jobs, expanding the rest of the plan into it as needed."""
        self.cycles[cycle.cycle] = cycle
        if cycle.expanded >= cycle.total:
            return
        if cycle.plan_digest != self.plan.digest:
            self._plan_changed(cycle)
            return
        start = dt.date.fromisoformat(cycle.start_date)
        stream = self.plan.jobs(cycle.cycle, start, skip=cycle.expanded)
        self.expanders[cycle.cycle] = (stream, cycle.expanded)

    def _plan_changed(self, cycle: Cycle) -> None:
        self.ledger.close_expansion(cycle.cycle)
        if cycle.expanded == 0:
            log.warning("the plan changed before cycle %d held any job: it ends empty, and a "
                        "cycle of plan %s starts now", cycle.cycle, self.plan.name)
            with self.ledger.transaction():
                self.ledger.finish_cycle(cycle.cycle)
            del self.cycles[cycle.cycle]
            return
        log.warning("the plan changed since cycle %d started: it finishes with the %d jobs "
                    "it holds (of %d), and the next cycle follows plan %s", cycle.cycle,
                    cycle.expanded, cycle.total, self.plan.name)
        self.cycles[cycle.cycle] = next(
            kept for kept in self.ledger.open_cycles() if kept.cycle == cycle.cycle)

    def start(self) -> Cycle:
        """Start a new cycle of the plan now, and schedule the next one."""
        today = self.today()
        cycle = self.ledger.start_cycle(self.plan.name, self.plan.digest, today.isoformat(),
                                        self.plan.job_count(today), self.plan.max_attempts,
                                        self.wall())
        log.info("cycle %d started: %d jobs (plan %s)", cycle.cycle, cycle.total, self.plan.name)
        if self.plan.interval is not None:
            self.next_cycle_at = self.clock() + self.plan.interval
        self.track(cycle)
        return cycle

    def expand(self) -> list[SearchJob] | bool:
        """Add the next batch of the oldest unexpanded cycle to the ledger: False when none
        is left, else the batch as pending jobs when the ledger could hand them over at once
        (``Ledger.add_jobs``), else True (read them from the ledger)."""
        for number, (stream, done) in sorted(self.expanders.items()):
            batch = list(itertools.islice(stream, EXPAND_BATCH))
            fresh = self.ledger.add_jobs(number, batch, done + len(batch))
            if len(batch) < EXPAND_BATCH:
                del self.expanders[number]
                if not batch:
                    continue
            else:
                self.expanders[number] = (stream, done + len(batch))
            return fresh or True
        return False

    def max_attempts(self, number: int) -> int:
        """The attempts a job of cycle ``number`` gets (the plan's when it is not open)."""
        cycle = self.cycles.get(number)
        return cycle.max_attempts if cycle else self.plan.max_attempts

    def reopened(self) -> None:
        """Track cycles a retry (CLI or HTTP port) gave pending jobs again."""
        for cycle in self.ledger.open_cycles():
            if cycle.cycle not in self.cycles:
                log.info("cycle %d has pending jobs again (retried); leasing them", cycle.cycle)
                self.track(cycle)

    def close_finished(self, leased: Callable[[int], bool]) -> None:
        """Finish every open cycle with nothing left to expand, pending or ``leased``."""
        for number, cycle in list(self.cycles.items()):
            if number in self.expanders or cycle.finished_at is not None:
                continue
            if not self.ledger.has_pending(number) and not leased(number):
                self.ledger.finish_cycle(number)
                counts = self.ledger.counts(number)
                log.info("cycle %d finished: %d done, %d failed", number, counts["done"],
                         counts["failed"])
                del self.cycles[number]

    def settle(self, key: tuple[int, str], answer: int | None) -> tuple[int, float] | None:
        """A job ended (done with its answer's digest, or failed for good: None); cycles keep
        no observations (``voe.master.rounds`` does)."""
        return None

    def due(self) -> bool:
        """Whether the schedule wants a new cycle now (never with ``once``)."""
        return not self.once and (self.next_cycle_at is None or self.clock() >= self.next_cycle_at)


def _ago(seconds: float) -> str:
    """``seconds`` in the past as words ("12s ago"), or "in the future" after a clock step."""
    return f"{seconds:.0f}s ago" if seconds >= 0 else "in the future (the clock moved back)"
