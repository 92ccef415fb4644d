"""The parse-yield watch: fares per successful page, per backend and cycle.

Airlines change their sites without notice; a scraper then often still "works"
but finds fewer fares. The yield of a backend in a cycle is its fares divided by
its stored results (pages that parsed); a yield under half the previous cycle's
is a drop. The sink logs each drop once per backend and cycle, and ``voe status``
shows the latest yields. Both read the store's results, so nothing is lost when
the sink restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from voe.model import OK, Result
from voe.store.base import Store, StoreError

log = logging.getLogger("voe.sink")

# A yield below this share of the previous cycle's is a drop.
DROP_SHARE = 0.5
# Pages a backend needs in both cycles before its yield is judged (fewer say little).
MIN_PAGES = 5
# Seconds between two checks by the sink.
CHECK_INTERVAL = 2.0


@dataclass(frozen=True)
class Yield:
    """A backend's pages and fares in one cycle, beside those of the previous cycle."""

    backend: str
    cycle: int
    pages: int
    fares: int
    previous_cycle: int | None = None
    previous_pages: int = 0
    previous_fares: int = 0

    @property
    def per_page(self) -> float:
        """Fares per successful page in this cycle."""
        return self.fares / self.pages if self.pages else 0.0

    @property
    def previous_per_page(self) -> float | None:
        """Fares per successful page in the previous cycle, if it had pages."""
        return self.previous_fares / self.previous_pages if self.previous_pages else None

    @property
    def dropped(self) -> bool:
        """True when the yield fell below ``DROP_SHARE`` of the previous cycle's."""
        previous = self.previous_per_page
        return (previous is not None and self.pages >= MIN_PAGES
                and self.previous_pages >= MIN_PAGES and self.per_page < DROP_SHARE * previous)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``voe status --json`` shows it."""
        previous = self.previous_per_page
        return {"backend": self.backend, "cycle": self.cycle, "pages": self.pages,
                "fares": self.fares, "fares_per_page": round(self.per_page, 3),
                "previous_cycle": self.previous_cycle,
                "previous_fares_per_page": None if previous is None else round(previous, 3),
                "dropped": self.dropped}

    def describe(self) -> str:
        """One line for logs and ``voe status``."""
        line = (f"{self.backend} cycle {self.cycle}: {self.per_page:.2f} fares/page "
                f"({self.fares} fares on {self.pages} pages)")
        previous = self.previous_per_page
        if previous is not None:
            line += f", cycle {self.previous_cycle}: {previous:.2f}"
        return line + (" - DROPPED by more than half" if self.dropped else "")


def cycle_yields(store: Store, cycle: int) -> list[Yield]:
    """The yield of every backend with pages in ``cycle``, beside the previous cycle's."""
    current = store.cycle_yields(cycle)
    previous_cycle = store.result_cycle(before=cycle)
    previous = store.cycle_yields(previous_cycle) if previous_cycle is not None else {}
    found = []
    for backend, (pages, fares) in sorted(current.items()):
        before_pages, before_fares = previous.get(backend, (0, 0))
        found.append(Yield(backend, cycle, pages, fares,
                           previous_cycle if backend in previous else None,
                           before_pages, before_fares))
    return found


def latest_yields(store: Store) -> list[Yield]:
    """The yields of the latest cycle with stored results (none if nothing is stored)."""
    cycle = store.result_cycle()
    return [] if cycle is None else cycle_yields(store, cycle)


class YieldWatch:
    """The sink's watch: after stored batches, warn once per backend and cycle of a drop."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self.cycles: set[int] = set()
        self.warned: set[tuple[str, int]] = set()
        self.next_check = 0.0

    def saw(self, results: Iterable[Result]) -> None:
        """Note the cycles of stored results, to be checked at the next ``check``."""
        self.cycles.update(result.job.cycle for result in results if result.status == OK)

    def check(self, force: bool = False) -> list[Yield]:
        """Every ``CHECK_INTERVAL`` (or now if ``force``): log new drops and return them."""
        now = self.clock()
        if not self.cycles or (now < self.next_check and not force):
            return []
        self.next_check = now + CHECK_INTERVAL
        cycles, self.cycles = sorted(self.cycles), set()
        drops = []
        for cycle in cycles:
            try:
                yields = cycle_yields(self.store, cycle)
            except StoreError as error:
                log.warning("yield watch: %s", error)
                continue
            for found in yields:
                if found.dropped and (found.backend, cycle) not in self.warned:
                    self.warned.add((found.backend, cycle))
                    log.warning("parse yield of backend %s fell by more than half: %s "
                                "(did the airline change its pages?)", found.backend,
                                found.describe())
                    drops.append(found)
        return drops
