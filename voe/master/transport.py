"""The master's wire: two ROUTER sockets, or a stub that lives in the test process.

The jobs port talks with workers (hello, heartbeats, jobs, finished, throttled, bye);
the control port hears the sink (acknowledgements, heartbeats). A transport moves
frames and knows nothing of jobs: ``voe.protocol`` decodes them, the loop acts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import zmq

from voe.settings import Settings
from voe.sockets import bind, configure

JOBS = "jobs"
CONTROL = "control"
# What ``send`` says: delivered, the peer is gone (drop it), or another failure.
SENT, UNREACHABLE, FAILED = "sent", "unreachable", "failed"
# Most messages read from one socket per poll.
DRAIN_LIMIT = 10_000


class ZmqTransport:
    """The master's two bound ROUTER sockets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = zmq.Context.instance()
        self.jobs = self._bind(settings.voe_jobs_port, "VOE_JOBS_PORT")
        self.control = self._bind(settings.voe_control_port, "VOE_CONTROL_PORT")
        self.poller = zmq.Poller()
        self.poller.register(self.jobs, zmq.POLLIN)
        self.poller.register(self.control, zmq.POLLIN)

    def _bind(self, port: int, setting: str) -> zmq.Socket:
        socket = configure(self.context.socket(zmq.ROUTER), self.settings, serve="master")
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.SNDHWM, 10_000)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        bind(socket, self.settings.voe_bind_ip, port, setting)
        return socket

    def receive(self, timeout_ms: int) -> Iterator[tuple[str, list[bytes]]]:
        """Wait up to ``timeout_ms`` for messages; yield ``(port, frames)``, the sink's first."""
        events = dict(self.poller.poll(timeout=timeout_ms))
        for port, socket in ((CONTROL, self.control), (JOBS, self.jobs)):
            if socket not in events:
                continue
            for _ in range(DRAIN_LIMIT):
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                yield port, frames

    def send(self, identity: bytes, frame: bytes) -> str:
        """Send ``frame`` to the worker ``identity`` without blocking."""
        try:
            self.jobs.send_multipart([identity, frame], zmq.NOBLOCK)
        except zmq.ZMQError as error:
            return UNREACHABLE if error.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN) else FAILED
        return SENT

    def close(self, linger_ms: int = 0) -> None:
        """Close both sockets, the jobs port after ``linger_ms`` for its last messages."""
        self.jobs.close(linger_ms)
        self.control.close(0)


class StubTransport:
    """A transport in memory: tests put messages in ``inbox`` and read ``sent``."""

    def __init__(self) -> None:
        self.inbox: deque[tuple[str, list[bytes]]] = deque()
        self.sent: list[tuple[bytes, bytes]] = []
        self.unreachable: set[bytes] = set()
        self.closed = False

    def deliver(self, port: str, identity: bytes, frame: bytes) -> None:
        """Queue ``frame`` from ``identity`` on ``port`` (``JOBS`` or ``CONTROL``)."""
        self.inbox.append((port, [identity, frame]))

    def receive(self, timeout_ms: int) -> Iterator[tuple[str, list[bytes]]]:
        """Everything delivered so far (never waits)."""
        while self.inbox:
            yield self.inbox.popleft()

    def send(self, identity: bytes, frame: bytes) -> str:
        """Record ``frame``, or refuse it for an identity in ``unreachable``."""
        if identity in self.unreachable:
            return UNREACHABLE
        self.sent.append((identity, frame))
        return SENT

    def close(self, linger_ms: int = 0) -> None:
        """Nothing to close."""
        self.closed = True
