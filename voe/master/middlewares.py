"""The master's built-in middlewares, in their default order (``MIDDLEWARES_BASE``).

Each reacts to the loop's hooks (``voe.master.middleware``): pacing per airline,
metrics and progress lines, the workers' snapshot in the ledger, cycle scheduling,
and the control plane of the HTTP port.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from voe import metrics
from voe.master.ledger import identities_json
from voe.master.middleware import Middleware
from voe.master.pacing import Pacers
from voe.model import BLOCKED, SearchJob
from voe.web.control import Command, CommandRefused, Control
from voe.web.server import WebServer, serve

if TYPE_CHECKING:
    from voe.master.leasing import ActiveLease
    from voe.master.loop import Master
    from voe.master.peers import Key, Peer

log = logging.getLogger("voe.master")

# Seconds between progress lines in master.log.
PROGRESS_INTERVAL = 10.0
# Seconds after the start before the HTTP port serves (from the next housekeeping tick):
# building the web app takes a third of a second of CPU that the first leases need more.
# Requests meanwhile wait on the bound port.
WEB_START_SECONDS = 0.5


class Pacing(Middleware):
    """Fleet-wide politeness: each airline's leases are paced by its token bucket
    (``voe.master.pacing``), slowed when workers report throttling or blocks."""

    def __init__(self, pacers: Pacers) -> None:
        self.pacers = pacers

    @classmethod
    def from_master(cls, master: Master) -> Pacing:
        """The pacers of ``master``'s plan, on its clock."""
        return cls(Pacers(master.plan.budgets(), master.clock))

    def can_lease_job(self, master: Master, job: SearchJob) -> bool:
        """Spend a token of ``job``'s airline, or refuse while its budget is spent."""
        return self.pacers.get(job.backend).take()

    def after_throttled(self, master: Master, backend: str, count: int) -> None:
        """Slow ``backend`` down."""
        self.pacers.get(backend).throttled(count)

    def after_failure(self, master: Master, job: SearchJob, status: str, error: str,
                      wait: float | None) -> None:
        """A blocked attempt is retried like a transient one, and the airline slows us."""
        if status == BLOCKED:
            self.pacers.get(job.backend).throttled(1)

    def tick(self, master: Master) -> None:
        """Let throttled airlines grow back towards their budgets."""
        self.pacers.recover()


class Metrics(Middleware):
    """Prometheus metrics (kept off the per-message path: counts are published before
    each ledger flush) and a progress line in master.log every ``PROGRESS_INTERVAL``."""

    def __init__(self) -> None:
        self.published: dict[str, int] = {}
        self.published_rejects: dict[str, int] = {}
        self.next_progress: float | None = None

    def after_ack(self, master: Master, key: Key, lease: ActiveLease | None) -> None:
        """Time a job from its lease to its stored result."""
        if lease is not None:
            metrics.MASTER_JOB_DURATION.observe(master.clock() - lease.leased_at)

    def before_flush(self, master: Master) -> None:
        """Publish the counts and sizes, before the ledger gets the writes."""
        state = master.state
        metrics.publish_counts(metrics.MASTER_JOBS, state.stats, self.published)
        metrics.publish_counts(metrics.MASTER_REJECTED,
                               metrics.reject_reasons(master.rejects.counts),
                               self.published_rejects)
        metrics.MASTER_JOBS_LEASED.set(len(state.leases))
        metrics.MASTER_UNSTORED.set(len(state.unstored))
        metrics.MASTER_JOBS_READY.set(len(state.ready))
        metrics.MASTER_WORKERS.set(len(state.peers))

    def tick(self, master: Master) -> None:
        """Publish the measured staleness of a continuous scheduler (once a tick: it sums
        the latest audits)."""
        audits = getattr(master.book, "audits", None)
        if audits is not None and audits.outcomes:
            summary = audits.summary()
            metrics.MASTER_AUDITS.set(summary["audits"])
            metrics.MASTER_STALE.set(summary["estimated_stale"])
            for band in summary["by_age"]:
                if band["still_correct"] is not None:
                    metrics.MASTER_STILL_CORRECT.labels(band["age"]).set(band["still_correct"])

    def after_flush(self, master: Master, seconds: float) -> None:
        """Time the ledger's commit."""
        metrics.MASTER_FLUSH.observe(seconds)

    def after_poll(self, master: Master) -> None:
        """Log progress every ``PROGRESS_INTERVAL``."""
        now = master.clock()
        if self.next_progress is None:
            self.next_progress = now + PROGRESS_INTERVAL
        elif now >= self.next_progress:
            self._log_progress(master)
            self.next_progress = now + PROGRESS_INTERVAL

    def after_stop(self, master: Master) -> None:
        """The last progress line."""
        self._log_progress(master)

    def _log_progress(self, master: Master) -> None:
        stats, state = master.state.stats, master.state
        log.info("progress: %d leased, %d done, %d retried, %d failed, %d expired; "
                 "%d in flight; %d workers; %d rejected messages", stats["leased"],
                 stats["done"], stats["retried"], stats["failed"], stats["expired"],
                 len(state.leases), len(state.peers), master.rejects.total)


