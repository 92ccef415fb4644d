"""The master (the original's "ventilator"): leases jobs by credit and keeps the ledger.

It expands the plan into the ledger in batches, hands jobs to workers that have
credit, and marks a job done only when the sink acknowledges that its result is
committed. Leases that outlive their deadline, or whose worker's heartbeats stop,
go back to pending until the job's attempts run out, when it ends as failed; a
failed attempt waits out its route's backoff first (``voe.master.retrying``).
In-memory state is authoritative between ticks; the ledger is written in one
transaction per tick, so a SIGKILLed master at worst re-issues a few jobs, which
the sink's idempotent store absorbs.

Time: what the running master compares (lease deadlines, the next cycle) is on the
monotonic clock, so a wall-clock step neither hangs nor hurries it. The ledger keeps
wall-clock times (they must outlive the process); a restarted master reads them back
bounded by the plan (a lease by its length, a cycle by its interval, a retry by its
longest pause), so a step of the clock while it was down cannot hang it either.

Backpressure: a result a worker finished but the sink has not acknowledged is
"unstored". At ``VOE_MAX_UNSTORED`` of them the master stops leasing until the sink
catches up, and while the sink is silent (frozen, or waiting for its store) the
leases of finished results are held past their deadline instead of searched again.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import random
import signal
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

from voe import gcpolicy, metrics, private, protocol
from voe.master.ledger import Cycle, Ledger, identities_json
from voe.logs import RejectCounter
from voe.master.lock import MasterLock
from voe.model import BLOCKED, SearchJob
from voe.master.pacing import Pacers
from voe.master.peers import Key, Peer, Peers
from voe.master.plan import Plan
from voe.master.retrying import RetryPolicy
from voe.settings import Settings
from voe.sockets import bind, configure
from voe.web.control import Command, CommandRefused, Control
from voe.web.server import WebServer, serve

log = logging.getLogger("voe.master")

# Ledger writes are batched and committed this often (seconds).
FLUSH_INTERVAL = 0.05
# Jobs read from the ledger into memory at a time.
REFILL_BATCH = 5000
# Jobs expanded from the plan into the ledger at a time.
EXPAND_BATCH = 20_000
# How often to look for expired leases and silent workers (seconds).
SWEEP_INTERVAL = 0.25
# How often to check cycles and write the workers' snapshot (seconds).
HOUSEKEEPING_INTERVAL = 1.0
# Most jobs sent to one worker in one message.
MAX_JOBS_PER_MESSAGE = 500
# Most ready jobs looked at per lease round when some airlines are paced.
SCAN_LIMIT = 2000
# Seconds between progress lines in master.log.
PROGRESS_INTERVAL = 10.0
# Milliseconds a finished (--once) master waits for its goodbyes to reach the workers.
FAREWELL_LINGER_MS = 500
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


class SinkState:
    """What the master knows of the sink: when it last stored (acknowledged or said it
    could), and what it says it is waiting for. Times are monotonic."""

    def __init__(self) -> None:
        self.storing_at: float | None = None  # last ack, or a heartbeat not waiting
        self.heard_at: float | None = None  # last word of any kind
        self.waiting = ""

    def acknowledged(self, now: float) -> None:
        """The sink acknowledged results: it stores."""
        self.storing_at = self.heard_at = now
        self.waiting = ""

    def beat(self, now: float, waiting: str) -> None:
        """A heartbeat from the sink, with what it waits for ("" when it stores)."""
        self.heard_at = now
        if waiting and not self.waiting:  # once per wait: its text counts the seconds
            log.warning("the sink is waiting for %s", waiting)
        elif self.waiting and not waiting:
            log.info("the sink stores again")
        self.waiting = waiting
        if not waiting:
            self.storing_at = now

    def stored_since(self, moment: float, grace: float) -> bool:
        """Whether the sink has stored well after ``moment`` (so a result sent then that is
        still unacknowledged was lost, not delayed)."""
        return self.storing_at is not None and self.storing_at > moment + grace

    def snapshot(self, now: float) -> dict:
        """The dashboard's view: what it waits for and how long it has been silent."""
        silent = None if self.heard_at is None else round(now - self.heard_at, 1)
        return {"waiting": self.waiting, "silent_seconds": silent}


