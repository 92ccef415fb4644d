"""When a failed job may run again: capped exponential backoff with jitter, per route.

A failed attempt (an error, a block, throttling) waits ``base * 2**(attempt - 1)``
seconds, at most ``cap``, each wait varied by +/-20% so a fleet's retries do not
arrive together; the master writes the time into the ledger (a job is not leased
before it), so a restart keeps the pause. With the defaults (5 attempts, 10 s
doubling) a job outlives an airline outage of about two minutes before it fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Defaults of a plan's [plan] table (each route table may override them).
MAX_ATTEMPTS = 5
RETRY_DELAY = 10.0
RETRY_DELAY_MAX = 600.0
# How much each wait varies around its nominal value (a fraction of it).
JITTER = 0.2


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a job is tried, and how long it waits between attempts."""

    max_attempts: int = MAX_ATTEMPTS
    delay: float = RETRY_DELAY
    delay_max: float = RETRY_DELAY_MAX

    def wait(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after failed attempt number ``attempt`` (1-based)."""
        if self.delay <= 0:
            return 0.0
        nominal = min(self.delay_max, self.delay * 2.0 ** min(max(attempt, 1) - 1, 60))
        spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
        return min(self.delay_max, nominal * spread)

    def gives_up(self, attempt: int) -> bool:
        """Whether failed attempt number ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts
