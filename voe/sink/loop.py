"""The sink: receive results, store them once, commit, and only then acknowledge.

Results arrive on a PULL socket from every worker. Each batch is validated, saved
in one store transaction (idempotent per job and cycle), committed, and then
acknowledged to the master, which marks the jobs done. A result that never makes
it (a killed sink, a lost frame) is not acknowledged, so its lease expires and the
job runs again; a result stored twice is impossible by the store's design.

A store error that passes (a terminated connection, a full disk, a lock) does not end
the sink: it keeps the batch, unacknowledged, stops receiving (so it holds one batch at
most, and ZeroMQ's high-water marks hold the workers back), and retries with capped
exponential backoff until the store takes it. Meanwhile its heartbeats tell the master
what it waits for. Any other store error is fatal: one line, exit status 2.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from voe import gcpolicy, metrics, private, protocol
from voe.logs import RejectCounter
from voe.model import Result
from voe.settings import Settings
from voe.sink import publish
from voe.sink.yieldwatch import YieldWatch
from voe.sockets import bind, configure
from voe.store import StoreUnavailable, open_store
from voe.store.base import Saved
from voe.web.server import serve_metrics

log = logging.getLogger("voe.sink")

# Most results stored in one transaction.
MAX_BATCH = 2000
# Seconds the sink keeps gathering results into one transaction while they keep coming.
GATHER_SECONDS = 0.005
# Seconds between progress lines in sink.log.
PROGRESS_INTERVAL = 10.0
# Acknowledgements queued for an absent master before new ones are dropped (leases cover them).
ACKS_HWM = 10_000
# Seconds before the first retry of a batch the store could not take; doubled per failure.
RETRY_FIRST_SECONDS = 0.5
# Longest wait between two retries of the store, in seconds.
RETRY_MAX_SECONDS = 30.0
# Share of each wait drawn at random, so sinks sharing a store do not retry in step.
RETRY_JITTER = 0.5
# Seconds between reminders in sink.log while the sink waits for its store.
WAIT_REMINDER_SECONDS = 30.0
# Longest sleep while waiting, in seconds: how soon a stop request or a due heartbeat is seen.
WAIT_SLICE_SECONDS = 0.1
# How the sink names itself to a PostgreSQL store (pg_stat_activity), unless the URL does.
APPLICATION_NAME = "voe-sink"


@dataclass
class StoreWait:
    """A batch the store could not take for a passing reason, and when to retry it."""

    batch: list[Result]
    error: StoreUnavailable
    since: float = field(default_factory=time.monotonic)
    backoff: float = RETRY_FIRST_SECONDS
    retry_at: float = 0.0
    remind_at: float = 0.0

    def failed(self, error: StoreUnavailable, now: float) -> float:
        """Note a failed try; schedule the next one, jittered, and return the wait in seconds."""
        self.error = error
        delay = self.backoff * (1 - RETRY_JITTER * random.random())
        self.backoff = min(self.backoff * 2, RETRY_MAX_SECONDS)
        self.retry_at = now + delay
        return delay

    def describe(self, now: float) -> str:
        """What the sink waits for, as its heartbeats tell the master and its dashboard."""
        return f"its store: {self.error.reason} (for {now - self.since:.0f} s)"


class Sink:
    """Stores what workers push and acknowledges it to the master."""

    def __init__(self, settings: Settings, store_path: Path | None = None) -> None:
        self.settings = settings
        # First, so a busy metrics port stops the sink before it holds anything else.
        self.http = serve_metrics(metrics.SINK, settings.voe_http_host,
                                  settings.voe_sink_http_port, settings.voe_http_token)
        store_target = store_path or settings.voe_store_url or settings.data_dir / "fares.db"
        self.store = open_store(store_target, application_name=APPLICATION_NAME)
        # The outbox's drainers: a thread per destination, each with its own store
        # connection, so publishing never holds up receiving, storing and acknowledging.
        self.publishing = publish.Publishing(settings, store_target)
        # Events only when something publishes them: none would pile up unread.
        self.store.keep_events(bool(self.publishing.drainers))
        self.rejects = RejectCounter(log)
        self.yields = YieldWatch(self.store, on_field_yields=metrics.publish_field_yields)
        self.stopping = False
        # Set with ``stopping``: a wait for the store wakes at once (no time.sleep, which
        # also misbehaves under libfaketime's clock steps in the tests).
        self.stopped = threading.Event()
        self.wait: StoreWait | None = None
        self.next_beat = 0.0
        self.stored = 0
        self.received = 0
        self.published_rejects: dict[str, int] = {}
        context = zmq.Context.instance()
        self.pull = configure(context.socket(zmq.PULL), settings, serve="sink")
        self.pull.setsockopt(zmq.RCVHWM, 100_000)
        bind(self.pull, settings.voe_bind_ip, settings.voe_results_port, "VOE_RESULTS_PORT")
        self.acks = configure(context.socket(zmq.DEALER), settings, linger_ms=1000,
                              connect_to="master")
        self.acks.setsockopt(zmq.SNDHWM, ACKS_HWM)
        self.acks.connect(f"tcp://{settings.master_ip}:{settings.voe_control_port}")

    def run(self) -> int:
        """Receive and store until SIGTERM or SIGINT."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("sink listening on tcp://%s:%d, storing in %s, acknowledging to tcp://%s:%d",
                 self.settings.voe_bind_ip, self.settings.voe_results_port, self.store,
                 self.settings.master_ip, self.settings.voe_control_port)
        next_progress = time.monotonic() + PROGRESS_INTERVAL
        self.publishing.start()
        gcpolicy.settle()
        try:
            while not self.stopping:
                self._beat(time.monotonic())
                if self.pull.poll(100):
                    self._store(self._receive())
                    metrics.publish_counts(metrics.SINK_REJECTED,
                                           metrics.reject_reasons(self.rejects.counts),
                                           self.published_rejects)
                self.yields.check()
                if time.monotonic() >= next_progress:
                    self._log_progress()
                    next_progress = time.monotonic() + PROGRESS_INTERVAL
        finally:
            if self.wait is None:
                self.yields.check(force=True)
            else:
                log.info("stopping while waiting for the store: %d results not stored nor "
                         "acknowledged (their leases expire and the jobs run again)",
                         len(self.wait.batch))
            self._log_progress()
            self.publishing.stop()
            self.pull.close(0)
            self.acks.close()
            self.store.close()
            if self.http is not None:
                self.http.stop()
        return 0

    def _stop(self, signum: int, frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self.stopping = True
        self.stopped.set()

    def _receive(self) -> list[Result]:
        """Take every waiting result, up to a batch; reject what does not validate."""
        batch: list[Result] = []
        gather_until = time.monotonic() + GATHER_SECONDS
        while len(batch) < MAX_BATCH:
            try:
                frame = self.pull.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                # A few more milliseconds make bigger, cheaper transactions under load.
                if time.monotonic() < gather_until and self.pull.poll(1):
                    continue
                break
            try:
                message = protocol.decode(frame, self.settings.voe_max_message_bytes)
            except protocol.ProtocolError as error:
                self.rejects.reject("sink", error.reason, str(error))
                continue
            if isinstance(message, Result):
                batch.append(message)
                self.received += 1
            elif isinstance(message, protocol.Results):
                batch.extend(message.results)
                self.received += len(message.results)
            else:
                self.rejects.reject("sink", "unexpected-type", type(message).__name__)
        return batch

    def _beat(self, now: float) -> None:
        """Send the master a heartbeat when one is due, saying what the sink waits for, if any."""
        if now < self.next_beat:
            return
        self.next_beat = now + self.settings.voe_heartbeat_seconds
        waiting = self.wait.describe(now) if self.wait is not None else ""
        try:
            self.acks.send(protocol.encode_heartbeat(waiting=waiting), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the master is away or slow: the next beat says the same, and is newer

    def _store(self, batch: list[Result]) -> None:
        """Save a batch (one commit), then acknowledge every result in it.

        A passing store error holds the batch until the store takes it (or the sink stops:
        then it is never acknowledged and comes back when its leases expire).
        """
        if not batch:
            return
        metrics.SINK_RESULTS.inc(len(batch))
        try:
            saved = self._save(batch)
        except StoreUnavailable as error:
            stored = self._wait_for_store(batch, error)
            if stored is None:
                return
            saved = stored
        self._acknowledge(batch, saved)

    def _save(self, batch: list[Result]) -> list[Saved]:
        """Store a batch in one transaction, timed and counted; return its acknowledgements
        (each status with the stored answer's digest when done)."""
        fares_before = self.store.fares_written
        started = time.monotonic()
        saved = self.store.save_answers(batch)
        metrics.SINK_COMMIT.observe(time.monotonic() - started)
        metrics.SINK_LAST_COMMIT.set_to_current_time()
        metrics.SINK_FARES.inc(self.store.fares_written - fares_before)
        return saved

    def _wait_for_store(self, batch: list[Result], error: StoreUnavailable) -> list[Saved] | None:
        """Retry ``batch`` on a fresh connection, with capped backoff, until the store takes it.

        Nothing is received meanwhile; heartbeats go on. Returns the acknowledgements, or
        None when the sink is asked to stop first. A fatal ``StoreError`` propagates.
        """
        now = time.monotonic()
        wait = self.wait = StoreWait(batch, error, now)
        wait.remind_at = now + WAIT_REMINDER_SECONDS
        delay = wait.failed(error, now)
        metrics.SINK_STORE_ERRORS.labels(error.kind).inc()
        metrics.SINK_STORE_WAITING.set(1)
        metrics.SINK_RESULTS_HELD.set(len(batch))
        log.warning("waiting for the store %s: %s; %d results held, retrying in %.1f s",
                    self.store, error.reason, len(batch), delay)
        while not self.stopping:
            now = time.monotonic()
            self._beat(now)
            if now >= wait.remind_at:
                wait.remind_at = now + WAIT_REMINDER_SECONDS
                log.warning("still waiting for the store %s after %.0f s: %s; %d results held, "
                            "retrying in %.1f s", self.store, now - wait.since, wait.error.reason,
                            len(batch), max(0.0, wait.retry_at - now))
            if now < wait.retry_at:
                self.stopped.wait(min(WAIT_SLICE_SECONDS, wait.retry_at - now))
                continue
            try:
                self.store.reconnect()
                saved = self._save(batch)
            except StoreUnavailable as again:
                metrics.SINK_STORE_ERRORS.labels(again.kind).inc()
                delay = wait.failed(again, time.monotonic())
                log.debug("store still unavailable (%s); retrying in %.1f s", again.reason, delay)
                continue
            log.info("store back after %.1f s; %d results stored",
                     time.monotonic() - wait.since, len(batch))
            self.wait = None
            metrics.SINK_STORE_WAITING.set(0)
            metrics.SINK_RESULTS_HELD.set(0)
            return saved
        return None

    def _acknowledge(self, batch: list[Result], saved: list[Saved]) -> None:
        """Acknowledge every stored result to the master (after commit), counted by status."""
        for status, count in Counter(status for status, _ in saved).items():
            metrics.SINK_ACKS.labels(status).inc(count)
        self.yields.saw(batch)
        acks = [protocol.Ack(r.job.cycle, r.job.id, r.job.attempt, status, r.error,
                             protocol.ack_days(r.fares) if status == "done" and r.job.calendar
                             else (), answer)
                for r, (status, answer) in zip(batch, saved, strict=True)]
        self.stored += sum(1 for status, _ in saved if status == "done")
        for start in range(0, len(acks), protocol.MAX_ITEMS):
            try:
                self.acks.send(protocol.encode_acks(acks[start:start + protocol.MAX_ITEMS]),
                               zmq.NOBLOCK)
            except zmq.Again:
                metrics.SINK_ACKS_DROPPED.inc(min(protocol.MAX_ITEMS, len(acks) - start))
                log.warning("master not reachable; %d acknowledgements dropped (their leases "
                            "will expire and the jobs run again)", len(acks))

    def _log_progress(self) -> None:
        log.info("progress: %d results received, %d acknowledged as stored (repeats of "
                 "stored results included), %d messages rejected",
                 self.received, self.stored, self.rejects.total)


def run_sink(settings: Settings) -> int:
    """Run a sink in this process until it is stopped."""
    private.make_dir(settings.data_dir)
    return Sink(settings).run()
