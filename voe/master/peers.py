"""The master's view of its workers: credit, held jobs and liveness.

A worker's credit is its concurrency plus a small prefetch; every job sent takes
one, every job the worker reports finished gives it back. So a slow or dead worker
can never hoard more than that, and the master knows exactly which jobs to take
back when a worker's heartbeats stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Key = tuple[int, str]


@dataclass
class Peer:
    """One connected worker, known by its ZeroMQ identity."""

    identity: bytes
    name: str
    concurrency: int
    prefetch: int
    address: str = ""  # "IP (hostname)" as the worker told it, "" when unknown
    held: set[Key] = field(default_factory=set)
    max_held: int = 0
    finished: int = 0
    errors: int = 0  # attempts that ended failed (to retry or for good) or expired
    # Its identities per route as it last reported them: (route, blocks, jobs, retired).
    identities: tuple[tuple[str, int, int, int], ...] = ()
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def capacity(self) -> int:
        """Most jobs this worker may hold at once."""
        return self.concurrency + self.prefetch

    @property
    def free(self) -> int:
        """Jobs this worker can take now."""
        return self.capacity - len(self.held)

    def take(self, key: Key) -> None:
        """Count a job sent to this worker."""
        self.held.add(key)
        self.max_held = max(self.max_held, len(self.held))


class Peers:
    """Every known worker, with the lookups the master needs."""

    def __init__(self, liveness_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.liveness_seconds = liveness_seconds
        self.clock = clock  # monotonic seconds (a fake one in tests)
        self.by_identity: dict[bytes, Peer] = {}
        self.holder: dict[Key, Peer] = {}

    def __len__(self) -> int:
        return len(self.by_identity)

    def get(self, identity: bytes) -> Peer | None:
        """The worker with this identity, marking it seen."""
        peer = self.by_identity.get(identity)
        if peer is not None:
            peer.last_seen = self.clock()
        return peer

    def join(self, identity: bytes, name: str, concurrency: int, prefetch: int,
             held: tuple[Key, ...] = (), address: str = "") -> Peer:
        """Register (or re-register) a worker; ``held`` are jobs it already runs."""
        peer = self.by_identity.get(identity)
        if peer is None:
            peer = Peer(identity, name, concurrency, prefetch, last_seen=self.clock())
            self.by_identity[identity] = peer
        peer.name, peer.concurrency, peer.prefetch = name, concurrency, prefetch
        peer.address = address
        for key in held:
            self.assign(key, peer)
        return peer

    def assign(self, key: Key, peer: Peer) -> None:
        """Record that ``peer`` holds ``key`` (moving it from any other worker)."""
        previous = self.holder.get(key)
        if previous is not None and previous is not peer:
            previous.held.discard(key)
        self.holder[key] = peer
        peer.take(key)

    def release(self, peer: Peer, keys: tuple[Key, ...]) -> None:
        """The worker says it no longer holds ``keys``."""
        for key in keys:
            if key in peer.held:
                peer.held.discard(key)
                peer.finished += 1
                if self.holder.get(key) is peer:
                    del self.holder[key]

    def forget_key(self, key: Key) -> None:
        """Drop a key from whichever worker holds it (its job is over)."""
        peer = self.holder.pop(key, None)
        if peer is not None and key in peer.held:
            peer.held.discard(key)
            peer.finished += 1

    def remove(self, identity: bytes) -> Peer | None:
        """Forget a worker that left or went silent; return it with the jobs it held."""
        peer = self.by_identity.pop(identity, None)
        if peer is not None:
            for key in peer.held:
                if self.holder.get(key) is peer:
                    del self.holder[key]
        return peer

    def silent(self) -> list[Peer]:
        """Workers not heard from within the liveness window."""
        limit = self.clock() - self.liveness_seconds
        return [peer for peer in self.by_identity.values() if peer.last_seen < limit]

    def with_credit(self) -> list[Peer]:
        """Workers that can take jobs, the freest first (spreads work evenly)."""
        ready = [peer for peer in self.by_identity.values() if peer.free > 0]
        ready.sort(key=lambda peer: peer.free, reverse=True)
        return ready
