"""The domain's plain data: a search job and the fares it finds.

Every part of voe speaks these types; none of them knows about ZeroMQ, SQLite or HTTP.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import NamedTuple

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class SearchJob(NamedTuple):
    """One flight search: a backend, a route and a date, in one cycle of the plan.

    ``id`` is stable across cycles (``backend:ORIG-DEST:date[:return]``); the pair
    ``(cycle, id)`` names the job in the ledger and the store. A named tuple, because
    the master, workers and sink build hundreds of thousands of them a minute.
    """

    id: str
    cycle: int
    attempt: int
    backend: str
    origin: str
    destination: str
    date: str
    return_date: str | None = None


class Fare(NamedTuple):
    """One fare offered for a flight; ``price`` is a decimal string such as ``"1234.56"``."""

    flight: str
    departure: str
    arrival: str
    price: str
    currency: str


class RoundTripFare(NamedTuple):
    """A round trip's fare: a ``Fare``'s fields (its outbound flight), then its return
    flight and times; ``price`` is the total of both legs (airlines do not sell a round
    trip as two one-ways' sum). A type of its own, so code written for a ``Fare`` (five
    fields, unpacked or compared as a tuple) keeps working."""

    flight: str
    departure: str
    arrival: str
    price: str
    currency: str
    return_flight: str
    return_departure: str
    return_arrival: str


class Searched(NamedTuple):
    """The search a page says it answers, read from the page itself (route heading, date).

    ``return_date`` is None when the page states no return (a one-way search).
    """

    origin: str
    destination: str
    date: str
    return_date: str | None = None

    def __str__(self) -> str:
        """``GRU-POA 2026-12-21`` (plus `` return 2026-12-28`` for a round trip)."""
        shown = f"{self.origin}-{self.destination} {self.date}"
        return f"{shown} return {self.return_date}" if self.return_date else shown


class Answer(list[Fare]):
    """What a backend returns for one job: the fares, what the page says it answers, the page.

    A list of fares, so that code written for backends that return a plain list
    (third-party ones may) and comparisons with a list keep working; ``answered``
    (a ``Searched``, or None when the backend cannot tell) lets the fare pipeline
    check that the page answers the job's search, and ``page`` (the raw bytes, or
    None) travels with any parse error the pipeline raises, so the page is kept.
    """

    __slots__ = ("answered", "page")

    def __init__(self, fares: Iterable[Fare] = (), answered: Searched | None = None,
                 page: bytes | None = None) -> None:
        super().__init__(fares)
        self.answered = answered
        self.page = page

    def with_fares(self, fares: Iterable[Fare]) -> Answer:
        """The same answer (search and page) with other fares, e.g. normalised ones."""
        return Answer(fares, self.answered, self.page)

    def __repr__(self) -> str:
        """Show the fares and the search answered (never the page: it may be megabytes)."""
        page = "no page" if self.page is None else f"{len(self.page)}-byte page"
        return f"Answer({list.__repr__(self)}, answered={self.answered!r}, {page})"


def job_id(backend: str, origin: str, destination: str, date: str, return_date: str | None) -> str:
    """Return the stable id of a search (the same in every cycle)."""
    base = f"{backend}:{origin}-{destination}:{date}"
    return f"{base}:{return_date}" if return_date else base


class FieldCount(NamedTuple):
    """How many fares of one answer had ``field`` valid and invalid, as the fare pipeline saw."""

    field: str
    valid: int
    invalid: int


class Result(NamedTuple):
    """What a worker reports for one attempt of a job.

    ``status`` is ``"ok"`` (``fares`` holds what was found, possibly nothing) or the
    kind of the error: ``"transient"``, ``"parse"``, ``"permanent"`` or ``"blocked"``
    (the airline refused to answer: retried like a transient error, never "no flights").
    ``field_counts`` are the fare pipeline's per-field counts of an answer it refused,
    the per-field yield's data; empty for an ok result (its counts are implied: every
    field of every fare valid, see ``voe.store.rows.all_valid_counts``), when the
    pipeline did not run on an answer (no page, a page that did not parse), or when an
    older worker sent none.
    """

    job: SearchJob
    status: str
    fares: tuple[Fare, ...]
    error: str | None
    worker: str
    duration: float
    field_counts: tuple[FieldCount, ...] = ()


OK = "ok"
TRANSIENT = "transient"
PARSE = "parse"
PERMANENT = "permanent"
BLOCKED = "blocked"
RESULT_STATUSES = (OK, TRANSIENT, PARSE, PERMANENT, BLOCKED)


def check_date(date: str) -> datetime.date:
    """Return ``date`` (``YYYY-MM-DD``) as a date; raise ``ValueError`` if it is not one."""
    if not _DATE.fullmatch(date):
        raise ValueError(f"bad date {date!r}: expected YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"bad date {date!r}: no such day") from None
