"""The worker: gevent greenlets run backends on leased jobs and push results to the sink.

Import this module only after ``gevent.monkey.patch_all()`` (the ``voe worker``
command does it first), so requests' sockets cooperate with the hub.

Flow control is credit: the worker announces its concurrency and prefetch in its
hello, and reports every job it has finished with, so the master never sends more
than it can hold. Heartbeats go both ways; when the master falls silent the
worker reconnects with a new identity and re-announces the jobs it still holds,
so none is lost or run twice on its account.
"""

from __future__ import annotations

import logging
import os
import signal
import socket as stdlib_socket
import time
from typing import Any

import gevent
import gevent.event
import gevent.queue
import zmq.green as zmq

from voe import gcpolicy, protocol
from voe.backends import UnknownBackend, get_backend
from voe.backends.base import BackendError, ParseError, check_search
from voe.logs import RejectCounter
from voe.model import OK, PARSE, PERMANENT, TRANSIENT, FieldCount, Result, SearchJob
from voe.settings import Settings
from voe.sockets import configure
from voe.worker.credit import PrefetchGauge
from voe.worker.farepipeline import FarePipeline
from voe.worker.http import new_session
from voe.worker.keptpages import keep_page

log = logging.getLogger("voe.worker")

# Seconds a stopping worker waits for its running searches before leaving.
STOP_GRACE = 10.0
# Results queued for the sink before the worker stops taking jobs (ZeroMQ high-water mark).
RESULTS_HWM = 1000
# Most results joined into one frame for the sink.
MAX_RESULTS_PER_FRAME = 200
# Seconds between reports of throttling answers (HTTP 429, blocks) to the master.
THROTTLE_REPORT_SECONDS = 0.5
# Seconds between reports of the identities' counts when nothing changed.
IDENTITY_REPORT_SECONDS = 5.0
# Seconds a frame may wait in ZeroMQ after the socket closes.
LINGER_MS = 2000


def local_address(host: str, port: int) -> str:
    """This machine as "IP (hostname)", the IP being its route to the master (for the dashboard)."""
    hostname = stdlib_socket.gethostname()
    try:  # connecting a UDP socket picks the route and local address without sending anything
        family, kind, _, _, target = stdlib_socket.getaddrinfo(
            host, port, type=stdlib_socket.SOCK_DGRAM)[0]
        with stdlib_socket.socket(family, kind) as probe:
            probe.connect(target)
            ip = probe.getsockname()[0]
    except OSError as error:
        log.info("cannot tell the local address towards %s:%d (%s); the master sees only "
                 "the hostname", host, port, error)
        return hostname[:protocol.MAX_ADDRESS]
    return f"{ip} ({hostname})"[:protocol.MAX_ADDRESS]


