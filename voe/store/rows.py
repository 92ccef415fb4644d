"""What every store writes for a batch of results, and what it acknowledges: one place."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from voe.model import OK, RESULT_STATUSES, Result
from voe.store.base import DONE


def result_row(result: Result, now: float) -> tuple[Any, ...]:
    """The ``results`` row: the marker that a job's fares of a cycle are stored."""
    job = result.job
    return (
        job.cycle, job.id, job.backend, job.origin, job.destination, job.date,
        job.return_date, len(result.fares), result.worker, now,
    )


def fare_rows(result: Result) -> Iterator[tuple[Any, ...]]:
    """The ``fares`` rows of a result, in ``FARE_FIELDS`` order."""
    job = result.job
    route = (job.cycle, job.id, job.backend, job.origin, job.destination, job.date, job.return_date)
    for fare in result.fares:
        yield (*route, fare.flight, fare.departure, fare.arrival, fare.price, fare.currency)


def outcome_row(result: Result, now: float) -> tuple[Any, ...]:
    """The ``outcomes`` row: one per attempt."""
    job = result.job
    return (
        job.cycle, job.id, job.attempt, result.worker, result.status,
        result.duration, result.error, now,
    )


def check_statuses(results: Sequence[Result]) -> None:
    """Refuse a batch with an unknown status before anything is written."""
    for result in results:
        if result.status not in RESULT_STATUSES:
            raise ValueError(f"unknown result status {result.status!r} of {result.job.id}")


def new_rows(results: Sequence[Result], stored: set[tuple[int, str]], now: float
             ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The marker and fare rows of the batch's first OK result per job not yet ``stored``.

    This is the exactly-once rule of every store: ``stored`` gains the keys written.
    """
    markers: list[tuple[Any, ...]] = []
    fares: list[tuple[Any, ...]] = []
    for result in results:
        key = (result.job.cycle, result.job.id)
        if result.status == OK and key not in stored:
            stored.add(key)
            markers.append(result_row(result, now))
            fares.extend(fare_rows(result))
    return markers, fares


def acknowledgements(results: Sequence[Result], stored: set[tuple[int, str]]) -> list[str]:
    """Per result, ``"done"`` when its job's fares of that cycle are stored, else its status."""
    return [DONE if (r.job.cycle, r.job.id) in stored else r.status for r in results]
