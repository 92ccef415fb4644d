"""The sink: receive results, store them once, commit, and only then acknowledge.

Results arrive on a PULL socket from every worker. Each batch is validated, saved
in one store transaction (idempotent per job and cycle), committed, and then
acknowledged to the master, which marks the jobs done. A result that never makes
it (a killed sink, a lost frame) is not acknowledged, so its lease expires and the
job runs again; a result stored twice is impossible by the store's design.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from pathlib import Path

import zmq

from voe import metrics, protocol, publish
from voe.logs import RejectCounter
from voe.model import Result
from voe.settings import Settings
from voe.sockets import bind, configure
from voe.store import open_store
from voe.web.server import serve_metrics
from voe.yieldwatch import YieldWatch

log = logging.getLogger("voe.sink")

# Most results stored in one transaction.
MAX_BATCH = 2000
# Seconds the sink keeps gathering results into one transaction while they keep coming.
GATHER_SECONDS = 0.005
# Seconds between progress lines in sink.log.
PROGRESS_INTERVAL = 10.0
# Acknowledgements queued for an absent master before new ones are dropped (leases cover them).
ACKS_HWM = 10_000


class Sink:
    """Stores what workers push and acknowledges it to the master."""

    def __init__(self, settings: Settings, store_path: Path | None = None) -> None:
        self.settings = settings
        # First, so a busy metrics port stops the sink before it holds anything else.
        self.http = serve_metrics(metrics.SINK, settings.voe_http_host,
                                  settings.voe_sink_http_port, settings.voe_http_token)
        store_target = store_path or settings.voe_store_url or settings.data_dir / "fares.db"
        self.store = open_store(store_target)
        # The outbox's drainers: a thread per destination, each with its own store
        # connection, so publishing never holds up receiving, storing and acknowledging.
        self.publishing = publish.Publishing(settings, store_target)
        # Events only when something publishes them: none would pile up unread.
        self.store.keep_events(bool(self.publishing.drainers))
        self.rejects = RejectCounter(log)
        self.yields = YieldWatch(self.store)
        self.stopping = False
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
        try:
            while not self.stopping:
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
            self.yields.check(force=True)
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

    def _store(self, batch: list[Result]) -> None:
        """Save a batch (one commit), then acknowledge every result in it."""
        if not batch:
            return
        metrics.SINK_RESULTS.inc(len(batch))
        fares_before = self.store.fares_written
        started = time.monotonic()
        statuses = self.store.save(batch)
        metrics.SINK_COMMIT.observe(time.monotonic() - started)
        metrics.SINK_LAST_COMMIT.set_to_current_time()
        metrics.SINK_FARES.inc(self.store.fares_written - fares_before)
        for status, count in Counter(statuses).items():
            metrics.SINK_ACKS.labels(status).inc(count)
        self.yields.saw(batch)
        acks = [protocol.Ack(r.job.cycle, r.job.id, r.job.attempt, status, r.error)
                for r, status in zip(batch, statuses, strict=True)]
        self.stored += sum(1 for status in statuses if status == "done")
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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Sink(settings).run()
