"""What travels between voe's roles: the protocol's version, message type names and
limits, ``ProtocolError``, and the typed messages ``voe.protocol.decode`` returns.

Split from ``voe.protocol`` (the encoding and decoding) to keep that module short; it
re-exports every name here, so import them from ``voe.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from voe.model import RESULT_STATUSES, Result, SearchJob

VERSION = 1
# Default cap on one frame; sockets enforce it too (zmq.MAXMSGSIZE).
MAX_MESSAGE_BYTES = 1 << 20
# Most items in any array (jobs per batch, fares per result, acks per batch).
MAX_ITEMS = 10_000
# Longest error text a result or ack carries.
MAX_ERROR = 1000
# Longest network address a worker tells in its hello ("IP (hostname)").
MAX_ADDRESS = 300
# Most routes (proxies) a throttled message counts identities for, and a route name's length.
MAX_ROUTES = 512
MAX_ROUTE_NAME = 300
# Longest search options text a job carries, and a multi-city job's legs.
MAX_OPTIONS = 120
MAX_LEGS_TEXT = 200

HELLO, FINISHED, HEARTBEAT, BYE, JOBS, RESULT, RESULTS, ACKS, THROTTLED = (
    "hello", "finished", "heartbeat", "bye", "jobs", "result", "results", "acks", "throttled",
)


class ProtocolError(Exception):
    """A frame that is not a valid voe message; ``reason`` is short and countable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Hello:
    """A worker introduces itself, the credit it can take and where it runs.

    ``address`` is optional on the wire (older workers send none): "" when unknown.
    """

    worker: str
    concurrency: int
    prefetch: int
    held: tuple[tuple[int, str], ...] = ()
    address: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    """Jobs a worker has finished with (their results are on the way to the sink), and the
    prefetch it now asks for when its pace changed it (None: unchanged; see voe.worker.credit)."""

    keys: tuple[tuple[int, str], ...]
    prefetch: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Liveness, both ways; the master's carries its epoch (new at every start), the sink's
    what it is waiting for (empty while it stores normally)."""

    epoch: str = ""
    waiting: str = ""


@dataclass(frozen=True, slots=True)
class Bye:
    """A worker leaves cleanly."""


class RouteCount(NamedTuple):
    """A worker's identities on one route (``host:port`` of a proxy, or ``direct``) so far:
    blocks met, jobs served, identities retired."""

    route: str
    blocks: int
    jobs: int
    retired: int


@dataclass(frozen=True, slots=True)
class Throttled:
    """How many throttling answers a worker saw per backend since its last report, and the
    counts of its identities per route (totals since the worker started; empty when the
    worker sends none, as older ones do)."""

    counts: tuple[tuple[str, int], ...]
    identities: tuple[RouteCount, ...] = ()


@dataclass(frozen=True, slots=True)
class Results:
    """Several results sent as one frame."""

    results: tuple[Result, ...]


@dataclass(frozen=True, slots=True)
class Jobs:
    """Jobs leased to a worker."""

    jobs: tuple[SearchJob, ...]


class Ack(NamedTuple):
    """The sink's word on one attempt: ``status`` is "done" or the failure kind. A stored
    calendar's ``days`` are its (date, price) pairs, for the master to search the cheapest
    in full when the plan says so (empty for any other job). A stored answer's ``answer``
    is its digest (``voe.answers``), for the continuous schedulers to tell a change."""

    cycle: int
    job_id: str
    attempt: int
    status: str
    error: str | None
    days: tuple[tuple[str, str], ...] = ()
    answer: int | None = None


@dataclass(frozen=True, slots=True)
class Acks:
    """A batch of acknowledgements, sent after the store committed them."""

    acks: tuple[Ack, ...]


Message = Hello | Finished | Heartbeat | Bye | Throttled | Jobs | Result | Results | Acks
ACK_STATUSES = ("done", *RESULT_STATUSES[1:])
