"""Measured staleness: what re-searching randomly chosen stored answers finds.

A share of each backend's budget (``VOE_AUDIT_SHARE``) re-searches searches chosen
uniformly at random among those stored, whatever the scheduler wants, and notes whether
the stored answer was still the airline's. The share of audits that found it changed is
an unbiased estimate of the stale share of the whole store (it needs no truth from the
airline, so it works against any); by the stored answer's age it shows how quickly
answers go stale. The latest ``WINDOW`` audits count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

WINDOW = 2000
# Upper bounds (seconds on the scheduler's clock) of the age bands shown.
AGE_BANDS = ((3600.0, "under 1 h"), (6 * 3600.0, "1-6 h"), (86_400.0, "6-24 h"),
             (3 * 86_400.0, "1-3 d"), (float("inf"), "over 3 d"))


class Audits:
    """The latest audits' outcomes: (age of the stored answer, whether it had changed)."""

    def __init__(self, outcomes: Iterable[tuple[float, bool]] = ()) -> None:
        self.outcomes: deque[tuple[float, bool]] = deque(outcomes, maxlen=WINDOW)

    def add(self, age: float, changed: bool) -> None:
        """Count one audit."""
        self.outcomes.append((age, changed))

    def summary(self) -> dict[str, Any]:
        """``audits``, ``still_correct`` (a share, None before any), ``estimated_stale``
        (the store's stale share) and ``by_age`` (per age band: audits, still correct)."""
        count = len(self.outcomes)
        fresh = sum(1 for _, changed in self.outcomes if not changed)
        by_age = []
        low = 0.0
        for high, label in AGE_BANDS:
            band = [changed for age, changed in self.outcomes if low <= age < high]
            by_age.append({"age": label, "audits": len(band),
                           "still_correct": (band.count(False) / len(band)) if band else None})
            low = high
        return {"audits": count, "still_correct": fresh / count if count else None,
                "estimated_stale": 1 - fresh / count if count else None, "by_age": by_age}
