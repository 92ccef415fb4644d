"""Rounds: the ledger cycles a continuous scheduler writes the searches it chooses to.

A plan whose ``scheduler`` is ``ttl``, ``adaptive`` or ``freshness`` has no cycles of the
whole plan: whenever leasing runs dry, the scheduler of each backend chooses the next few
searches (as many as its budget runs in ``BATCH_SECONDS``) and they are added to the open
round, a ledger cycle like any other, so leases, retries, dead letters and ``voe check``
work per observation. A search still pending or leased is never chosen again, and one
already in the open round starts a new one (a cycle holds a job id once). A round takes
searches for ``ROUND_SECONDS`` and finishes when all its jobs have.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
from collections.abc import Callable

from voe.master.cycles import CycleBook
from voe.master.ledger import Cycle, Ledger
from voe.master.plan import Plan
from voe.master.scheduling.audits import WINDOW, Audits
from voe.master.scheduling.clock import ScheduleClock
from voe.master.scheduling.history import Search, departure
from voe.master.scheduling.policies import POLICIES
from voe.master.scheduling.scheduler import Scheduler
from voe.model import SearchJob

log = logging.getLogger("voe.master")

# Seconds of budget chosen at a time (more is less continuous, fewer costs more choosing).
BATCH_SECONDS = 2.0
# How long (wall seconds) a round takes new searches, and the most it holds.
ROUND_SECONDS = 3600.0
ROUND_JOBS = 20_000


class RoundBook(CycleBook):
    """The rounds of a continuous scheduler, one ``Scheduler`` per backend."""

    def __init__(self, plan: Plan, ledger: Ledger, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 schedule_clock: ScheduleClock | None = None, audit_share: float = 0.0,
                 rng: random.Random | None = None) -> None:
        super().__init__(plan, ledger, False, clock, wall)
        self.audit_share = audit_share
        self.random = rng or random.Random()
        self.audit_credit: dict[str, float] = {}
        self.auditing: set[str] = set()  # searches out as audits
        self.audits = Audits()
        self.schedule_clock = schedule_clock or ScheduleClock(wall=wall)
        speed = self.schedule_clock.speed
        self.budgets = {backend: rate for backend, rate in plan.budgets().items()}
        self.schedulers = {backend: Scheduler(POLICIES[plan.scheduler](), rate * speed)
                           for backend, rate in self.budgets.items()}
        self.jobs: dict[str, SearchJob] = {}  # the plan's searches as of ``synced``
        self.synced: dt.date | None = None
        self.busy: dict[str, int] = {}  # searches pending or leased, and their round
        self.round: Cycle | None = None
        self.round_keys: set[str] = set()

    def resume(self) -> None:
        """Pick up the open rounds, the searches in flight and every observation so far."""
        for cycle in self.ledger.open_cycles():
            self.track(cycle)
        self._sync()
        self.busy = {search: cycle for cycle, search in self.ledger.in_flight(self.cycles)}
        count = 0
        for search, at, answer in self.ledger.observations():
            job = self.jobs.get(search)
            if job is not None and self.schedulers[job.backend].observe(search, at, answer):
                count += 1
        self.audits = Audits(self.ledger.audit_outcomes(WINDOW))
        # The open rounds finish as their jobs do; the next searches go to a new one.
        log.info("%s scheduler: %d searches, %d observations resumed, %d in flight",
                 self.plan.scheduler, len(self.jobs), count, len(self.busy))

    def _sync(self) -> None:
        """Take the plan's searches as of the scheduler's date (once a day)."""
        today = self.schedule_clock.today()
        if today == self.synced:
            return
        self.synced = today
        self.jobs = {job.id: job for job in self.plan.jobs(0, today)}
        now = self.schedule_clock.now()
        for backend, scheduler in self.schedulers.items():
            scheduler.sync((Search(job.id, f"{job.origin}-{job.destination}", departure(job.date))
                            for job in self.jobs.values() if job.backend == backend), now)

    def expand(self) -> bool:
        """Add the searches each backend's scheduler wants next to the open round."""
        self._sync()
        now = self.schedule_clock.now()
        chosen: list[SearchJob] = []
        for backend, scheduler in self.schedulers.items():
            count = max(1, math.ceil(self.budgets[backend] * BATCH_SECONDS))
            audits = self._audits(backend, scheduler, count, now)
            wanted = scheduler.next(now, count - len(audits), self.busy.keys() | audits)
            chosen.extend(self.jobs[key] for key in (*audits, *wanted))
        if not chosen:
            return False
        round_ = self._open_round({job.id for job in chosen})
        jobs = [job._replace(cycle=round_.cycle) for job in chosen]
        with self.ledger.transaction():
            self.ledger.add_found([jobs], self.wall())
            self.ledger.extend_round(round_.cycle, len(jobs))
        self.round_keys.update(job.id for job in jobs)
        self.busy.update((job.id, round_.cycle) for job in jobs)
        return True

    def _audits(self, backend: str, scheduler: Scheduler, count: int, now: float) -> set[str]:
        """Searches to re-search at random for the audits, ``audit_share`` of ``count``
        (chosen among those observed before, not out now and not departed)."""
        credit = self.audit_credit.get(backend, 0.0) + count * self.audit_share
        chosen: set[str] = set()
        searches = list(scheduler.searches.values())
        for _ in range(min(int(credit), count) * 4):  # a few draws may hit busy ones
            if len(chosen) >= min(int(credit), count) or not searches:
                break
            search = self.random.choice(searches)
            if (search.last_at is not None and search.departs > now
                    and search.key not in self.busy and search.key not in chosen):
                chosen.add(search.key)
        self.audit_credit[backend] = credit - len(chosen)
        self.auditing.update(chosen)
        return chosen

    def _open_round(self, keys: set[str]) -> Cycle:
        """The round to add ``keys`` to: the open one, or a new one when it is old, full or
        already holds one of them."""
        round_ = self.round
        if (round_ is None or self.wall() - round_.started_at >= ROUND_SECONDS
                or len(self.round_keys) + len(keys) > ROUND_JOBS or keys & self.round_keys):
            round_ = self.start()
        return round_

    def start(self) -> Cycle:
        """Open a new round now (the last one takes no more searches)."""
        cycle = self.ledger.start_cycle(self.plan.name, self.plan.digest,
                                        self.schedule_clock.today().isoformat(), 0,
                                        self.plan.max_attempts, self.wall())
        self.cycles[cycle.cycle] = self.round = cycle
        self.round_keys = set()
        log.debug("round %d opened", cycle.cycle)
        return cycle

    def settle(self, key: tuple[int, str], answer: int | None) -> tuple | None:
        """Job ``key`` ended (done with ``answer``'s digest, or failed for good: None); the
        observation to keep, as (answer, at, audit, changed, age). Every done gives one (the
        ledger keeps the first of a (round, search)); only one of a search out on a lease
        teaches the scheduler, and ``changed`` and ``age`` are None for any other (a late
        done after the job failed for good, a search whose date left the plan while it was
        out) and for a search's first."""
        cycle, search = key
        in_flight = self.busy.get(search) == cycle
        audit = False
        if in_flight:
            del self.busy[search]
            audit = search in self.auditing
            self.auditing.discard(search)
        if answer is None:
            return None
        at = self.schedule_clock.now()
        job = self.jobs.get(search)
        if not in_flight or job is None:
            return answer, at, int(audit), None, None
        scheduler = self.schedulers[job.backend]
        before = scheduler.searches.get(search)
        changed = age = None
        if before is not None and before.last_at is not None and before.last_answer is not None:
            changed, age = answer != before.last_answer, at - before.last_at
            if audit:
                self.audits.add(age, changed)
        scheduler.observe(search, at, answer)
        return answer, at, int(audit), changed, age

    def close_finished(self, leased: Callable[[int], bool]) -> None:
        """Finish every round but the open one with nothing pending or leased."""
        for number in list(self.cycles):
            if self.round is not None and number == self.round.cycle:
                if self.wall() - self.round.started_at < ROUND_SECONDS:
                    continue
                self.round = None
            if not self.ledger.has_pending(number) and not leased(number):
                self.ledger.finish_cycle(number)
                del self.cycles[number]

    def reopened(self) -> None:
        """Track rounds a retry gave pending jobs again; their searches are in flight."""
        super().reopened()
        self.busy.update((search, cycle) for cycle, search in self.ledger.in_flight(self.cycles))

    def due(self) -> bool:
        """Never: rounds open as searches are chosen."""
        return False


def make_book(plan: Plan, ledger: Ledger, once: bool, clock: Callable[[], float],
              wall: Callable[[], float], schedule_clock: ScheduleClock,
              audit_share: float = 0.0) -> CycleBook:
    """The book of ``plan``'s scheduler: its cycles, or the rounds of a continuous one."""
    if plan.scheduler == "cycle":
        if schedule_clock.speed == 1:
            return CycleBook(plan, ledger, once, clock, wall)
        # A simulation: a cycle's dates count from the day on the schedulers' clock.
        return CycleBook(plan, ledger, once, clock, wall, today=schedule_clock.today)
    return RoundBook(plan, ledger, clock, wall, schedule_clock, audit_share)
