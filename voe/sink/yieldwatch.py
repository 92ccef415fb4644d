"""The yield watch: fares per successful page, and fares with each field valid, per backend
and cycle.

Airlines change their sites without notice; a scraper then often still "works"
but finds fewer fares. The parse yield of a backend in a cycle is its fares divided
by its stored results (pages that parsed); a yield under half the previous cycle's
is a drop. The per-field yield is the share of the fares the fare pipeline judged
(stored or refused) with a field valid (flight, times, price, currency): a share
under ``FIELD_DROP_SHARE`` of the previous cycle's, or under ``FIELD_FLOOR`` at
all, is a drop, once ``MIN_FARES`` fares were judged. The sink logs each drop once
per backend and cycle (and field), and ``voe status`` shows the latest yields. Both
read the store, so nothing is lost when the sink restarts. The sink checks every
``CHECK_INTERVAL`` seconds, less often when a check takes more than ``MAX_SHARE`` of that
(a check reads a whole cycle's results).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from voe.model import OK, Fare, Result
from voe.store.base import Store, StoreError

log = logging.getLogger("voe.sink")

# A yield below this share of the previous cycle's is a drop.
DROP_SHARE = 0.5
# Pages a backend needs in both cycles before its yield is judged (fewer say little).
MIN_PAGES = 5
# Seconds between two checks by the sink.
CHECK_INTERVAL = 2.0
# Most of the sink's time the checks may take: a check reads every stored result of its
# cycle (23 ms at 100,000 results, seconds at tens of millions), so a slow one pushes the
# next one further than ``CHECK_INTERVAL``, to this share of the time between them.
MAX_SHARE = 0.02
# A field's share of valid fares below this share of the previous cycle's is a drop
# (from 100% valid, under 90%): a field breaks for many fares at once when a site changes.
FIELD_DROP_SHARE = 0.9
# A field valid in less than this share of a cycle's fares is a drop whatever came before
# (a first cycle, or a slow slide of several cycles).
FIELD_FLOOR = 0.5
# Fares a field needs judged in a cycle (and in the previous one, to compare) before its
# share is judged: a few odd fares say little.
MIN_FARES = 50


@dataclass(frozen=True)
class _BesidePrevious:
    """What a yield and a field's yield share: one measure of a backend's cycle, shown
    beside the previous cycle's (None: no previous cycle to compare with)."""

    backend: str
    cycle: int
    previous_cycle: int | None = dataclasses.field(default=None, kw_only=True)

    @property
    def dropped(self) -> bool:
        """Whether the measure dropped (each class says when)."""
        raise NotImplementedError

    def _row(self, own: dict[str, Any], measure: str, current: float,
             previous: float | None, digits: int) -> dict[str, Any]:
        """The JSON-ready form: backend, cycle, ``own`` fields, then the measure (rounded to
        ``digits``) in this and the previous cycle, and whether it dropped."""
        return {"backend": self.backend, "cycle": self.cycle, **own,
                measure: round(current, digits), "previous_cycle": self.previous_cycle,
                f"previous_{measure}": None if previous is None else round(previous, digits),
                "dropped": self.dropped}

    def _line(self, line: str, previous: float | None, spec: str, dropped: str) -> str:
        """``line``, then the previous cycle's measure (formatted by ``spec``), then
        ``dropped`` if it dropped."""
        if previous is not None:
            line += f", cycle {self.previous_cycle}: {previous:{spec}}"
        return line + (dropped if self.dropped else "")


@dataclass(frozen=True)
class Yield(_BesidePrevious):
    """A backend's pages and fares in one cycle, beside those of the previous cycle."""

    pages: int
    fares: int
    previous_pages: int = dataclasses.field(default=0, kw_only=True)
    previous_fares: int = dataclasses.field(default=0, kw_only=True)

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
        return self._row({"pages": self.pages, "fares": self.fares}, "fares_per_page",
                         self.per_page, self.previous_per_page, 3)

    def describe(self) -> str:
        """One line for logs and ``voe status``."""
        return self._line(f"{self.backend} cycle {self.cycle}: {self.per_page:.2f} fares/page "
                          f"({self.fares} fares on {self.pages} pages)",
                          self.previous_per_page, ".2f", " - DROPPED by more than half")


@dataclass(frozen=True)
class FieldYield(_BesidePrevious):
    """A backend's fares with one field valid and invalid in one cycle, beside the previous
    cycle's."""

    field: str
    valid: int
    invalid: int
    previous_valid: int = dataclasses.field(default=0, kw_only=True)
    previous_invalid: int = dataclasses.field(default=0, kw_only=True)

    @property
    def fares(self) -> int:
        """Fares judged for this field in this cycle."""
        return self.valid + self.invalid

    @property
    def share(self) -> float:
        """The share of this cycle's fares with the field valid."""
        return self.valid / self.fares if self.fares else 0.0

    @property
    def previous_share(self) -> float | None:
        """The share in the previous cycle, if it judged any fare."""
        judged = self.previous_valid + self.previous_invalid
        return self.previous_valid / judged if judged else None

    @property
    def dropped(self) -> bool:
        """True when, with ``MIN_FARES`` judged, the share is under ``FIELD_FLOOR`` or under
        ``FIELD_DROP_SHARE`` of the previous cycle's (with ``MIN_FARES`` judged there too)."""
        if self.fares < MIN_FARES:
            return False
        if self.share < FIELD_FLOOR:
            return True
        previous = self.previous_share
        return (previous is not None and self.previous_valid + self.previous_invalid >= MIN_FARES
                and self.share < FIELD_DROP_SHARE * previous)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``voe status --json`` shows it."""
        return self._row({"field": self.field, "valid": self.valid, "invalid": self.invalid},
                         "share", self.share, self.previous_share, 4)

    def describe(self) -> str:
        """One line for logs."""
        return self._line(f"{self.backend} cycle {self.cycle}: {self.field} valid in "
                          f"{self.share:.1%} of {self.fares} fares",
                          self.previous_share, ".1%", " - DROPPED")


def _field_order(found: FieldYield) -> tuple[str, int, str]:
    """Backends by name, then a fare's fields in their order (others after, by name)."""
    known = Fare._fields.index(found.field) if found.field in Fare._fields else len(Fare._fields)
    return found.backend, known, found.field


