"""Per-host limits of a worker: requests at once to one host, and pauses after a Retry-After.

An airline judges a worker by how hard its address presses. ``VOE_HOST_CONCURRENCY``
caps the requests a worker has in flight to one host (``scheme://host:port``; 0: only
``VOE_CONCURRENCY`` limits them). And while an airline's ``Retry-After`` runs (on a
429, 503 or 413, at most ``MAX_RETRY_AFTER``), no new request of the worker leaves
for that host, so 429s slow the worker down instead of burning attempts.

A request takes its host's slot in ``process_request`` and holds it until its answer
is back here, body included (the session reads every body in its innermost download),
or its error is. The slot is given back on every path: the answer, an error, and
``fetch_finished`` for a fetch cut short by anything else (``gevent.Timeout``,
``GreenletExit``). At order 800 the middleware sits nearer the network than retries
(550): each try waits for the pause and takes a slot again, and none is held while a
retry waits. Waiting for a pause or a slot ends at the fetch's deadline
(``DeadlinePassed``), and a host's pause is waited for at most ``MAX_PAUSE_WAITS`` times.

Slots are a ``threading.BoundedSemaphore`` per host: gevent's own once the worker has
monkey-patched, so a greenlet waiting for a slot yields to the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from voe.worker.fetch.chain import FetchRequest
from voe.worker.fetch.deadline import deadline_error
from voe.worker.fetch.retry import RETRY_AFTER_STATUSES, retry_after

# Most times a request waits for a host's pause to end (each wait lasts the whole pause).
MAX_PAUSE_WAITS = 100
# ``FetchRequest.meta`` key: the host whose slot the request holds.
SLOT = "host_slot"


class _Host:
    """What one host allows: a semaphore of concurrent requests and a pause until a time."""

    def __init__(self, limit: int) -> None:
        # threading's semaphore is gevent's once the worker has monkey-patched.
        self.slots = threading.BoundedSemaphore(limit) if limit else None
        self.resume_at = 0.0
        self.in_flight = 0


class HostLimits:
    """Per-host gates of one session: at most ``limit`` requests at once (0: no limit), and a
    pause after an airline's Retry-After during which no new request leaves for that host."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._hosts: dict[str, _Host] = {}

    def _host(self, host: str) -> _Host:
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = _Host(self.limit)
        return gate

    def pause(self, host: str, seconds: float) -> None:
        """Hold back new requests to ``host`` for ``seconds`` (a longer pause already set stays)."""
        gate = self._host(host)
        gate.resume_at = max(gate.resume_at, time.monotonic() + seconds)

    def in_flight(self, host: str) -> int:
        """Requests to ``host`` holding a slot now (taken and not given back)."""
        gate = self._hosts.get(host)
        return 0 if gate is None else gate.in_flight

    def enter(self, host: str, deadline: float | None = None) -> bool:
        """Wait for the host's pause to end and a free slot, and take it. False, with nothing
        taken, when ``deadline`` (a ``time.monotonic`` instant) would pass first."""
        gate = self._host(host)
        for _ in range(MAX_PAUSE_WAITS):
            wait = gate.resume_at - time.monotonic()
            if wait <= 0:
                break
            if deadline is not None and gate.resume_at >= deadline:
                return False
            time.sleep(wait)
        if gate.slots is not None:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not gate.slots.acquire(timeout=timeout):
                return False
        gate.in_flight += 1
        return True

    def leave(self, host: str) -> None:
        """Give back a slot of ``host`` taken by ``enter``."""
        gate = self._hosts[host]
        gate.in_flight -= 1
        if gate.slots is not None:
            gate.slots.release()

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Wait for the host's pause to end and a free slot, and hold the slot in the block."""
        self.enter(host)
        try:
            yield
        finally:
            self.leave(host)


class HostLimit:
    """Hold a slot of the request's host for each try, and pause the host on a Retry-After."""

    def __init__(self, limits: HostLimits) -> None:
        self.limits = limits

    @classmethod
    def from_session(cls, session: Any) -> HostLimit:
        """Limits of ``VOE_HOST_CONCURRENCY``, also ``session.hosts`` (one set per session)."""
        session.hosts = HostLimits(session.settings.voe_host_concurrency)
        return cls(session.hosts)

    def process_request(self, request: FetchRequest) -> None:
        """Wait for the host's pause and a slot; ``DeadlinePassed`` if the deadline comes first."""
        if not self.limits.enter(request.host, request.deadline):
            raise deadline_error(request)
        request.meta[SLOT] = request.host

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        """Give the slot back (the body is read), and pause the host for a Retry-After."""
        if self._leave(request) and response.status_code in RETRY_AFTER_STATUSES:
            seconds = retry_after(response.headers)
            if seconds:
                self.limits.pause(request.host, seconds)
        return response

    def process_exception(self, request: FetchRequest, error: Exception) -> None:
        """Give the slot back; the error goes on."""
        self._leave(request)

    def fetch_finished(self, request: FetchRequest) -> None:
        """Give back a slot still held by a fetch cut short."""
        self._leave(request)

    def _leave(self, request: FetchRequest) -> bool:
        """Give back the slot ``request`` holds, if it holds one; True if it did."""
        host = request.meta.pop(SLOT, None)
        if host is None:
            return False
        self.limits.leave(host)
        return True
