"""Load counters of the demo airline's searches, overall and per client address (``/stats``).

Tests and benchmarks measure what voe does to the airline with these: requests,
concurrency, a sliding request rate, answers by status, faults injected and bodies
still streaming.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

# Seconds of the sliding window behind ``/stats``'s ``rate``.
RATE_WINDOW = 5.0
# Seconds of per-second request counts that ``/stats`` keeps.
PER_SECOND_KEPT = 60
# Client addresses tracked for the rate limit and per-client stats before they start over.
MAX_TRACKED_CLIENTS = 10_000


class Stats:
    """Load counters of the search endpoints, overall and per client address."""

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.clients: dict[str, dict[str, int]] = {}
        self.recent: deque[float] = deque()
        self.per_second: dict[int, int] = {}
        # Trickled or endless bodies still being sent (each stops when its client leaves).
        self.streaming = 0
        # The JS page's sub-resources served, by kind; its fare requests; its consents;
        # and its searches that came with a visitor cookie from an earlier visit.
        self.assets: Counter[str] = Counter()
        self.js_fares = 0
        self.consents = 0
        self.returning = 0

    def begin(self, client: str) -> None:
        """Count a search request that starts now."""
        now = time.time()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if client not in self.clients and len(self.clients) >= MAX_TRACKED_CLIENTS:
            self.clients.clear()
        mine = self.clients.setdefault(client, {"requests": 0, "in_flight": 0,
                                                "max_in_flight": 0})
        mine["requests"] += 1
        mine["in_flight"] += 1
        mine["max_in_flight"] = max(mine["max_in_flight"], mine["in_flight"])
        self.recent.append(now)
        second = int(now)
        self.per_second[second] = self.per_second.get(second, 0) + 1
        if len(self.per_second) > PER_SECOND_KEPT:
            for old in [s for s in self.per_second if s <= second - PER_SECOND_KEPT]:
                del self.per_second[old]

    def end(self, client: str, status: str) -> None:
        """Count the end of a search request and its answer's status (``reset`` if none)."""
        self.in_flight -= 1
        mine = self.clients.get(client)
        if mine is not None:
            mine["in_flight"] -= 1
        self.statuses[status.split(" ", 1)[0]] += 1

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        now = time.time()
        while self.recent and self.recent[0] <= now - RATE_WINDOW:
            self.recent.popleft()
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "rate": round(len(self.recent) / RATE_WINDOW, 3),
            "per_second": [[second, count] for second, count in sorted(self.per_second.items())
                           if second > now - PER_SECOND_KEPT],
            "statuses": dict(sorted(self.statuses.items())),
            "faults": dict(sorted(self.faults.items())),
            "streaming": self.streaming,
            "js_page": {"assets": dict(sorted(self.assets.items())), "fares": self.js_fares,
                        "consents": self.consents, "returning": self.returning},
            "clients": self.clients,
        }
