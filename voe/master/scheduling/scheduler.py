"""A continuous scheduler: the searches of a plan, what was observed of them, and which to
run next under a policy and a budget."""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable

from voe.master.scheduling.history import Search
from voe.master.scheduling.policies import Policy


class Scheduler:
    """Chooses the next searches to run; ``budget`` is runs a second on the scheduler's clock
    (the times given to it), which may run faster than the wall clock in simulations."""

    def __init__(self, policy: Policy, budget: float) -> None:
        self.policy = policy
        self.budget = budget
        self.searches: dict[str, Search] = {}

    def sync(self, searches: Iterable[Search], now: float) -> None:
        """Take the plan's searches as of ``now``: new ones are added, those the plan no
        longer holds or that have departed are dropped (what was observed of the rest is kept)."""
        wanted = {}
        for search in searches:
            if search.departs > now:
                wanted[search.key] = self.searches.get(search.key, search)
        self.searches = wanted

    def observe(self, key: str, at: float, answer: int) -> bool:
        """Record an observation of search ``key``; False if the plan no longer holds it."""
        search = self.searches.get(key)
        if search is None:
            return False
        interval = search.observe(at, answer)
        self.policy.observed(search, interval)
        return True

    def next(self, now: float, count: int, busy: Collection[str] = ()) -> list[str]:
        """Up to ``count`` searches to run now, the most wanted first; ``busy`` ones (already
        out) and departed ones are left out."""
        live = [search for search in self.searches.values() if search.departs > now]
        self.policy.replan(live, now, self.budget)
        ranked = []
        for search in live:
            if search.key in busy:
                continue
            priority = self.policy.priority(search, now)
            if priority is not None:
                ranked.append((priority, search.key))
        return [key for _, key in heapq.nlargest(count, ranked)]