class Master:
    """Leases the plan's jobs to workers and records their fate in the ledger."""

    def __init__(self, settings: Settings, plan: Plan, once: bool | None = None,
                 ledger_path: Path | None = None) -> None:
        self.settings = settings
        self.plan = plan
        self.once = plan.once if once is None else once
        self.ledger = Ledger(ledger_path or settings.data_dir / "ledger.db")
        self.epoch = uuid.uuid4().hex[:12]
        self.peers = Peers(settings.voe_heartbeat_seconds * settings.voe_heartbeat_liveness)
        self.rejects = RejectCounter(log)
        self.leases: dict[Key, ActiveLease] = {}
        self.ready: deque[SearchJob] = deque()
        self.writes: list[tuple[str, tuple]] = []
        self.recently_done: set[Key] = set()
        self.cycles: dict[int, Cycle] = {}
        self.next_cycle_at: float | None = None  # monotonic; None: no cycle scheduled
        self.unstored: set[Key] = set()  # finished by a worker, not acknowledged by the sink
        self.sink = SinkState()
        # How long after its result left a worker the sink must have stored something
        # newer before that result counts as lost.
        self.sink_grace = settings.voe_heartbeat_seconds * settings.voe_heartbeat_liveness
        self.policies: dict[tuple[str, str, str, int], RetryPolicy] = {}
        self.random = random.Random()
        self.idle_until = 0.0  # no due job in the ledger at the last look: wait a little
        self.waiting_to_retry = 0
        self.held_for_sink = 0
        self.expanders: dict[int, tuple[Iterator[SearchJob], int]] = {}
        self.pacers = Pacers(plan.budgets())
        self.backend_count = len({routes.backend for routes in plan.routes})
        self.stats = {"leased": 0, "done": 0, "failed": 0, "retried": 0, "expired": 0}
        self.published: dict[str, int] = {}
        self.published_rejects: dict[str, int] = {}
        self.stopping = False
        self.paused = False  # leasing paused through the HTTP port
        self.control = Control()
        self.web: WebServer | None = None
        self.context = zmq.Context.instance()
        self.jobs_socket = self._bind(settings.voe_jobs_port, "VOE_JOBS_PORT")
        self.control_socket = self._bind(settings.voe_control_port, "VOE_CONTROL_PORT")

    def _bind(self, port: int, setting: str) -> zmq.Socket:
        socket = configure(self.context.socket(zmq.ROUTER), self.settings, serve="master")
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.SNDHWM, 10_000)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        bind(socket, self.settings.voe_bind_ip, port, setting)
        return socket

    # Lifecycle --------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped (or, with ``once``, until every job is done or failed)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self._resume()
        log.info("master %s listening: jobs tcp://%s:%d, acks tcp://%s:%d (plan %s, %s)",
                 self.epoch, self.settings.voe_bind_ip, self.settings.voe_jobs_port,
                 self.settings.voe_bind_ip, self.settings.voe_control_port, self.plan.source,
                 "once" if self.once else f"a cycle every {self.plan.interval:g}s")
        poller = zmq.Poller()
        poller.register(self.jobs_socket, zmq.POLLIN)
        poller.register(self.control_socket, zmq.POLLIN)
        next_flush = next_sweep = next_house = next_beat = time.monotonic()
        next_progress = time.monotonic() + PROGRESS_INTERVAL
        beat = self.settings.voe_heartbeat_seconds
        finished = False
        try:
            self._publish_state()
            self.web = serve(self.settings, self.control, self.plan)
            while not self.stopping:
                events = dict(poller.poll(timeout=20))
                if self.control_socket in events:
                    had_leases = bool(self.leases)
                    self._drain(self.control_socket, self._on_control)
                    if had_leases and not self.leases:  # maybe the last job: look now
                        next_house = 0.0
                if self.jobs_socket in events:
                    self._drain(self.jobs_socket, self._on_worker)
                self.control.drain(self._on_command)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep()
                    next_sweep = now + SWEEP_INTERVAL
                if now >= next_beat:
                    self._heartbeat_all()
                    next_beat = now + beat
                self._dispatch()
                if now >= next_flush or len(self.writes) > 20_000:
                    self._flush()
                    next_flush = now + FLUSH_INTERVAL
                if now >= next_house:
                    finished = self._housekeeping()
                    self._publish_state()
                    next_house = now + HOUSEKEEPING_INTERVAL
                    if finished and self.once:
                        log.info("every job of the plan is done or failed; exiting")
                        self._farewell()
                        break
                if now >= next_progress:
                    self._log_progress()
                    next_progress = now + PROGRESS_INTERVAL
        finally:
            if self.web is not None:
                self.web.stop()
            self._flush()
            self._save_workers()
            self._log_progress()
            for peer in list(self.peers.by_identity.values()):
                self._log_peer(peer)
            self.jobs_socket.close(FAREWELL_LINGER_MS if finished and self.once else 0)
            self.control_socket.close(0)
            self.ledger.close()
        return 0

    def _stop(self, signum: int, frame: object) -> None:
        log.info("received %s; stopping (leases stay in the ledger)", signal.Signals(signum).name)
        self.stopping = True

    def _resume(self) -> None:
        """Pick up where the ledger left off: its leases, its open cycles and the plan's
        schedule (a restart alone never starts a cycle the schedule has not made due)."""
        now, wall = time.monotonic(), time.time()
        # A lease ends no later than one lease length from now (the clock may have stepped
        # back), and no sooner than the workers need to say they still hold it.
        patience = min(self.sink_grace, self.plan.lease_seconds)
        for lease in self.ledger.leases():
            left = min(max(lease.deadline - wall, patience), self.plan.lease_seconds)
            self.leases[(lease.job.cycle, lease.job.id)] = ActiveLease(
                lease.job, now + left, leased_at=now + left - self.plan.lease_seconds)
        open_cycles = self.ledger.open_cycles()
        for cycle in open_cycles:
            self._track(cycle)
        if self.leases:
            log.info("resumed %d leased jobs from the ledger", len(self.leases))
        if self.cycles:
            log.info("resuming cycle %s", ", ".join(str(number) for number in self.cycles))
        latest = self.ledger.latest_cycle()
        if self.once:
            if not self.cycles:
                self._start_cycle()
            return
        if latest is None:
            self._start_cycle()
            return
        interval = self.plan.interval or 0.0
        # Due at started_at + interval, read on the wall clock but never further than one
        # interval away (a clock stepped back must not postpone it).
        left = min(max(latest.started_at + interval - wall, 0.0), interval)
        self.next_cycle_at = now + left
        if left > 0 and not self.cycles:
            log.info("cycle %d started %s; the next is due in %.0fs (a cycle every %gs)",
                     latest.cycle, _ago(wall - latest.started_at), left, interval)

    def _track(self, cycle: Cycle) -> None:
        self.cycles[cycle.cycle] = cycle
        if cycle.expanded >= cycle.total:
            return
        if cycle.plan_digest != self.plan.digest:
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
            return
        start = dt.date.fromisoformat(cycle.start_date)
        stream = self.plan.jobs(cycle.cycle, start, skip=cycle.expanded)
        self.expanders[cycle.cycle] = (stream, cycle.expanded)

    def _start_cycle(self) -> None:
        today = dt.date.today()
        cycle = self.ledger.start_cycle(self.plan.name, self.plan.digest, today.isoformat(),
                                        self.plan.job_count(), self.plan.max_attempts)
        log.info("cycle %d started: %d jobs (plan %s)", cycle.cycle, cycle.total, self.plan.name)
        if self.plan.interval is not None:
            self.next_cycle_at = time.monotonic() + self.plan.interval
        self._track(cycle)

    # Messages ---------------------------------------------------------------

    def _drain(self, socket: zmq.Socket, handler) -> None:
        """Handle every message waiting on ``socket`` (bounded per poll)."""
        for _ in range(10_000):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(frames) != 2:
                self.rejects.reject("master", "bad-envelope", f"{len(frames)} frames")
                continue
            try:
                message = protocol.decode(frames[1], self.settings.voe_max_message_bytes)
            except protocol.ProtocolError as error:
                self.rejects.reject("master", error.reason, str(error))
                continue
            handler(frames[0], message)

    def _on_worker(self, identity: bytes, message: protocol.Message) -> None:
        if isinstance(message, protocol.Hello):
            self._on_hello(identity, message)
            return
        peer = self.peers.get(identity)
        if isinstance(message, protocol.Heartbeat):
            self._send(identity, protocol.encode_heartbeat(self.epoch))
        elif isinstance(message, protocol.Finished):
            if peer is not None:
                self.peers.release(peer, message.keys)
                if message.prefetch is not None:  # its pace changed (voe.credit)
                    peer.prefetch = message.prefetch
            now = time.monotonic()
            for key in message.keys:
                lease = self.leases.get(key)
                if lease is not None and lease.finished_at is None:
                    lease.finished_at = now
                    self.unstored.add(key)
        elif isinstance(message, protocol.Throttled):
            for backend, count in message.counts:
                self.pacers.get(backend).throttled(count)
            if peer is not None and message.identities:  # totals: the latest replace the last
                peer.identities = tuple(message.identities)
        elif isinstance(message, protocol.Bye):
            if peer is not None:
                self._drop_peer(peer, "left")
        else:
            self.rejects.reject("master jobs port", "unexpected-type", type(message).__name__)

    def _on_hello(self, identity: bytes, hello: protocol.Hello) -> None:
        held = tuple(key for key in hello.held if key in self.leases)
        peer = self.peers.join(identity, hello.worker, hello.concurrency, hello.prefetch, held,
                               hello.address)
        for key in held:  # re-announced after a reconnect or a master restart: now this peer's
            self.leases[key].peer = peer
        log.info("worker %s joined from %s (concurrency %d, prefetch %d, holding %d)",
                 peer.name, peer.address or "an unknown address", peer.concurrency,
                 peer.prefetch, len(peer.held))
        self._send(identity, protocol.encode_heartbeat(self.epoch))

    def _on_control(self, identity: bytes, message: protocol.Message) -> None:
        if isinstance(message, protocol.Heartbeat):
            self.sink.beat(time.monotonic(), message.waiting)
            return
        if not isinstance(message, protocol.Acks):
            self.rejects.reject("master control port", "unexpected-type", type(message).__name__)
            return
        self.sink.acknowledged(time.monotonic())
        for ack in message.acks:
            self._on_ack(ack)

    def _on_ack(self, ack: protocol.Ack) -> None:
        key = (ack.cycle, ack.job_id)
        lease = self.leases.get(key)
        if ack.status == "done":
            if lease is not None:
                del self.leases[key]
                self.unstored.discard(key)
                metrics.MASTER_JOB_DURATION.observe(time.monotonic() - lease.leased_at)
            self.peers.forget_key(key)
            self.recently_done.add(key)
            self.writes.append(("done", key))
            self.stats["done"] += 1
            return
        if lease is None or lease.job.attempt != ack.attempt:
            return  # a stale attempt: the job has moved on since
        del self.leases[key]
        self.unstored.discard(key)
        self.peers.forget_key(key)
        if lease.peer is not None:  # the worker has usually reported it finished by now
            lease.peer.errors += 1
        if ack.status == BLOCKED:  # retried like a transient failure, and the airline slows us
            self.pacers.get(lease.job.backend).throttled(1)
        self._retry_or_fail(lease.job, ack.error or ack.status,
                            permanent=ack.status == "permanent", pause=True)

    def _policy(self, job: SearchJob) -> RetryPolicy:
        """The retry policy of ``job``'s route (the cycle's max_attempts unless overridden)."""
        cycle = self.cycles.get(job.cycle)
        attempts = cycle.max_attempts if cycle else self.plan.max_attempts
        key = (job.backend, job.origin, job.destination, attempts)
        policy = self.policies.get(key)
        if policy is None:
            policy = self.policies[key] = self.plan.retry_policy(
                job.backend, job.origin, job.destination, attempts)
        return policy

    def _retry_or_fail(self, job: SearchJob, error: str, permanent: bool = False,
                       pause: bool = False) -> None:
        """Fail ``job`` for good, or send it back to pending; with ``pause`` (the attempt
        failed at the airline, not with its worker) not before its backoff has passed."""
        policy = self._policy(job)
        error = error[:protocol.MAX_ERROR]
        if permanent or policy.gives_up(job.attempt):
            self.writes.append(("failed", (error, job.cycle, job.id)))
            self.stats["failed"] += 1
            log.warning("job %s (cycle %d) failed after %d attempt(s): %s",
                        job.id, job.cycle, job.attempt, error)
            return
        wait = policy.wait(job.attempt, self.random) if pause else 0.0
        not_before = time.time() + wait if wait > 0 else None
        self.writes.append(("pending", (error, not_before, job.cycle, job.id)))
        self.stats["retried"] += 1
        if wait > 0:
            log.debug("job %s (cycle %d) attempt %d failed (%s); retrying in %.1fs",
                      job.id, job.cycle, job.attempt, error, wait)

    # Leasing ----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Send jobs to every worker with credit while jobs are available, the sink keeps up
        (fewer than ``VOE_MAX_UNSTORED`` results unstored) and leasing is not paused."""
        if self.paused:
            return
        for _ in range(1000):
            room = self.settings.voe_max_unstored - len(self.unstored)
            peers = self.peers.with_credit()
            if not peers or room <= 0:
                return
            for peer in peers:
                batch = self._next_jobs(min(peer.free, MAX_JOBS_PER_MESSAGE, room))
                if not batch:
                    return
                self._lease(peer, batch)
                room -= len(batch)
                if room <= 0:
                    return

    def _next_jobs(self, count: int) -> list[SearchJob]:
        """Up to ``count`` jobs whose airlines' budgets allow a lease now, in ledger order."""
        batch: list[SearchJob] = []
        paced: list[SearchJob] = []
        blocked: set[str] = set()
        for _ in range(SCAN_LIMIT):
            if len(batch) >= count or len(blocked) >= self.backend_count:
                break
            # Refill only with an empty hand: jobs popped here are still pending in the ledger.
            if not self.ready and (paced or batch or not self._refill()):
                break
            job = self.ready.popleft()
            key = (job.cycle, job.id)
            if key in self.leases or key in self.recently_done:
                continue
            if job.backend in blocked or not self.pacers.get(job.backend).take():
                blocked.add(job.backend)
                paced.append(job)
                continue
            batch.append(job)
        self.ready.extendleft(reversed(paced))
        return batch

    def _refill(self) -> bool:
        """Load due pending jobs from the ledger, expanding the plan when it runs dry."""
        if time.monotonic() < self.idle_until and not self.writes:
            return False  # nothing was due a moment ago, and nothing has changed since
        self._flush()
        self.recently_done.clear()
        horizon = self.plan.longest_retry_wait()
        for _ in range(100):
            jobs = [job for job in self.ledger.take_pending(REFILL_BATCH, horizon=horizon)
                    if (job.cycle, job.id) not in self.leases]
            if jobs:
                self.ready.extend(jobs)
                return True
            if not self._expand():
                self.idle_until = time.monotonic() + IDLE_REFILL_INTERVAL
                return False
        return False

    def _expand(self) -> bool:
        """Add the next batch of the oldest unexpanded cycle to the ledger."""
        for number, (stream, done) in sorted(self.expanders.items()):
            batch = list(itertools.islice(stream, EXPAND_BATCH))
            self.ledger.add_jobs(number, batch, done + len(batch))
            if len(batch) < EXPAND_BATCH:
                del self.expanders[number]
                if not batch:
                    continue
            else:
                self.expanders[number] = (stream, done + len(batch))
            return True
        return False

    def _lease(self, peer: Peer, jobs: list[SearchJob]) -> None:
        now = time.monotonic()
        deadline = now + self.plan.lease_seconds
        wall_deadline = time.time() + self.plan.lease_seconds  # for the ledger and reports
        leased = []
        for job in jobs:
            job = job._replace(attempt=job.attempt + 1)
            key = (job.cycle, job.id)
            self.leases[key] = ActiveLease(job, deadline, peer, now)
            self.peers.assign(key, peer)
            self.writes.append(("leased", (wall_deadline, peer.name, job.attempt, job.cycle,
                                           job.id)))
            leased.append(job)
        self.stats["leased"] += len(leased)
        if not self._send(peer.identity, protocol.encode_jobs(leased)):
            for job in leased:
                self._expire(job, f"worker {peer.name} unreachable")

    def _send(self, identity: bytes, frame: bytes) -> bool:
        try:
            self.jobs_socket.send_multipart([identity, frame], zmq.NOBLOCK)
        except zmq.ZMQError as error:
            peer = self.peers.by_identity.get(identity)
            if peer is not None and error.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                self._drop_peer(peer, "unreachable")
            return False
        return True

    # Time -------------------------------------------------------------------

    def _sweep(self) -> None:
        """Take back leases past their deadline and the jobs of silent workers; a finished
        result is held while the sink has stored nothing since (it is delayed, not lost)."""
        for peer in self.peers.silent():
            self._drop_peer(peer, "stopped sending heartbeats")
        now = time.monotonic()
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
            self._expire(job, "no result before the lease expired")

    def _drop_peer(self, peer: Peer, why: str) -> None:
        self.peers.remove(peer.identity)
        held = [self.leases[key].job for key in peer.held if key in self.leases]
        log.warning("worker %s %s; taking back %d job(s)", peer.name, why, len(held))
        self._log_peer(peer)
        for job in held:
            self._expire(job, f"worker {peer.name} {why}")

    def _expire(self, job: SearchJob, why: str) -> None:
        key = (job.cycle, job.id)
        lease = self.leases.get(key)
        if lease is None or lease.job.attempt != job.attempt:
            return
        del self.leases[key]
        self.unstored.discard(key)
        if lease.peer is not None:
            lease.peer.errors += 1
        self.stats["expired"] += 1
        self._retry_or_fail(job, why)

    def _farewell(self) -> None:
        """Tell every worker the collection is over, so they wait quietly (or leave)."""
        frame = protocol.encode_bye()
        for identity in list(self.peers.by_identity):
            self._send(identity, frame)

    def _heartbeat_all(self) -> None:
        frame = protocol.encode_heartbeat(self.epoch)
        for identity in list(self.peers.by_identity):
            self._send(identity, frame)

    def _flush(self) -> None:
        """Commit the batched ledger writes in one transaction, in order."""
        self._publish_metrics()
        if not self.writes:
            return
        writes, self.writes = self.writes, []
        apply = {"leased": self.ledger.mark_leased, "done": self.ledger.mark_done,
                 "pending": self.ledger.mark_pending, "failed": self.ledger.mark_failed}
        started = time.monotonic()
        with self.ledger.transaction():
            for kind, group in itertools.groupby(writes, key=lambda item: item[0]):
                apply[kind]([params for _, params in group])
        metrics.MASTER_FLUSH.observe(time.monotonic() - started)

    def _publish_metrics(self) -> None:
        """Publish the counts and sizes to the metrics, before the ledger gets the writes."""
        metrics.publish_counts(metrics.MASTER_JOBS, self.stats, self.published)
        metrics.publish_counts(metrics.MASTER_REJECTED,
                               metrics.reject_reasons(self.rejects.counts), self.published_rejects)
        metrics.MASTER_JOBS_LEASED.set(len(self.leases))
        metrics.MASTER_UNSTORED.set(len(self.unstored))
        metrics.MASTER_JOBS_READY.set(len(self.ready))
        metrics.MASTER_WORKERS.set(len(self.peers))

    def _housekeeping(self) -> bool:
        """Close finished cycles, start due ones, save the workers; True when all is done."""
        self._flush()
        self._save_workers()
        self.pacers.recover()
        for cycle in self.ledger.open_cycles():  # reopened by a retry (CLI or HTTP port)
            if cycle.cycle not in self.cycles:
                log.info("cycle %d has pending jobs again (retried); leasing them", cycle.cycle)
                self._track(cycle)
        for number, cycle in list(self.cycles.items()):
            if number in self.expanders or cycle.finished_at is not None:
                continue
            if not self.ledger.has_pending(number) and not any(
                    key[0] == number for key in self.leases):
                self.ledger.finish_cycle(number)
                counts = self.ledger.counts(number)
                log.info("cycle %d finished: %d done, %d failed", number, counts["done"],
                         counts["failed"])
                del self.cycles[number]
        self.waiting_to_retry = self.ledger.waiting_to_retry()
        if not self.once and (self.next_cycle_at is None
                              or time.monotonic() >= self.next_cycle_at):
            self._start_cycle()
        return not self.cycles

    def _on_command(self, command: Command) -> dict:
        """Run an action asked through the HTTP port (see ``voe.web.control``)."""
        if command.name in ("pause", "resume"):
            self.paused = command.name == "pause"
            log.info("leasing %s through the HTTP port", "paused" if self.paused else "resumed")
            self._publish_state()
            return {"paused": self.paused}
        if command.name == "start_cycle":
            if self.cycles:
                raise CommandRefused(f"cycle {max(self.cycles)} is still running; a new cycle "
                                     "can start once it is finished")
            self._start_cycle()
            cycle = self.cycles[max(self.cycles)]
            return {"cycle": cycle.cycle, "total": cycle.total}
        if command.name == "retry":
            self._flush()
            count = self.ledger.retry_failed(command.args["cycle"], command.args["job_id"])
            log.info("%d failed job(s) sent back to pending through the HTTP port", count)
            return {"retried": count}
        raise ValueError(f"unknown command {command.name!r}")

    def _publish_state(self) -> None:
        """Hand the HTTP port a snapshot of the live state (read by its threads)."""
        self.control.publish({
            "epoch": self.epoch, "paused": self.paused, "once": self.once,
            "plan": self.plan.name, "interval": self.plan.interval,
            "cycles": sorted(self.cycles), "in_flight": len(self.leases),
            "ready": len(self.ready), "workers": len(self.peers), "stats": dict(self.stats),
            "rejected": self.rejects.total, "unstored": len(self.unstored),
            "unstored_limit": self.settings.voe_max_unstored,
            "waiting_to_retry": self.waiting_to_retry, "overdue_leases": self.held_for_sink,
            "sink": self.sink.snapshot(time.monotonic())},
            self.stats["done"], self.stats["failed"])

    def _save_workers(self) -> None:
        rows = [(p.name + "@" + p.identity.hex()[-6:], p.concurrency, p.prefetch, len(p.held),
                 p.max_held, p.finished, time.time() - (time.monotonic() - p.last_seen), 1,
                 p.address, p.errors, identities_json(p.identities))
                for p in self.peers.by_identity.values()]
        with self.ledger.transaction():
            self.ledger.save_workers(rows)

    def _log_peer(self, peer: Peer) -> None:
        log.info("worker %s peak held %d (credit %d), finished %d, %d error(s)", peer.name,
                 peer.max_held, peer.capacity, peer.finished, peer.errors)

    def _log_progress(self) -> None:
        log.info("progress: %d leased, %d done, %d retried, %d failed, %d expired; "
                 "%d in flight; %d workers; %d rejected messages", self.stats["leased"],
                 self.stats["done"], self.stats["retried"], self.stats["failed"],
                 self.stats["expired"], len(self.leases), len(self.peers), self.rejects.total)


def _ago(seconds: float) -> str:
    """``seconds`` in the past as words ("12s ago"), or "in the future" after a clock step."""
    return f"{seconds:.0f}s ago" if seconds >= 0 else "in the future (the clock moved back)"


def pid_file(settings: Settings) -> Path:
    """Where a running master writes its PID (used by ``voe status``)."""
    return settings.data_dir / "master.pid"


def run_master(settings: Settings, plan: Plan, once: bool | None = None) -> int:
    """Run a master in this process until it finishes or is stopped; one per data dir.

    Raises ``MasterRunning`` before touching the ledger, ports or ``master.pid`` when
    another master holds the data dir's lock.
    """
    private.make_dir(settings.data_dir)
    with MasterLock(settings.data_dir):
        master = Master(settings, plan, once)
        gcpolicy.settle()
        pid_path = pid_file(settings)
        private.write_file(pid_path, str(os.getpid()).encode())
        try:
            return master.run()
        finally:
            pid_path.unlink(missing_ok=True)