def cycle_field_yields(store: Store, cycle: int) -> list[FieldYield]:
    """The per-field yields of every backend judged in ``cycle``, beside the previous cycle's."""
    current = store.field_counts(cycle)
    previous_cycle = store.field_cycle(before=cycle)
    previous = store.field_counts(previous_cycle) if previous_cycle is not None else {}
    found = []
    for backend, fields in current.items():
        before = previous.get(backend, {})
        for name, (valid, invalid) in fields.items():
            old_valid, old_invalid = before.get(name, (0, 0))
            found.append(FieldYield(backend, cycle, name, valid, invalid,
                                    previous_cycle=previous_cycle if name in before else None,
                                    previous_valid=old_valid, previous_invalid=old_invalid))
    return sorted(found, key=_field_order)


def latest_field_yields(store: Store) -> list[FieldYield]:
    """The per-field yields of the latest cycle with field counts (none if nothing counted)."""
    cycle = store.field_cycle()
    return [] if cycle is None else cycle_field_yields(store, cycle)


def cycle_yields(store: Store, cycle: int) -> list[Yield]:
    """The yield of every backend with pages in ``cycle``, beside the previous cycle's."""
    current = store.cycle_yields(cycle)
    previous_cycle = store.result_cycle(before=cycle)
    previous = store.cycle_yields(previous_cycle) if previous_cycle is not None else {}
    found = []
    for backend, (pages, fares) in sorted(current.items()):
        before_pages, before_fares = previous.get(backend, (0, 0))
        found.append(Yield(backend, cycle, pages, fares,
                           previous_cycle=previous_cycle if backend in previous else None,
                           previous_pages=before_pages, previous_fares=before_fares))
    return found


def latest_yields(store: Store) -> list[Yield]:
    """The yields of the latest cycle with stored results (none if nothing is stored)."""
    cycle = store.result_cycle()
    return [] if cycle is None else cycle_yields(store, cycle)


class YieldWatch:
    """The sink's watch: after stored batches, warn once per backend and cycle of a parse-yield
    drop, and once per backend, cycle and field of a per-field yield drop.

    ``on_field_yields``, if given, is called with a cycle's per-field yields when it checks
    that cycle and no later one was checked before (the sink publishes them as metrics).
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic,
                 on_field_yields: Callable[[list[FieldYield]], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.on_field_yields = on_field_yields
        self.cycles: set[int] = set()
        self.warned: set[tuple[str, int]] = set()
        self.warned_fields: set[tuple[str, int, str]] = set()
        self.newest_checked = 0
        self.next_check = 0.0

    def saw(self, results: Iterable[Result]) -> None:
        """Note the cycles of stored results and of answers with field counts (a cycle whose
        answers were all refused has counts but no stored result), for the next ``check``."""
        self.cycles.update(result.job.cycle for result in results
                           if result.status == OK or result.field_counts)

    def check(self, force: bool = False) -> list[Yield | FieldYield]:
        """Every ``CHECK_INTERVAL`` (or now if ``force``), or less often when checks are slow
        (``MAX_SHARE``): log new drops and return them."""
        now = self.clock()
        if not self.cycles or (now < self.next_check and not force):
            return []
        try:
            return self._check()
        finally:
            self.next_check = now + max(CHECK_INTERVAL, (self.clock() - now) / MAX_SHARE)

    def _check(self) -> list[Yield | FieldYield]:
        """Judge the yields of the cycles seen since the last check."""
        cycles, self.cycles = sorted(self.cycles), set()
        drops: list[Yield | FieldYield] = []
        for cycle in cycles:
            try:
                yields = cycle_yields(self.store, cycle)
                fields = cycle_field_yields(self.store, cycle)
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
            drops.extend(self._field_drops(fields))
            if self.on_field_yields is not None and fields and cycle >= self.newest_checked:
                self.newest_checked = cycle
                try:
                    self.on_field_yields(fields)
                except Exception:  # a reporting hook's bug must not stop the sink
                    log.exception("yield watch: publishing the per-field yields failed")
        return drops

    def _field_drops(self, fields: list[FieldYield]) -> list[FieldYield]:
        """Log the per-field drops not logged yet; return them."""
        drops = []
        for found in fields:
            key = (found.backend, found.cycle, found.field)
            if found.dropped and key not in self.warned_fields:
                self.warned_fields.add(key)
                log.warning("field yield of backend %s fell for %s: %s (did the airline change "
                            "how its pages write it?)", found.backend, found.field,
                            found.describe())
                drops.append(found)
        return drops
