"""The master's leasing state: leases, acknowledgements, expiry, credit and retries.

A plain object with an injected clock and no sockets, so its rules are tested in
milliseconds. It hands jobs to workers that have credit, marks a job done only when
the sink acknowledges that its result is committed, and takes back leases that
outlive their deadline or whose worker's heartbeats stop; a failed attempt goes back
to pending after its route's backoff (``voe.master.retrying``) until its attempts run
out, when it ends as failed. In-memory state is authoritative between flushes; the
ledger is written in one transaction per flush, so a SIGKILLed master at worst
re-issues a few jobs, which the sink's idempotent store absorbs.

Backpressure: a result a worker finished but the sink has not acknowledged is
"unstored". At ``max_unstored`` of them no more jobs are handed out until the sink
catches up, and while the sink is silent the leases of finished results are held past
their deadline instead of searched again.

What happens is told to the middlewares through ``emit(hook, *args)``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from voe import protocol
from voe.master.cycles import CycleBook
from voe.master.ledger import Ledger
from voe.master.peers import Key, Peer, Peers
from voe.master.plan import Plan
from voe.master.retrying import RetryPolicy
from voe.master.sinkstate import SinkState
from voe.model import SearchJob

log = logging.getLogger("voe.master")

# Jobs read from the ledger into memory at a time.
REFILL_BATCH = 5000
# Most ready jobs looked at per lease round when some airlines are paced.
SCAN_LIMIT = 2000
# Seconds between two looks at the ledger for due jobs when none was due at the last.
IDLE_REFILL_INTERVAL = 0.2


@dataclass(slots=True)
class ActiveLease:
    """A job out with a worker (or, after a restart, with an unknown one).

    ``deadline`` and the other times are on the monotonic clock."""

    job: SearchJob
    deadline: float
    peer: Peer | None = None  # who it was leased to: an attempt that fails counts on it
    leased_at: float = 0.0
    finished_at: float | None = None  # the worker sent its result towards the sink


def _next_attempt(job: SearchJob) -> SearchJob:
    """``job`` as its next attempt (``_replace`` without its keyword machinery: per lease)."""
    return tuple.__new__(SearchJob, (job[0], job[1], job[2] + 1, *job[3:]))


def _no_hook(hook: str, *args: object) -> None:
    """The default ``emit``: nobody listens."""


class Leasing:
    """What the master knows of its jobs and workers, and the rules that change it.

    ``liveness`` is how long a silent worker (or sink) keeps its jobs, ``max_unstored``
    the backpressure limit; ``clock`` gives monotonic seconds and ``wall`` the wall
    time written to the ledger; ``emit(hook, *args)`` tells the middlewares.
    """

    def __init__(self, plan: Plan, ledger: Ledger, book: CycleBook, liveness: float,
                 max_unstored: int, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 emit: Callable[..., None] = _no_hook,
                 rng: random.Random | None = None) -> None:
        self.plan = plan
        self.ledger = ledger
        self.book = book
        self.clock = clock
        self.wall = wall
        self.emit = emit
        self.random = rng or random.Random()
        self.max_unstored = max_unstored
        self.peers = Peers(liveness, clock)
        self.sink = SinkState()
        # How long after its result left a worker the sink must have stored something
        # newer before that result counts as lost.
        self.sink_grace = liveness
        self.leases: dict[Key, ActiveLease] = {}
        self.ready: deque[SearchJob] = deque()
        self.writes: list[tuple[str, tuple] | None] = []
        # Where each lease written since the last flush sits in ``writes``: a job done
        # before the flush is written once, done with its lease's fields (one UPDATE).
        self.unflushed_leases: dict[Key, int] = {}
        self.recently_done: set[Key] = set()
        self.unstored: set[Key] = set()  # finished by a worker, not acknowledged by the sink
        self.policies: dict[tuple[str, str, str, int], RetryPolicy] = {}
        self.idle_until = 0.0  # no due job in the ledger at the last look: wait a little
        self.held_for_sink = 0
        self.backend_count = len({routes.backend for routes in plan.routes})
        self.stats = {"leased": 0, "done": 0, "failed": 0, "retried": 0, "expired": 0}

    def resume(self) -> None:
        """Take back the ledger's leases (a restart): each ends no later than one lease
        length from now (the clock may have stepped back), and no sooner than the
        workers need to say they still hold it."""
        now, wall, length = self.clock(), self.wall(), self.plan.lease_seconds
        patience = min(self.sink_grace, length)
        for lease in self.ledger.leases():
            left = min(max(lease.deadline - wall, patience), length)
            self.leases[(lease.job.cycle, lease.job.id)] = ActiveLease(
                lease.job, now + left, leased_at=now + left - length)
        if self.leases:
            log.info("resumed %d leased jobs from the ledger", len(self.leases))

    # Workers ----------------------------------------------------------------

    def hello(self, identity: bytes, hello: protocol.Hello) -> Peer:
        """A worker (re)joined; the jobs it says it holds, and the master leased, are its."""
        held = tuple(key for key in hello.held if key in self.leases)
        peer = self.peers.join(identity, hello.worker, hello.concurrency, hello.prefetch, held,
                               hello.address)
        for key in held:  # re-announced after a reconnect or a master restart: now this peer's
            self.leases[key].peer = peer
        log.info("worker %s joined from %s (concurrency %d, prefetch %d, holding %d)",
                 peer.name, peer.address or "an unknown address", peer.concurrency,
                 peer.prefetch, len(peer.held))
        return peer

    def finished(self, peer: Peer | None, keys: tuple[Key, ...],
                 prefetch: int | None = None) -> None:
        """A worker sent these jobs' results towards the sink: its credit comes back."""
        if peer is not None:
            self.peers.release(peer, keys)
            if prefetch is not None:  # its pace changed (voe.worker.credit)
                peer.prefetch = prefetch
        now = self.clock()
        for key in keys:
            lease = self.leases.get(key)
            if lease is not None and lease.finished_at is None:
                lease.finished_at = now
                self.unstored.add(key)

    def drop_peer(self, peer: Peer, why: str) -> None:
        """Forget a worker that left, went silent or is unreachable; take back its jobs."""
        self.peers.remove(peer.identity)
        held = [self.leases[key].job for key in peer.held if key in self.leases]
        log.warning("worker %s %s; taking back %d job(s)", peer.name, why, len(held))
        self.emit("after_worker_left", peer, why)
        for job in held:
            self.expire(job, f"worker {peer.name} {why}")

    # Leasing ----------------------------------------------------------------

    def room(self) -> int:
        """Jobs that may still go out before the unstored results reach the limit."""
        return self.max_unstored - len(self.unstored)

    def next_jobs(self, count: int,
                  allow: Callable[[SearchJob], bool] = lambda job: True) -> list[SearchJob]:
        """Up to ``count`` jobs that ``allow`` lets go now, in ledger order; a job refused
        keeps its backend out of the rest of this round."""
        batch: list[SearchJob] = []
        paced: list[SearchJob] = []
        blocked: set[str] = set()
        for _ in range(SCAN_LIMIT):
            if len(batch) >= count or len(blocked) >= self.backend_count:
                break
            # Refill only with an empty hand: jobs popped here are still pending in the ledger.
            if not self.ready and (paced or batch or not self.refill()):
                break
            job = self.ready.popleft()
            key = (job.cycle, job.id)
            if key in self.leases or key in self.recently_done:
                continue
            if job.backend in blocked or not allow(job):
                blocked.add(job.backend)
                paced.append(job)
                continue
            batch.append(job)
        self.ready.extendleft(reversed(paced))
        return batch

    def refill(self) -> bool:
        """Load due pending jobs from the ledger (after writing what it lacks), expanding
        the plan when it runs dry."""
        if self.clock() < self.idle_until and not self.writes:
            return False  # nothing was due a moment ago, and nothing has changed since
        self.flush()
        self.recently_done.clear()
        horizon = self.plan.longest_retry_wait()
        for _ in range(100):
            jobs = [job for job in self.ledger.take_pending(REFILL_BATCH, self.wall(), horizon)
                    if (job.cycle, job.id) not in self.leases]
            if jobs:
                self.ready.extend(jobs)
                return True
            expanded = self.book.expand()
            if not expanded:
                self.idle_until = self.clock() + IDLE_REFILL_INTERVAL
                return False
            if expanded is not True:  # the new batch itself: what the ledger would read back
                self.ready.extend(job for job in expanded if (job.cycle, job.id) not in self.leases)
                return True
        return False

    def lease(self, peer: Peer, jobs: list[SearchJob]) -> list[SearchJob]:
        """Lease ``jobs`` to ``peer`` (one more attempt each); return them as sent."""
        now = self.clock()
        deadline = now + self.plan.lease_seconds
        wall_deadline = self.wall() + self.plan.lease_seconds  # for the ledger and reports
        leased = []
        for job in jobs:
            job = _next_attempt(job)
            key = (job.cycle, job.id)
            self.leases[key] = ActiveLease(job, deadline, peer, now)
            self.peers.assign(key, peer)
            self.unflushed_leases[key] = len(self.writes)
            self.writes.append(("leased", (wall_deadline, peer.name, job.attempt, job.cycle,
                                           job.id)))
            leased.append(job)
        self.stats["leased"] += len(leased)
        self.emit("after_lease", peer, leased)
        return leased

    # Acknowledgements -------------------------------------------------------

    def acknowledge(self, ack: protocol.Ack) -> None:
        """The sink stored (or settled) an attempt: done, or a failure to retry or end."""
        key = (ack.cycle, ack.job_id)
        lease = self.leases.get(key)
        if ack.status == "done":
            if lease is not None:
                del self.leases[key]
                self.unstored.discard(key)
                if ack.days and lease.job.calendar and self.plan.cheapest_days:
                    self._search_cheapest_days(lease.job, ack.days)
            self.peers.forget_key(key)
            self.recently_done.add(key)
            self._write_done(key)
            observed = self.book.settle(key, ack.answer)
            if observed is not None:
                self.writes.append(("observed", (*observed, *key)))
            self.stats["done"] += 1
            self.emit("after_ack", key, lease)
            return
        if lease is None or lease.job.attempt != ack.attempt:
            return  # a stale attempt: the job has moved on since
        del self.leases[key]
        self.unstored.discard(key)
        self.peers.forget_key(key)
        if lease.peer is not None:  # the worker has usually reported it finished by now
            lease.peer.errors += 1
        self.retry_or_fail(lease.job, ack.error or ack.status, ack.status,
                           permanent=ack.status == "permanent", pause=True)

    def _search_cheapest_days(self, calendar: SearchJob,
                              days: tuple[tuple[str, str], ...]) -> None:
        """Add to the calendar's cycle a full search of each of its cheapest days (the
        plan's ``cheapest_days``), written with the calendar's done in one transaction:
        a done the ledger holds always has its full searches (a lost ack leaves neither,
        and the calendar is searched again)."""
        cycle = self.book.cycles.get(calendar.cycle)
        if cycle is None:
            return
        found = self.plan.full_searches(calendar, days, dt.date.fromisoformat(cycle.start_date))
        if found:
            self.writes.append(("found", found))
            log.info("calendar %s: searching its %d cheapest day(s) in full (%s)", calendar.id,
                     len(found), ", ".join(job.date for job in found))

    def policy(self, job: SearchJob) -> RetryPolicy:
        """The retry policy of ``job``'s route (the cycle's max_attempts unless overridden)."""
        attempts = self.book.max_attempts(job.cycle)
        key = (job.backend, job.origin, job.destination, attempts)
        policy = self.policies.get(key)
        if policy is None:
            policy = self.policies[key] = self.plan.retry_policy(
                job.backend, job.origin, job.destination, attempts)
        return policy

    def retry_or_fail(self, job: SearchJob, error: str, status: str, permanent: bool = False,
                      pause: bool = False) -> None:
        """Fail ``job`` for good, or send it back to pending; with ``pause`` (the attempt
        failed at the airline, not with its worker) not before its backoff has passed."""
        policy = self.policy(job)
        error = error[:protocol.MAX_ERROR]
        if permanent or policy.gives_up(job.attempt):
            self.writes.append(("failed", (error, job.cycle, job.id)))
            self.stats["failed"] += 1
            log.warning("job %s (cycle %d) failed after %d attempt(s): %s",
                        job.id, job.cycle, job.attempt, error)
            self.book.settle((job.cycle, job.id), None)
            self.emit("after_failure", job, status, error, None)
            return
        wait = policy.wait(job.attempt, self.random) if pause else 0.0
        not_before = self.wall() + wait if wait > 0 else None
        self.writes.append(("pending", (error, not_before, job.cycle, job.id)))
        self.stats["retried"] += 1
        if wait > 0:
            log.debug("job %s (cycle %d) attempt %d failed (%s); retrying in %.1fs",
                      job.id, job.cycle, job.attempt, error, wait)
        self.emit("after_failure", job, status, error, wait)

    # Expiry -----------------------------------------------------------------

    def sweep(self) -> None:
        """Take back leases past their deadline and the jobs of silent workers; a finished
        result is held while the sink has stored nothing since (it is delayed, not lost)."""
        for peer in self.peers.silent():
            self.drop_peer(peer, "stopped sending heartbeats")
        now = self.clock()
        expired, held = [], 0
        for lease in self.leases.values():
            if lease.deadline >= now:
                continue
            if (lease.finished_at is not None
                    and not self.sink.stored_since(lease.finished_at, self.sink_grace)):
                held += 1
            else:
                expired.append(lease.job)
        if held and not self.held_for_sink:
            log.warning("%d finished result(s) are past their lease and not yet stored; holding "
                        "them while the sink is %s", held,
                        f"waiting for {self.sink.waiting}" if self.sink.waiting else "silent")
        self.held_for_sink = held
        for job in expired:
            self.expire(job, "no result before the lease expired")

    def expire(self, job: SearchJob, why: str) -> None:
        """Take back ``job``'s lease (if it is still this attempt's) and retry or fail it."""
        key = (job.cycle, job.id)
        lease = self.leases.get(key)
        if lease is None or lease.job.attempt != job.attempt:
            return
        del self.leases[key]
        self.unstored.discard(key)
        if lease.peer is not None:
            lease.peer.errors += 1
        self.stats["expired"] += 1
        self.emit("after_expire", job, why)
        self.retry_or_fail(job, why, "expired")

    def leased_in(self, cycle: int) -> bool:
        """Whether any job of ``cycle`` is out on a lease."""
        return any(key[0] == cycle for key in self.leases)

    # The ledger -------------------------------------------------------------

    def _write_done(self, key: Key) -> None:
        """Batch a job's ``done``; if its lease is not written yet, write both as one."""
        index = self.unflushed_leases.pop(key, None)
        lease = self.writes[index] if index is not None else None
        if lease is None:
            self.writes.append(("done", key))
            return
        self.writes[index] = None  # the lease's fields go with the done instead
        _, (_, worker, attempt, cycle, job_id) = lease
        self.writes.append(("done_leased", (worker, attempt, cycle, job_id)))

    def flush(self) -> None:
        """Commit the batched ledger writes in one transaction, in order."""
        self.emit("before_flush")
        self.unflushed_leases.clear()
        if not self.writes:
            return
        writes, self.writes = [write for write in self.writes if write is not None], []
        apply = {"leased": self.ledger.mark_leased, "done": self.ledger.mark_done,
                 "done_leased": self.ledger.mark_done_leased,
                 "pending": self.ledger.mark_pending, "failed": self.ledger.mark_failed,
                 "found": self.ledger.add_found, "observed": self.ledger.add_observations}
        started = self.clock()
        wall = self.wall()
        with self.ledger.transaction():
            for kind, group in itertools.groupby(writes, key=lambda item: item[0]):
                apply[kind]([params for _, params in group], wall)
        self.emit("after_flush", self.clock() - started)