class Worker:
    """Runs jobs from the master with ``concurrency`` greenlets."""

    def __init__(self, settings: Settings, concurrency: int | None = None,
                 prefetch: int | None = None, name: str | None = None,
                 once: bool = False) -> None:
        self.settings = settings
        # With ``once`` the worker leaves when the master says its collection is over.
        self.once = once
        # The master said goodbye: wait for a new one without a warning every few seconds.
        self.master_gone = False
        # The silence was already reported: reconnect quietly until the master answers.
        self.master_silent = False
        self.concurrency = concurrency or settings.voe_concurrency
        self.prefetch = settings.voe_prefetch if prefetch is None else prefetch
        # The prefetch asked of the master: the configured one, more while jobs are fast.
        self.gauge = PrefetchGauge(self.prefetch, self.concurrency,
                                   settings.voe_prefetch_seconds)
        self.name = name or f"{stdlib_socket.gethostname()}-{os.getpid()}"
        self.address = local_address(settings.master_ip, settings.voe_jobs_port)
        self.context = zmq.Context.instance()
        self.rejects = RejectCounter(log)
        self.jobs: gevent.queue.Queue[SearchJob] = gevent.queue.Queue()
        self.to_master: gevent.queue.Queue[bytes] = gevent.queue.Queue()
        self.to_sink: gevent.queue.Queue[tuple[bytes, tuple[int, str]]] = gevent.queue.Queue()
        self.held: dict[tuple[int, str], SearchJob] = {}
        self.finished: list[tuple[int, str]] = []
        self.finished_ready = gevent.event.Event()
        self.stopping = gevent.event.Event()
        self.backends: dict[str, Any] = {}
        # Every answer passes the fare pipeline before it becomes a result; its
        # field_counts are the per-field yield of each backend (each result carries its
        # answer's share of them to the sink).
        self.fare_pipeline = FarePipeline(settings)
        self.http = new_session(settings, self.concurrency)  # a pooled connection per search
        self.master_epoch = ""
        self.last_master = time.monotonic()
        self.running = 0
        self.done = 0
        self.dealer = self._connect_master()
        self.push = configure(self.context.socket(zmq.PUSH), settings, LINGER_MS,
                              connect_to="sink")
        self.push.setsockopt(zmq.SNDHWM, RESULTS_HWM)
        self.push.setsockopt(zmq.IMMEDIATE, 1)
        self.push.connect(f"tcp://{settings.sink_ip}:{settings.voe_results_port}")

    def _connect_master(self) -> zmq.Socket:
        dealer = configure(self.context.socket(zmq.DEALER), self.settings, connect_to="master")
        dealer.connect(f"tcp://{self.settings.master_ip}:{self.settings.voe_jobs_port}")
        return dealer

    def run(self) -> int:
        """Work until SIGTERM or SIGINT, then finish running searches and leave."""
        gevent.signal_handler(signal.SIGTERM, self.stopping.set)
        gevent.signal_handler(signal.SIGINT, self.stopping.set)
        log.info("worker %s at %s: concurrency %d, prefetch %d, master tcp://%s:%d, "
                 "sink tcp://%s:%d", self.name, self.address, self.concurrency, self.prefetch,
                 self.settings.master_ip, self.settings.voe_jobs_port, self.settings.sink_ip,
                 self.settings.voe_results_port)
        gcpolicy.settle()
        self._hello()
        runners = [gevent.spawn(self._runner) for _ in range(self.concurrency)]
        self.receiver = gevent.spawn(self._receive, self.dealer)
        helpers = [gevent.spawn(self._send_master), gevent.spawn(self._send_sink),
                   gevent.spawn(self._heartbeat), gevent.spawn(self._report_throttling)]
        self.stopping.wait()
        log.info("stopping: %d running, %d queued", self.running, self.jobs.qsize())
        gevent.killall(runners, block=False)
        deadline = time.monotonic() + STOP_GRACE
        gevent.joinall(runners, timeout=STOP_GRACE)
        self._close_backends()
        while not self.to_sink.empty() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self._flush_finished()
        gevent.sleep(0.05)
        self._try_send_master(protocol.encode_bye())
        gevent.sleep(0.1)
        gevent.killall([*helpers, self.receiver])
        self.dealer.close(0)
        self.push.close(LINGER_MS)
        log.info("worker %s stopped after %d jobs (%d rejected messages)", self.name,
                 self.done, self.rejects.total)
        return 0

    def _close_backends(self) -> None:
        """Let backends that hold resources (a browser) release them; a failure is logged."""
        for name, backend in self.backends.items():
            close = getattr(backend, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:  # one backend's cleanup must not stop the others'
                log.exception("backend %s failed to close", name)

    def _hello(self) -> None:
        self.to_master.put(protocol.encode_hello(self.name, self.concurrency,
                                                 self.gauge.current, list(self.held),
                                                 self.address))

    # Greenlets ---------------------------------------------------------------

    def _receive(self, dealer: zmq.Socket) -> None:
        """Take jobs and heartbeats from the master (a reconnect replaces this greenlet)."""
        while True:
            frame = dealer.recv(copy=True)
            self.last_master = time.monotonic()
            if self.master_silent:
                log.info("the master answers again")
                self.master_silent = False
            self._on_master(frame)

    def _on_master(self, frame: bytes) -> None:
        try:
            message = protocol.decode(frame, self.settings.voe_max_message_bytes)
        except protocol.ProtocolError as error:
            self.rejects.reject("worker", error.reason, str(error))
            return
        if isinstance(message, protocol.Jobs):
            for job in message.jobs:
                self.held[(job.cycle, job.id)] = job
                self.jobs.put(job)
        elif isinstance(message, protocol.Bye):
            if self.once:
                log.info("the master finished its collection; leaving (--once)")
                self.stopping.set()
            elif not self.master_gone:
                log.info("the master finished its collection and left; waiting quietly for a "
                         "master to start again (stop this worker with Ctrl-C, or run workers "
                         "with --once to have them leave with the master)")
            self.master_gone = True
        elif isinstance(message, protocol.Heartbeat):
            if self.master_gone:
                log.info("a master is back (epoch %s)", message.epoch)
                self.master_gone = False
            if message.epoch != self.master_epoch:
                if self.master_epoch:
                    log.info("master restarted (epoch %s); saying hello again", message.epoch)
                    self._hello()
                self.master_epoch = message.epoch
        else:
            self.rejects.reject("worker", "unexpected-type", type(message).__name__)

    def _send_master(self) -> None:
        """The only greenlet that sends to the master; frames for an absent master are dropped.

        Nothing is lost by dropping: a reconnect says hello again with every job held,
        and the sink's acknowledgements settle the master's accounts.
        """
        while True:
            frame = self.to_master.get()
            self._try_send_master(frame)

    def _try_send_master(self, frame: bytes) -> None:
        try:
            self.dealer.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            log.debug("master not reachable; a message to it was dropped")

    def _send_sink(self) -> None:
        """The only greenlet that sends to the sink; a job is finished once its result is out.

        Results waiting together leave as one frame, up to half the message limit.
        """
        budget = self.settings.voe_max_message_bytes // 2
        while True:
            frames, keys = [], []
            size = 0
            frame, key = self.to_sink.get()
            while True:
                frames.append(frame)
                keys.append(key)
                size += len(frame)
                if size >= budget or len(frames) >= MAX_RESULTS_PER_FRAME or self.to_sink.empty():
                    break
                frame, key = self.to_sink.peek()
                if size + len(frame) > budget:
                    break
                self.to_sink.get()
            self.push.send(frames[0] if len(frames) == 1 else protocol.encode_results(frames))
            for key in keys:
                self.held.pop(key, None)
            self.finished.extend(keys)
            if len(self.finished) == len(keys):
                gevent.spawn(self._flush_finished_soon)

    def _flush_finished_soon(self) -> None:
        """Let every runner that is ready finish first, so one message returns their credit."""
        gevent.sleep(0)
        self._flush_finished()

    def _flush_finished(self) -> None:
        if self.finished:
            keys, self.finished = self.finished, []
            self.to_master.put(protocol.encode_finished(keys, self.gauge.finished(len(keys))))

    def _heartbeat(self) -> None:
        """Beat every interval; reconnect when the master has been silent too long."""
        interval = self.settings.voe_heartbeat_seconds
        patience = interval * self.settings.voe_heartbeat_liveness
        while True:
            gevent.sleep(interval)
            if time.monotonic() - self.last_master > patience:
                if self.master_gone or self.master_silent:
                    log.debug("still no master; reconnecting")
                else:
                    log.warning("no word from the master for %.1fs; reconnecting until it "
                                "answers (said once)", patience)
                    self.master_silent = True
                self.receiver.kill()
                old, self.dealer = self.dealer, self._connect_master()
                old.close(0)
                self.receiver = gevent.spawn(self._receive, self.dealer)
                self.last_master = time.monotonic()
                self.master_epoch = ""
                self._hello()
            self.to_master.put(protocol.encode_heartbeat())

    def _report_throttling(self) -> None:
        """Tell the master, per backend, how often airlines throttled us, so it paces the fleet;
        with it, the identities' counts per route (blocks, jobs, retired) when they changed,
        and every ``IDENTITY_REPORT_SECONDS`` anyway (a reconnected worker is a new peer)."""
        sent_version, sent_at = -1, 0.0
        while True:
            gevent.sleep(THROTTLE_REPORT_SECONDS)
            counts = self.http.throttled.take()
            pool = getattr(self.http, "identities", None)  # None: the middleware was removed
            identities = None
            if pool is not None and (pool.version != sent_version or counts or
                                     time.monotonic() - sent_at > IDENTITY_REPORT_SECONDS):
                sent_version, sent_at = pool.version, time.monotonic()
                identities = pool.counts()
            if counts:
                log.info("throttled by airlines: %s", counts)
            if counts or identities:
                self.to_master.put(protocol.encode_throttled(counts, identities))

    def _runner(self) -> None:
        """Run jobs one at a time, forever."""
        while True:
            job = self.jobs.get()
            self.running += 1
            try:
                result = self.search(job)
            finally:
                self.running -= 1
            self.done += 1
            frame = protocol.encode_result(result)
            if len(frame) > self.settings.voe_max_message_bytes:
                error = (f"{len(result.fares)} fares make a {len(frame)}-byte result, over "
                         f"VOE_MAX_MESSAGE_BYTES={self.settings.voe_max_message_bytes}")
                log.warning("job %s: %s", job.id, error)
                frame = protocol.encode_result(result._replace(status=PARSE, fares=(), error=error))
            self.to_sink.put((frame, (job.cycle, job.id)))

    def search(self, job: SearchJob) -> Result:
        """Run one job's backend and turn whatever happens into a result (with the fare
        pipeline's per-field counts of an answer it refused; an ok answer's are implied:
        every field of every fare valid)."""
        started = time.perf_counter()
        fares: tuple = ()
        error = None
        counts: tuple[FieldCount, ...] = ()
        try:
            backend = self.backends.get(job.backend)
            if backend is None:
                backend = self.backends[job.backend] = get_backend(job.backend, self.settings)
            check_search(backend, job)
            with self.http.fetching_for(job.backend, backend, job.id):
                answer = backend.search(job, self.http)
            fares = tuple(self.fare_pipeline.run(answer, job))
            status = OK
        except BackendError as failure:
            status, error = failure.kind, str(failure) or type(failure).__name__
            if isinstance(failure, ParseError):
                counts = failure.field_counts
            if failure.page is not None:
                kept = keep_page(self.settings.data_dir, job, failure.page,
                                 self.settings.voe_keep_page_bytes)
                if kept is not None:
                    error = f"page kept at {kept}: {error}"
        except UnknownBackend as failure:  # no backend by this name here: retries cannot help
            status, error = PERMANENT, str(failure)
        except Exception as failure:  # any bug, a KeyError too, may pass: retry, keep the worker
            log.exception("backend %s or the fare pipeline crashed on %s", job.backend, job.id)
            status, error = TRANSIENT, f"{type(failure).__name__}: {failure}"
        if status != OK:
            log.info("job %s attempt %d: %s: %s", job.id, job.attempt, status, error)
        return Result(job, status, fares, error, self.name, time.perf_counter() - started,
                      counts)
