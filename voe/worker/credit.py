"""A worker's prefetch that follows its pace: enough jobs in hand for a few milliseconds.

A worker's credit is its concurrency plus its prefetch. With jobs of a tenth of a
second, two spare jobs keep every greenlet busy; with jobs of microseconds (an API
answering at once, the null backend), a credit of 18 means a round of messages
(jobs in, results out, credit back) every 18 jobs, and the rounds cost more than the
jobs. So the worker measures how many jobs it finishes per second and asks the master
for a prefetch of ``VOE_PREFETCH_SECONDS`` of that pace, never below ``VOE_PREFETCH``
and never above ``MAX_FACTOR`` times its concurrency. Slow jobs keep the configured
prefetch; a worker that slows down asks for less again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Most prefetch a worker asks for, as a multiple of its concurrency.
MAX_FACTOR = 8
# Seconds over which the pace is measured before the prefetch is reconsidered.
MEASURE_SECONDS = 0.25
# Least relative change worth telling the master (smaller ones are noise).
MIN_CHANGE = 0.25


class PrefetchGauge:
    """Measures a worker's pace and says when its prefetch should change."""

    def __init__(self, base: int, concurrency: int, seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self.most = max(base, MAX_FACTOR * concurrency)
        self.seconds = seconds
        self.clock = clock
        self.current = base
        self._count = 0
        self._since = clock()

    def finished(self, count: int) -> int | None:
        """Count ``count`` jobs finished; the new prefetch to ask for, or None to keep it."""
        if self.seconds <= 0:
            return None
        self._count += count
        now = self.clock()
        elapsed = now - self._since
        if elapsed < MEASURE_SECONDS:
            return None
        pace = self._count / elapsed
        self._count, self._since = 0, now
        wanted = min(self.most, max(self.base, math.floor(pace * self.seconds)))
        if wanted == self.current:
            return None
        if wanted != self.base and abs(wanted - self.current) < MIN_CHANGE * self.current:
            return None
        self.current = wanted
        return wanted
