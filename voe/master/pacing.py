"""Fleet-wide politeness: the master paces the leases it hands out per airline.

Each backend (one airline site) has a token bucket filled at its budget of
requests per second, shared by every worker because only the master hands out
jobs. When workers report throttling (HTTP 429, blocks), the rate drops by 40%,
at most once per two seconds; a quiet second lets it grow back by a tenth, until
the budget (or no limit) is reached again. Scrapy's AutoThrottle and Celery's
``rate_limit`` act per process; this acts per fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("voe.master")

# Seconds of budget the bucket may save up (a small burst keeps the rate smooth).
BURST_SECONDS = 0.2
# Factor applied to the rate when an airline throttles us.
BACKOFF = 0.6
# Seconds between two slow-downs: jobs already out keep asking for a while after one.
BACKOFF_COOLDOWN = 2.0
# Factor by which the rate grows back after a second without throttling.
RECOVERY = 1.1
# Slowest rate a throttled airline is paced at (jobs per second).
MIN_RATE = 0.5
# An unlimited airline that throttled us is unlimited again once recovered past this.
UNLIMITED_AGAIN = 1000.0


class Pacer:
    """The token bucket of one backend; ``budget`` None means no limit; ``clock`` gives
    monotonic seconds (a fake one in tests)."""

    def __init__(self, name: str, budget: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.budget = budget
        self.clock = clock
        self.rate = budget
        self.tokens = self._capacity()
        self.updated = clock()
        self.last_backoff = -BACKOFF_COOLDOWN
        self.last_change = clock()
        self.window_start = clock()
        self.window_count = 0
        self.observed = 0.0

    def _capacity(self) -> float:
        return max(1.0, (self.rate or 0) * BURST_SECONDS)

    def take(self) -> bool:
        """Spend one token for a job; False when the airline's budget is used up for now."""
        now = self.clock()
        self._observe(now)
        if self.rate is None:
            self.window_count += 1
            return True
        self.tokens = min(self._capacity(), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        self.window_count += 1
        return True

    def _observe(self, now: float) -> None:
        elapsed = now - self.window_start
        if elapsed >= 1.0:
            self.observed = self.window_count / elapsed
            self.window_start, self.window_count = now, 0

    def throttled(self, count: int) -> None:
        """Workers saw ``count`` throttling answers from this airline: slow down."""
        now = self.clock()
        if now - self.last_backoff < BACKOFF_COOLDOWN:
            return
        current = self.rate if self.rate is not None else max(self.observed, MIN_RATE * 2)
        self.rate = max(MIN_RATE, current * BACKOFF)
        self.tokens = min(self.tokens, self._capacity())
        self.last_backoff = self.last_change = now
        log.warning("backend %s: the airline throttled us (%d answers); leasing slowed to "
                    "%.1f jobs/s", self.name, count, self.rate)

    def recover(self) -> None:
        """Called about once a second: grow a throttled rate back towards the budget."""
        now = self.clock()
        if self.rate is None or self.rate == self.budget or now - self.last_change < 1.0:
            return
        self.last_change = now
        grown = self.rate * RECOVERY
        if self.budget is not None and grown >= self.budget:
            self.rate = self.budget
        elif self.budget is None and grown >= UNLIMITED_AGAIN:
            self.rate = None
        else:
            self.rate = grown
            return
        log.info("backend %s: leasing back to %s", self.name,
                 "no limit" if self.rate is None else f"{self.rate:g} jobs/s")


class Pacers:
    """Every backend's pacer, created on first use with its budget from the plan."""

    def __init__(self, budgets: dict[str, float],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budgets = budgets
        self.clock = clock
        self.by_backend: dict[str, Pacer] = {}

    def get(self, backend: str) -> Pacer:
        """The pacer of ``backend``."""
        pacer = self.by_backend.get(backend)
        if pacer is None:
            pacer = self.by_backend[backend] = Pacer(backend, self.budgets.get(backend), self.clock)
        return pacer

    def recover(self) -> None:
        """Let every throttled backend grow back a little."""
        for pacer in self.by_backend.values():
            pacer.recover()
