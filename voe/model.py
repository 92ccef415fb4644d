"""The domain's plain data: a search job and the fares it finds.

Every part of voe speaks these types; none of them knows about ZeroMQ, SQLite or HTTP.
"""

from __future__ import annotations

from typing import NamedTuple


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


def job_id(backend: str, origin: str, destination: str, date: str, return_date: str | None) -> str:
    """Return the stable id of a search (the same in every cycle)."""
    base = f"{backend}:{origin}-{destination}:{date}"
    return f"{base}:{return_date}" if return_date else base


class Result(NamedTuple):
    """What a worker reports for one attempt of a job.

    ``status`` is ``"ok"`` (``fares`` holds what was found, possibly nothing) or the
    kind of the error: ``"transient"``, ``"parse"`` or ``"permanent"``.
    """

    job: SearchJob
    status: str
    fares: tuple[Fare, ...]
    error: str | None
    worker: str
    duration: float


OK = "ok"
TRANSIENT = "transient"
PARSE = "parse"
PERMANENT = "permanent"
RESULT_STATUSES = (OK, TRANSIENT, PARSE, PERMANENT)
