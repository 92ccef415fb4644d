"""Per-client limits of the demo airline: a rate limit and a quota followed by a block.

Both are faults an airline's anti-bot defences inflict (``rate_limit``,
``block_after``); the app answers 429 or 403 when they say no.
"""

from __future__ import annotations

import time

from voe.demo.airline.stats import MAX_TRACKED_CLIENTS


class RateLimit:
    """A token bucket per client address: ``rate`` searches a second, bursts of one second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        """Spend a token of ``client``; False when it asks faster than the limit."""
        now = time.monotonic()
        capacity = max(1.0, self.rate)
        if client not in self.buckets and len(self.buckets) >= MAX_TRACKED_CLIENTS:
            self.buckets.clear()
        tokens, then = self.buckets.get(client, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


class BlockAfter:
    """Per client address: ``limit`` searches answered, then every request blocked for
    ``seconds``, after which the address starts over (an airline's anti-bot quota)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clients: dict[str, tuple[int, float]] = {}  # address -> (searches, blocked until)

    def blocks(self, client: str) -> bool:
        """Count a search of ``client``; True when it is (now) blocked."""
        now = time.monotonic()
        if client not in self.clients and len(self.clients) >= MAX_TRACKED_CLIENTS:
            self.clients.clear()
        searches, until = self.clients.get(client, (0, 0.0))
        if until:
            if now < until:
                return True
            searches, until = 0, 0.0  # the block is over: a fresh quota
        searches += 1
        if searches > self.limit:
            until = now + self.seconds
        self.clients[client] = (searches, until)
        return bool(until)