class WorkersSnapshot(Middleware):
    """The workers as the master sees them, saved in the ledger for ``voe status`` and
    the dashboard, and each one's totals logged when it leaves."""

    def tick(self, master: Master) -> None:
        """Save the snapshot."""
        self._save(master)

    def after_worker_left(self, master: Master, peer: Peer, why: str) -> None:
        """Log the totals of a worker that left."""
        _log_peer(peer)

    def after_stop(self, master: Master) -> None:
        """Save the last snapshot and log every worker's totals."""
        self._save(master)
        for peer in list(master.state.peers.by_identity.values()):
            _log_peer(peer)

    def _save(self, master: Master) -> None:
        now, wall = master.clock(), master.wall()
        rows = [(p.name + "@" + p.identity.hex()[-6:], p.concurrency, p.prefetch, len(p.held),
                 p.max_held, p.finished, wall - (now - p.last_seen), 1,
                 p.address, p.errors, identities_json(p.identities))
                for p in master.state.peers.by_identity.values()]
        with master.ledger.transaction():
            master.ledger.save_workers(rows)


def _log_peer(peer: Peer) -> None:
    log.info("worker %s peak held %d (credit %d), finished %d, %d error(s)", peer.name,
             peer.max_held, peer.capacity, peer.finished, peer.errors)


class Cycles(Middleware):
    """Cycle scheduling: close finished cycles, lease reopened ones, start due ones; a
    ``once`` master finishes when every cycle has."""

    def tick(self, master: Master) -> None:
        """Look at the cycles."""
        book, state = master.book, master.state
        if master.ledger_changed:  # never polled: a writer says so (voe.cli.actions)
            master.ledger_changed = False
            book.reopened()
        book.close_finished(state.leased_in)
        book.waiting_to_retry = master.ledger.waiting_to_retry(now=master.wall())
        if book.due():
            book.start()
        if master.once and not book.cycles:
            master.finish()


class ControlPlane(Middleware):
    """The control plane: the HTTP port's dashboard and actions (pause, resume, start a
    cycle, retry failed jobs), run in the loop between two turns."""

    def __init__(self) -> None:
        self.control = Control()
        self.paused = False  # leasing paused through the HTTP port
        self.web: WebServer | None = None
        self.serve_from = 0.0

    def before_start(self, master: Master) -> None:
        """Publish a first snapshot and open the HTTP port (served from a later tick)."""
        self._publish(master)
        self.web = serve(master.settings, self.control, master.plan, start=False)
        self.serve_from = master.clock() + WEB_START_SECONDS

    def before_stop(self, master: Master) -> None:
        """Close the HTTP port."""
        if self.web is not None:
            self.web.stop()

    def after_poll(self, master: Master) -> None:
        """Run the actions asked since the last turn."""
        self.control.drain(lambda command: self._run(master, command))

    def tick(self, master: Master) -> None:
        """Hand the HTTP port a fresh snapshot; start serving it once it is time."""
        self._publish(master)
        if self.web is not None and not self.web.started and master.clock() >= self.serve_from:
            self.web.start()

    def can_lease(self, master: Master) -> bool:
        """Not while paused."""
        return not self.paused

    def _run(self, master: Master, command: Command) -> dict:
        """Run an action asked through the HTTP port (see ``voe.web.control``)."""
        if command.name in ("pause", "resume"):
            self.paused = command.name == "pause"
            log.info("leasing %s through the HTTP port", "paused" if self.paused else "resumed")
            self._publish(master)
            return {"paused": self.paused}
        if command.name == "start_cycle":
            if master.book.cycles:
                raise CommandRefused(f"cycle {max(master.book.cycles)} is still running; a new "
                                     "cycle can start once it is finished")
            cycle = master.book.start()
            return {"cycle": cycle.cycle, "total": cycle.total}
        if command.name == "retry":
            master.state.flush()
            count = master.ledger.retry_failed(command.args["cycle"], command.args["job_id"])
            log.info("%d failed job(s) sent back to pending through the HTTP port", count)
            master.book.reopened()
            return {"retried": count}
        raise ValueError(f"unknown command {command.name!r}")

    def _publish(self, master: Master) -> None:
        """Hand the HTTP port a snapshot of the live state (read by its threads)."""
        state, book = master.state, master.book
        self.control.publish({
            "epoch": master.epoch, "paused": self.paused, "once": master.once,
            "plan": master.plan.name, "interval": master.plan.interval,
            "cycles": sorted(book.cycles), "in_flight": len(state.leases),
            "ready": len(state.ready), "workers": len(state.peers), "stats": dict(state.stats),
            "rejected": master.rejects.total, "unstored": len(state.unstored),
            "unstored_limit": state.max_unstored,
            "waiting_to_retry": book.waiting_to_retry, "overdue_leases": state.held_for_sink,
            "scheduler": master.plan.scheduler,
            "freshness": audits.summary() if (audits := getattr(book, "audits", None)) else None,
            "sink": state.sink.snapshot(master.clock())},
            state.stats["done"], state.stats["failed"])
