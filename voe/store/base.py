"""The store contract: what the sink needs to keep fares durably, exactly once per job and cycle.

A store is written by the sink alone and read by reporting commands (``voe status``,
``voe export``) from other processes at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from voe.model import Result

if TYPE_CHECKING:
    from voe.store.rows import Event

DONE = "done"
"""Acknowledgement of a result whose job has its fares stored in that cycle."""
# What a store says of one saved result: its acknowledgement (``DONE`` or the result's
# status) and, when done, the digest of the answer stored (``Store.save_answers``).
Saved = tuple[str, int | None]

FARE_FIELDS = (
    "cycle",
    "job_id",
    "backend",
    "origin",
    "destination",
    "date",
    "return_date",
    "flight",
    "departure",
    "arrival",
    "price",
    "currency",
    "return_flight",
    "return_departure",
    "return_arrival",
    "options",
    "legs",
    "leg_flights",
)
"""The keys of every fare dict a store returns, in the order exports write them (the
return flight and times are None for a one-way fare; ``options`` is the search's
``voe.model.SearchOptions`` as text, '' for one adult in economy at the airline's own
point of sale; ``legs`` a multi-city trip's legs, ``GRU-REC:2026-12-20,REC-SSA:2026-12-24``,
'' for any other search, and ``leg_flights`` its later legs' flights and times as JSON,
``[["AD 4321", "09:00", "10:30"]]``, None for any other fare)."""


class StoreError(Exception):
    """The store cannot be opened or used; the message is meant for the user."""


class NoStore(StoreError):
    """A report opened a store that does not exist yet (nothing stored)."""


UNAVAILABLE_KINDS = ("connection", "full", "locked", "io")
"""The kinds of ``StoreUnavailable``: connection lost or refused, disk full, busy, I/O."""


class StoreUnavailable(StoreError):
    """A store error that passes by itself: the same call may succeed later.

    The connection was lost, terminated or refused (the server restarts or was shut
    down), the database is locked or busy, its disk is full, or the disk failed to
    read or write. Nothing of the failed call is stored; the store can be used again
    (``reconnect`` opens a fresh connection). Every other ``StoreError`` is fatal: a
    schema newer than this voe, bad credentials, a read-only store, a programming error.
    """

    def __init__(self, message: str, kind: str, reason: str = "") -> None:
        """``kind`` is one of ``UNAVAILABLE_KINDS``; ``reason`` the store's own short words."""
        super().__init__(message)
        self.kind = kind
        self.reason = reason or message


class Closing:
    """What makes a store a context manager: ``with open_store(...) as store:`` closes it."""

    def close(self) -> None:
        """Release the store (each store defines it)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Return the store so a ``with`` block closes it."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Close the store."""
        self.close()


class Store(Protocol):
    """Durable storage of results: fares once per (cycle, job id), and every attempt's outcome."""

    fares_written: int
    """Fares this store object wrote since it was opened (the sink's metrics read it)."""

    def save(self, results: Sequence[Result]) -> list[str]:
        """Store ``results`` in one transaction, commit, then return one acknowledgement each.

        Their per-field counts are added in the same transaction (see ``field_counts``).

        An acknowledgement is ``"done"`` when the job's fares of that cycle are stored
        (by this batch or an earlier one), else the result's own status.
        """
        ...

    def save_answers(self, results: Sequence[Result]) -> list[Saved]:
        """``save``, each acknowledgement with the digest of the stored answer (``voe.answers``)
        when it is ``"done"``: a repeat of a stored result is acknowledged with the answer
        stored first, not its own; None when not done."""
        ...

    def keep_events(self, on: bool) -> None:
        """Write outbox events with each save (the default), or not: no destination reads them."""
        ...

    def reconnect(self) -> None:
        """Drop the connection and open a fresh one (before retrying after ``StoreUnavailable``).

        Raises ``StoreUnavailable`` while the store is still away, ``StoreError`` if it
        cannot be used at all any more.
        """
        ...

    def outbox_prune(self, destinations: Sequence[str], before: float, limit: int) -> int:
        """Delete up to ``limit`` events all ``destinations`` passed before ``before``; how many."""
        ...

    def fare_count(self, cycle: int | None = None) -> int:
        """Return how many fares are stored (in ``cycle`` only, when given)."""
        ...

    def result_count(self) -> int:
        """Return how many (cycle, job) pairs have their fares stored."""
        ...

    def counts(self) -> dict[str, Any]:
        """Return ``{"fares": n, "results": n, "outcomes": {status: n}}`` for reports."""
        ...

    def iter_fares(self, cycle: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield every stored fare (of ``cycle`` if given) as a dict keyed by ``FARE_FIELDS``."""
        ...

    def cheapest(self, cycle: int | None = None) -> list[dict[str, Any]]:
        """Return the cheapest fare per route and dates, in ``cycle`` or each route's latest."""
        ...

    def price_history(self, origin: str, destination: str,
                      date: str | None = None) -> list[dict[str, Any]]:
        """Return a route's cheapest fare per cycle and dates (of ``date`` if given)."""
        ...

    def result_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with stored results (before ``before`` if given), or None."""
        ...

    def cycle_yields(self, cycle: int) -> dict[str, tuple[int, int]]:
        """Return, per backend, the stored results (successful pages) and fares of ``cycle``."""
        ...

    def field_counts(self, cycle: int) -> dict[str, dict[str, tuple[int, int]]]:
        """Return, per backend and field, the fares of ``cycle`` with it valid and invalid.

        Each answer the fare pipeline judged counts once: a stored one (ok) once per job
        and cycle, like its fares; a refused one once per attempt, like its outcome.
        """
        ...

    def field_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with field counts (before ``before`` if given), or None."""
        ...

    def stored_jobs(self, cycle: int) -> dict[str, tuple[int | None, int]]:
        """Per job of ``cycle`` with a marker or fares: (fares it recorded or None, fare rows)."""
        ...

    def outcomes(self, cycle: int, job_id: str) -> list[dict[str, Any]]:
        """Return the recorded outcome of every attempt of one job in one cycle."""
        ...

    def outbox_pending(self, destination: str, limit: int) -> list[Event]:
        """The next ``limit`` outbox events after ``destination``'s cursor, oldest first."""
        ...

    def outbox_retries(self, destination: str, limit: int) -> list[Event]:
        """Dead letters of ``destination`` sent back for retry, oldest first."""
        ...

    def outbox_settle(self, destination: str, through: int | None, delivered: Sequence[int] = (),
                      dead: Sequence[tuple[int, int, str]] = ()) -> None:
        """Move ``destination``'s cursor to ``through``, clear ``delivered`` dead letters and
        record ``dead`` ones as ``(seq, attempts, error)``, in one transaction."""
        ...

    def outbox_backlog(self, destinations: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Per destination: ``backlog`` (events not yet delivered), ``dead``, ``retrying``."""
        ...

    def dead_letters(self, destination: str | None = None) -> list[dict[str, Any]]:
        """The events publishers gave up on, with their destination, attempts and error."""
        ...

    def retry_dead_letters(self, destination: str | None = None) -> int:
        """Send dead letters back to their publisher; return how many."""
        ...

    def close(self) -> None:
        """Release the store; further calls fail."""
        ...

    def __enter__(self) -> Store:
        """Return the store itself so it can be closed by a ``with`` block."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...
