"""The master (the original's "ventilator"): leases jobs by credit and keeps the ledger.

It expands the plan into the ledger in batches, hands jobs to workers that have
credit, and marks a job done only when the sink acknowledges that its result is
committed. Leases that outlive their deadline, or whose worker's heartbeats stop,
go back to pending until the job's attempts run out, when it ends as failed.
In-memory state is authoritative between ticks; the ledger is written in one
transaction per tick, so a SIGKILLed master at worst re-issues a few jobs, which
the sink's idempotent store absorbs.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

from voe import metrics, protocol
from voe.ledger import Cycle, Ledger, identities_json
from voe.logs import RejectCounter
from voe.masterlock import MasterLock
from voe.model import BLOCKED, SearchJob
from voe.pacing import Pacers
from voe.peers import Key, Peer, Peers
from voe.plan import Plan
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


@dataclass(slots=True)
class ActiveLease:
    """A job out with a worker (or, after a restart, with an unknown one)."""

    job: SearchJob
    deadline: float
    peer: Peer | None = None  # who it was leased to: an attempt that fails counts on it


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
        """Pick up where the ledger left off, or start the first cycle."""
        for lease in self.ledger.leases():
            self.leases[(lease.job.cycle, lease.job.id)] = ActiveLease(lease.job, lease.deadline)
        open_cycles = self.ledger.open_cycles()
        for cycle in open_cycles:
            self._track(cycle)
        if self.leases:
            log.info("resumed %d leased jobs from the ledger", len(self.leases))
        if self.cycles:
            log.info("resuming cycle %s", ", ".join(str(number) for number in self.cycles))
        else:
            self._start_cycle()

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
        if not isinstance(message, protocol.Acks):
            self.rejects.reject("master control port", "unexpected-type", type(message).__name__)
            return
        for ack in message.acks:
            self._on_ack(ack)

    def _on_ack(self, ack: protocol.Ack) -> None:
        key = (ack.cycle, ack.job_id)
        lease = self.leases.get(key)
        if ack.status == "done":
            if lease is not None:
                del self.leases[key]
                # Leased at deadline - lease_seconds: the ledger keeps no lease start.
                metrics.MASTER_JOB_DURATION.observe(
                    time.time() - lease.deadline + self.plan.lease_seconds)
            self.peers.forget_key(key)
            self.recently_done.add(key)
            self.writes.append(("done", key))
            self.stats["done"] += 1
            return
        if lease is None or lease.job.attempt != ack.attempt:
            return  # a stale attempt: the job has moved on since
        del self.leases[key]
        self.peers.forget_key(key)
        if lease.peer is not None:  # the worker has usually reported it finished by now
            lease.peer.errors += 1
        if ack.status == BLOCKED:  # retried like a transient failure, and the airline slows us
            self.pacers.get(lease.job.backend).throttled(1)
        self._retry_or_fail(lease.job, ack.error or ack.status, permanent=ack.status == "permanent")

    def _retry_or_fail(self, job: SearchJob, error: str, permanent: bool = False) -> None:
        cycle = self.cycles.get(job.cycle)
        max_attempts = cycle.max_attempts if cycle else self.plan.max_attempts
        key_error = (error[:protocol.MAX_ERROR], job.cycle, job.id)
        if permanent or job.attempt >= max_attempts:
            self.writes.append(("failed", key_error))
            self.stats["failed"] += 1
            log.warning("job %s (cycle %d) failed after %d attempt(s): %s",
                        job.id, job.cycle, job.attempt, error)
        else:
            self.writes.append(("pending", (key_error[0], None, job.cycle, job.id)))
            self.stats["retried"] += 1

    # Leasing ----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Send jobs to every worker with credit while jobs are available (and not paused)."""
        if self.paused:
            return
        for _ in range(1000):
            peers = self.peers.with_credit()
            if not peers:
                return
            sent_any = False
            for peer in peers:
                batch = self._next_jobs(min(peer.free, MAX_JOBS_PER_MESSAGE))
                if not batch:
                    return
                self._lease(peer, batch)
                sent_any = True
            if not sent_any:
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
        """Load pending jobs from the ledger, expanding the plan when it runs dry."""
        self._flush()
        self.recently_done.clear()
        for _ in range(100):
            jobs = [job for job in self.ledger.take_pending(REFILL_BATCH)
                    if (job.cycle, job.id) not in self.leases]
            if jobs:
                self.ready.extend(jobs)
                return True
            if not self._expand():
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
        deadline = time.time() + self.plan.lease_seconds
        leased = []
        for job in jobs:
            job = job._replace(attempt=job.attempt + 1)
            key = (job.cycle, job.id)
            self.leases[key] = ActiveLease(job, deadline, peer)
            self.peers.assign(key, peer)
            self.writes.append(("leased", (deadline, peer.name, job.attempt, job.cycle, job.id)))
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
        """Take back leases past their deadline and the jobs of silent workers."""
        for peer in self.peers.silent():
            self._drop_peer(peer, "stopped sending heartbeats")
        now = time.time()
        expired = [lease.job for lease in self.leases.values() if lease.deadline < now]
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
        if not self.once:
            latest = self.ledger.latest_cycle()
            if latest is None or time.time() >= latest.started_at + (self.plan.interval or 0):
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
            "rejected": self.rejects.total}, self.stats["done"], self.stats["failed"])

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


def pid_file(settings: Settings) -> Path:
    """Where a running master writes its PID (used by ``voe status``)."""
    return settings.data_dir / "master.pid"


def run_master(settings: Settings, plan: Plan, once: bool | None = None) -> int:
    """Run a master in this process until it finishes or is stopped; one per data dir.

    Raises ``MasterRunning`` before touching the ledger, ports or ``master.pid`` when
    another master holds the data dir's lock.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with MasterLock(settings.data_dir):
        master = Master(settings, plan, once)
        pid_path = pid_file(settings)
        pid_path.write_text(str(os.getpid()))
        try:
            return master.run()
        finally:
            pid_path.unlink(missing_ok=True)
