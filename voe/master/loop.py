"""The master (the original's "ventilator"): a loop that polls, decodes, sends and keeps time.

What the master decides lives elsewhere: the leasing rules (credit, leases,
acknowledgements, expiry, retries) in ``voe.master.leasing``, the cycles in
``voe.master.cycles``, and every other policy (pacing, metrics, the workers'
snapshot, cycle scheduling, control) in middlewares that hear the loop's hooks
(``voe.master.middleware``). The loop reads the workers' and the sink's messages,
hands them to the leasing state, sends jobs to workers with credit, flushes the
ledger, and calls the hooks on time.

Time: what the running master compares (lease deadlines, the next cycle) is on the
monotonic clock, so a wall-clock step neither hangs nor hurries it. The ledger keeps
wall-clock times (they must outlive the process); a restarted master reads them back
bounded by the plan (a lease by its length, a cycle by its interval, a retry by its
longest pause), so a step of the clock while it was down cannot hang it either.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voe import gcpolicy, private, protocol
from voe.logs import RejectCounter
from voe.master.leasing import Leasing
from voe.master.ledger import Ledger
from voe.master.lock import MasterLock
from voe.master.middleware import Middlewares, build_middlewares
from voe.master.peers import Peer
from voe.master.plan import Plan
from voe.master.rounds import make_book
from voe.master.scheduling.clock import ScheduleClock
from voe.master.transport import CONTROL, SENT, UNREACHABLE, ZmqTransport
from voe.settings import Settings

log = logging.getLogger("voe.master")

# Ledger writes are batched and committed this often (seconds).
FLUSH_INTERVAL = 0.05
# Ledger writes that make a flush due at once.
FLUSH_WRITES = 20_000
# How often to look for expired leases and silent workers (seconds).
SWEEP_INTERVAL = 0.25
# How often the middlewares' ``tick`` runs: cycles, the workers' snapshot (seconds).
HOUSEKEEPING_INTERVAL = 1.0
# Most jobs sent to one worker in one message.
MAX_JOBS_PER_MESSAGE = 500
# Most lease rounds in one turn of the loop.
DISPATCH_ROUNDS = 1000
# Milliseconds a finished (--once) master waits for its goodbyes to reach the workers.
FAREWELL_LINGER_MS = 500
# Milliseconds one poll waits for a message.
POLL_MS = 20


class Master:
    """Leases the plan's jobs to workers and records their fate in the ledger.

    ``transport`` defaults to the two bound ROUTER sockets; ``clock`` (monotonic) and
    ``wall`` default to the real ones; ``middlewares`` to the default list, its entry
    points and ``VOE_MASTER_MIDDLEWARES``.
    """

    def __init__(self, settings: Settings, plan: Plan, once: bool | None = None,
                 ledger_path: Path | None = None, transport: Any = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 middlewares: Middlewares | None = None) -> None:
        self.settings = settings
        self.plan = plan
        self.once = plan.once if once is None else once
        self.clock, self.wall = clock, wall
        self.ledger = Ledger(ledger_path or settings.data_dir / "ledger.db")
        self.epoch = uuid.uuid4().hex[:12]
        self.rejects = RejectCounter(log)
        self.book = make_book(plan, self.ledger, self.once, clock, wall, ScheduleClock(
            settings.voe_clock_speed, settings.voe_clock_origin, wall), settings.voe_audit_share)
        liveness = settings.voe_heartbeat_seconds * settings.voe_heartbeat_liveness
        self.state = Leasing(plan, self.ledger, self.book, liveness, settings.voe_max_unstored,
                             clock, wall, self.emit)
        self.middlewares = (middlewares if middlewares is not None
                            else build_middlewares(self, settings.voe_master_middlewares))
        self.stopping = False
        self.finished = False  # every job of a ``once`` plan is done or failed
        # Someone wrote the ledger (``voe failed retry`` while the HTTP port is off) and said
        # so with SIGUSR1: look for cycles with pending jobs again at the next tick.
        self.ledger_changed = False
        self.look_now = False  # the last lease ended: run the hooks' tick at once
        self.timers = dict.fromkeys(("flush", "sweep", "tick", "beat"), 0.0)
        self.transport = transport if transport is not None else ZmqTransport(settings)

    def emit(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on the middlewares (a failure in one is logged and contained)."""
        self.middlewares.emit(self, hook, *args)

    def finish(self) -> None:
        """Stop at the end of this turn: every job of the plan is done or failed."""
        self.finished = True

    # Lifecycle --------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped (or, with ``once``, until every job is done or failed)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR1, self._ledger_written)
        self.start()
        log.info("master %s listening: jobs tcp://%s:%d, acks tcp://%s:%d (plan %s, %s)",
                 self.epoch, self.settings.voe_bind_ip, self.settings.voe_jobs_port,
                 self.settings.voe_bind_ip, self.settings.voe_control_port, self.plan.source,
                 _schedule(self.plan, self.once))
        try:
            self.emit("before_start")
            while not self.stopping and not self.step(POLL_MS):
                pass
        finally:
            self.close()
        return 0

    def start(self) -> None:
        """Pick up where the ledger left off: its leases, open cycles and schedule."""
        self.state.resume()
        self.book.resume()

    def close(self) -> None:
        """Write what is pending, tell the middlewares, close the wire and the ledger."""
        self.emit("before_stop")
        self.state.flush()
        self.emit("after_stop")
        self.transport.close(FAREWELL_LINGER_MS if self.finished else 0)
        self.ledger.close()

    def _stop(self, signum: int, frame: object) -> None:
        log.info("received %s; stopping (leases stay in the ledger)", signal.Signals(signum).name)
        self.stopping = True

    def _ledger_written(self, signum: int, frame: object) -> None:
        self.ledger_changed = True

    def step(self, timeout_ms: int = 0) -> bool:
        """One turn: read messages, run due timers, lease; True when a ``once`` plan is over."""
        had_leases = bool(self.state.leases)
        for port, frames in self.transport.receive(timeout_ms):
            self._receive(port, frames)
        if had_leases and not self.state.leases:  # maybe the last job: look now
            self.look_now = True
        self.emit("after_poll")
        now = self.clock()
        if self._due("sweep", now, SWEEP_INTERVAL):
            self.state.sweep()
        if self._due("beat", now, self.settings.voe_heartbeat_seconds):
            self._heartbeat_all()
        self._dispatch()
        if self._due("flush", now, FLUSH_INTERVAL) or len(self.state.writes) > FLUSH_WRITES:
            self.state.flush()
        if self._due("tick", now, HOUSEKEEPING_INTERVAL) or self.look_now:
            self.look_now = False
            self.timers["tick"] = now + HOUSEKEEPING_INTERVAL
            self.state.flush()
            self.emit("tick")
            if self.finished and self.once:
                log.info("every job of the plan is done or failed; exiting")
                self._farewell()
                return True
        return False

    def _due(self, timer: str, now: float, interval: float) -> bool:
        """Whether ``timer`` is due at ``now``; if so it is set ``interval`` ahead."""
        if now < self.timers[timer]:
            return False
        self.timers[timer] = now + interval
        return True

    # Messages ---------------------------------------------------------------

    def _receive(self, port: str, frames: list[bytes]) -> None:
        """Decode one message and hand it to the worker's or the sink's handler."""
        if len(frames) != 2:
            self.rejects.reject("master", "bad-envelope", f"{len(frames)} frames")
            return
        try:
            message = protocol.decode(frames[1], self.settings.voe_max_message_bytes)
        except protocol.ProtocolError as error:
            self.rejects.reject("master", error.reason, str(error))
            return
        if port == CONTROL:
            self._on_sink(message)
        else:
            self._on_worker(frames[0], message)

    def _on_worker(self, identity: bytes, message: protocol.Message) -> None:
        state = self.state
        if isinstance(message, protocol.Hello):
            state.hello(identity, message)
            self._send(identity, protocol.encode_heartbeat(self.epoch))
            return
        peer = state.peers.get(identity)
        if isinstance(message, protocol.Heartbeat):
            self._send(identity, protocol.encode_heartbeat(self.epoch))
        elif isinstance(message, protocol.Finished):
            state.finished(peer, message.keys, message.prefetch)
        elif isinstance(message, protocol.Throttled):
            for backend, count in message.counts:
                self.emit("after_throttled", backend, count)
            if peer is not None and message.identities:  # totals: the latest replace the last
                peer.identities = tuple(message.identities)
        elif isinstance(message, protocol.Bye):
            if peer is not None:
                state.drop_peer(peer, "left")
        else:
            self.rejects.reject("master jobs port", "unexpected-type", type(message).__name__)

    def _on_sink(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Heartbeat):
            self.state.sink.beat(self.clock(), message.waiting)
            return
        if not isinstance(message, protocol.Acks):
            self.rejects.reject("master control port", "unexpected-type", type(message).__name__)
            return
        self.state.sink.acknowledged(self.clock())
        for ack in message.acks:
            self.state.acknowledge(ack)

    # Leasing ----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Send jobs to every worker with credit while jobs are available, the sink keeps up
        (fewer than ``VOE_MAX_UNSTORED`` results unstored) and the middlewares allow it."""
        state = self.state
        if not self.middlewares.allow(self, "can_lease"):
            return
        for _ in range(DISPATCH_ROUNDS):
            room = state.room()
            peers = state.peers.with_credit()
            if not peers or room <= 0:
                return
            for peer in peers:
                batch = state.next_jobs(min(peer.free, MAX_JOBS_PER_MESSAGE, room), self._allow)
                if not batch:
                    return
                self._lease(peer, batch)
                room -= len(batch)
                if room <= 0:
                    return

    def _allow(self, job: Any) -> bool:
        return self.middlewares.allow(self, "can_lease_job", job)

    def _lease(self, peer: Peer, batch: list) -> None:
        leased = self.state.lease(peer, batch)
        if not self._send(peer.identity, protocol.encode_jobs(leased)):
            for job in leased:
                self.state.expire(job, f"worker {peer.name} unreachable")

    def _send(self, identity: bytes, frame: bytes) -> bool:
        outcome = self.transport.send(identity, frame)
        if outcome == UNREACHABLE:
            peer = self.state.peers.by_identity.get(identity)
            if peer is not None:
                self.state.drop_peer(peer, "unreachable")
        return outcome == SENT

    def _farewell(self) -> None:
        """Tell every worker the collection is over, so they wait quietly (or leave)."""
        frame = protocol.encode_bye()
        for identity in list(self.state.peers.by_identity):
            self._send(identity, frame)

    def _heartbeat_all(self) -> None:
        frame = protocol.encode_heartbeat(self.epoch)
        for identity in list(self.state.peers.by_identity):
            self._send(identity, frame)


def pid_file(settings: Settings) -> Path:
    """Where a running master writes its PID (used by ``voe status``)."""
    return settings.data_dir / "master.pid"


def run_master(settings: Settings, plan: Plan, once: bool | None = None) -> int:
    """Run a master in this process until it finishes or is stopped; one per data dir.

    Raises ``MasterRunning`` before touching the ledger, ports or ``master.pid`` when
    another master holds the data dir's lock.
    """
    # Until the loop listens for it, "the ledger changed" needs no telling: it reads the
    # ledger when it starts. Ignored, the signal cannot end a master still starting.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
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


def _schedule(plan: Plan, once: bool) -> str:
    """How ``plan`` runs, in words for the log."""
    if plan.scheduler != "cycle":
        return f"the {plan.scheduler} scheduler within each backend's budget"
    return "once" if once else f"a cycle every {plan.interval:g}s"
