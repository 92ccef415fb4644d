"""What every store writes for a batch of results, and what it acknowledges: one place.

That includes the outbox: the events a batch's newly stored results raise, built here
once so both stores write the same events with the same ids.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import msgpack

from voe.model import (
    OK,
    RESULT_STATUSES,
    CalendarDay,
    Fare,
    FieldCount,
    MultiCityFare,
    Result,
    RoundTripFare,
    parse_options,
)
from voe.store.base import DONE, FARE_FIELDS

FARES_COLLECTED = "fares.collected"
"""Event kind: a job's fares of one cycle were stored (once per job and cycle)."""
PRICE_CHANGED = "fare.price_changed"
"""Event kind: a flight's price differs from the job's previous stored cycle."""

# Compact JSON, one encoder for every event (the sink's hot path builds them).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def result_row(result: Result, now: float, answer: int) -> tuple[Any, ...]:
    """The ``results`` row: the marker that a job's fares of a cycle are stored, with the
    digest of its answer (``voe.answers``)."""
    job = result.job
    return (
        job.cycle, job.id, job.backend, job.origin, job.destination, job.date,
        job.return_date, len(result.fares), result.worker, now, job.options, job.legs, answer,
    )


def fare_rows(result: Result) -> Iterator[tuple[Any, ...]]:
    """The ``fares`` rows of a result, in ``FARE_FIELDS`` order: a calendar's day is a row of
    its own date, with no flight nor times (empty)."""
    job = result.job
    route = (job.cycle, job.id, job.backend, job.origin, job.destination, job.date, job.return_date)
    one_way = (None, None, None, job.options, job.legs, None)
    for fare in result.fares:
        if len(fare) == 5:
            yield (*route, *fare, *one_way)
        elif len(fare) == 8:
            yield (*route, *fare, job.options, job.legs, None)
        elif len(fare) == 6:  # a multi-city trip's: its later legs as JSON
            yield (*route, *fare[:5], None, None, None, job.options, job.legs,
                   _JSON.encode(fare[5]))
        else:
            yield (*route[:5], fare[0], None, "", "", "", fare[1], fare[2], *one_way)


_ONE_WAY = frozenset({5})  # a one-way fare's number of fields

PLAIN_FARE_FIELDS = tuple(field for field in FARE_FIELDS[:12] if field != "return_date")
"""The columns a one-way fare of a one-way search without options or legs fills: its
route, flight, times, price and currency. The others hold their defaults (NULL, or ''):
fewer values to bind, and no None among them, which Python's sqlite3 passes through its
adapter lookup (about 0.2 us a value) where a str or an int binds at once."""


def fare_rows_by_width(results: Iterable[Result]) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """The ``fares`` rows of ``results`` in two lists: the one-way fares of one-way searches
    without options or legs as the values of their ``PLAIN_FARE_FIELDS``, row after row in
    one flat list (the usual row, on the sink's hot path: fewer values to bind, and no
    tuple a row, as a many-row INSERT binds them), every other row in full. A result's
    rows stay together and in order."""
    plain: list[Any] = []
    full: list[tuple[Any, ...]] = []
    for result in results:
        job = result.job
        if (job.options or job.legs or job.return_date is not None
                or not set(map(len, result.fares)) <= _ONE_WAY):
            full.extend(fare_rows(result))
            continue
        route = (job.cycle, job.id, job.backend, job.origin, job.destination, job.date)
        for fare in result.fares:
            plain += route
            plain += fare
    return plain, full


def outcome_row(result: Result, now: float) -> tuple[Any, ...]:
    """The ``outcomes`` row: one per attempt."""
    job = result.job
    return (
        job.cycle, job.id, job.attempt, result.worker, result.status,
        result.duration, result.error, now,
    )


def jobs_by_cycle(keys: Iterable[tuple[Any, ...]]) -> dict[int, list[str]]:
    """The job ids of ``keys`` (each starting ``(cycle, job id, ...)``) by cycle, each id
    once and sorted: what the stores look up one cycle at a time."""
    grouped: dict[int, set[str]] = defaultdict(set)
    for key in keys:
        grouped[key[0]].add(key[1])
    return {cycle: sorted(jobs) for cycle, jobs in grouped.items()}


def outcome_key(result: Result) -> tuple[int, str, int, str]:
    """What names one attempt's outcome, stored once: (cycle, job id, attempt, worker)."""
    job = result.job
    return (job.cycle, job.id, job.attempt, result.worker)


def refused_results(results: Sequence[Result]) -> list[Result]:
    """The batch's results that are not ok but carry per-field counts (answers the fare
    pipeline refused), the first of each attempt: counted once per attempt, like outcomes."""
    refused: dict[tuple[int, str, int, str], Result] = {}
    for result in results:
        if result.status != OK and result.field_counts:
            refused.setdefault(outcome_key(result), result)
    return list(refused.values())


def all_valid_counts(fares: int, calendar: bool = False) -> tuple[FieldCount, ...]:
    """The per-field counts of an ok answer of ``fares`` fares: every fare field valid (the
    fare pipeline passed it; workers send counts only with the answers it refused); a
    calendar's days have a price and a currency, no flight nor times."""
    fields = _DAY_FIELDS if calendar else Fare._fields
    return tuple(FieldCount(field, fares, 0) for field in fields)


# The fare fields a calendar's day has.
_DAY_FIELDS = tuple(field for field in Fare._fields if field in CalendarDay._fields)


def field_count_rows(counted: Iterable[Result]) -> list[tuple[int, str, str, int, int]]:
    """The ``field_counts`` rows a batch adds: per (cycle, backend, field), the valid and
    invalid fares of the ``counted`` answers. Results with the same counts are summed
    together first (most answers of a backend have one of a few sizes, all valid)."""
    groups: Counter[tuple[int, str, tuple[FieldCount, ...] | int]] = Counter()
    for r in counted:
        if r.field_counts:
            groups[r.job.cycle, r.job.backend, r.field_counts] += 1
        elif r.status == OK and r.fares:  # an ok answer's counts are implied: all valid
            # (a calendar's days counted as a negative size: they have fewer fields)
            groups[r.job.cycle, r.job.backend,
                   -len(r.fares) if len(r.fares[0]) == 3 else len(r.fares)] += 1
    totals: dict[tuple[int, str, str], list[int]] = {}
    for (cycle, backend, counts), times in groups.items():
        if isinstance(counts, int):
            counts = all_valid_counts(abs(counts), calendar=counts < 0)
        for field, valid, invalid in counts:
            total = totals.setdefault((cycle, backend, field), [0, 0])
            total[0] += valid * times
            total[1] += invalid * times
    return [(*key, valid, invalid) for key, (valid, invalid) in totals.items()]


def check_statuses(results: Sequence[Result]) -> None:
    """Refuse a batch with an unknown status before anything is written."""
    for result in results:
        if result.status not in RESULT_STATUSES:
            raise ValueError(f"unknown result status {result.status!r} of {result.job.id}")


def new_results(results: Sequence[Result], stored: set[tuple[int, str]]) -> list[Result]:
    """The batch's first OK result per job not yet ``stored``: what this batch stores.

    This is the exactly-once rule of every store: ``stored`` gains the keys written.
    """
    fresh: list[Result] = []
    for result in results:
        key = (result.job.cycle, result.job.id)
        if result.status == OK and key not in stored:
            stored.add(key)
            fresh.append(result)
    return fresh


class Event(NamedTuple):
    """One outbox event as publishers see it: ``body`` is the JSON they send as it is."""

    seq: int
    id: str
    kind: str
    backend: str
    origin: str
    destination: str
    body: bytes


EVENT_COLUMNS = ("seq", "id", "kind", "cycle", "job_id", "backend", "origin", "destination",
                 "created_at", "payload")
"""The outbox columns ``event_from_row`` reads, in its order."""


def event_id(job_id: str, cycle: int, kind: str, flight: str | None = None) -> str:
    """The stable id of an event, so consumers and brokers drop redeliveries.

    The first 32 hex digits (128 bits) of the SHA-256 of ``job id|cycle|kind[|flight]``.
    """
    name = f"{job_id}|{cycle}|{kind}" + (f"|{flight}" if flight is not None else "")
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _price(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def flight_key(flight: str, return_flight: str | None) -> str:
    """What names a fare's flights in price comparisons: the flight, or for a round trip
    both (``G3 1234 / AD 4321``), so two returns of one outbound are two fares."""
    return flight if return_flight is None else f"{flight} / {return_flight}"


def fare_key(fare: RoundTripFare | MultiCityFare) -> str:
    """``flight_key`` of a round trip's or multi-city trip's fare: every flight of it."""
    if len(fare) == 6:
        return " / ".join([fare[0], *(leg[0] for leg in fare[5])])
    return flight_key(fare[0], fare[5])


def prices_by_flight(result: Result) -> dict[str, str]:
    """A result's price per flight (``flight_key``; a calendar's per day; the lowest when
    one appears twice)."""
    prices: dict[str, str] = {}
    for fare in result.fares:
        key = fare[0] if len(fare) <= 5 else fare_key(fare)
        known = prices.get(key)
        if known is None or (known != fare.price
                             and (_price(fare.price) or 0) < (_price(known) or 0)):
            prices[key] = fare.price
    return prices


def encode_prices(prices: Mapping[str, str]) -> bytes:
    """The ``last_prices`` column of a job: its price per flight as MessagePack."""
    return _pack(prices)


def decode_prices(data: bytes) -> dict[str, str]:
    """Read back ``encode_prices``."""
    return msgpack.unpackb(bytes(data), raw=False)


# A row in ``outbox_paused`` says a sink without destinations skipped events (and the
# prices they compare) since then; turning events on again refreshes ``last_prices``.
PAUSE_EVENTS = ("INSERT INTO outbox_paused (since) SELECT {mark}"
                " WHERE NOT EXISTS (SELECT 1 FROM outbox_paused)")
EVENTS_PAUSED = "SELECT 1 FROM outbox_paused"
RESUME_EVENTS = "DELETE FROM outbox_paused"

LATEST_FARES = (
    "SELECT f.job_id, f.cycle, f.flight, f.price, f.return_flight FROM fares AS f JOIN"
    " (SELECT job_id, MAX(cycle) AS cycle FROM results GROUP BY job_id) AS latest"
    " ON f.job_id = latest.job_id AND f.cycle = latest.cycle"
)
"""The fares of each job's latest stored cycle: what a migration fills ``last_prices`` from."""


def last_prices_rows(fares: Iterable[tuple[str, int, str, str, str | None]]
                     ) -> list[tuple[str, int, bytes]]:
    """``last_prices`` rows from ``(job_id, cycle, flight, price, return_flight)`` rows of
    ``LATEST_FARES``."""
    jobs: dict[str, tuple[int, dict[str, str]]] = {}
    for job_id, cycle, flight, price, back in fares:
        prices = jobs.setdefault(job_id, (cycle, {}))[1]
        key = flight_key(flight, back)
        known = prices.get(key)
        if known is None or (_price(price) or 0) < (_price(known) or 0):
            prices[key] = price
    return [(job_id, cycle, encode_prices(prices)) for job_id, (cycle, prices) in jobs.items()]


def outbox_rows(fresh: Sequence[Result], previous: dict[str, tuple[int, dict[str, str]]],
                now: float) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The outbox rows and ``last_prices`` rows of the results a batch newly stores.

    ``previous`` maps a job id to its latest stored cycle before this batch and the
    prices of that cycle by flight (``last_prices``); it is updated as the batch goes,
    so a batch holding two cycles of one job compares them too. An outbox row holds
    ``EVENT_COLUMNS`` but ``seq``; its payload is compact MessagePack, and the JSON
    body is made by ``event_from_row`` when a publisher reads it, off the sink's hot
    path. A ``last_prices`` row is ``(job_id, cycle, prices)``: a job's latest cycle.
    """
    events: list[tuple[Any, ...]] = []
    latest: dict[str, tuple[Any, ...]] = {}
    for result in sorted(fresh, key=lambda r: r.job.cycle):
        job = result.job
        head = (job.cycle, job.id, job.backend, job.origin, job.destination, now)
        events.append((event_id(job.id, job.cycle, FARES_COLLECTED), FARES_COLLECTED, *head,
                       _pack((job.date, job.return_date, result.fares, job.options, job.legs))))
        prices = prices_by_flight(result)
        before = previous.get(job.id)
        if before is not None and before[0] < job.cycle:
            old_cycle, old_prices = before
            currencies = {fare[0] if len(fare) <= 5 else fare_key(fare): fare.currency
                          for fare in result.fares}
            for flight, price in prices.items():
                old = old_prices.get(flight)
                if old is None or old == price or _price(old) == _price(price):
                    continue
                events.append((
                    event_id(job.id, job.cycle, PRICE_CHANGED, flight), PRICE_CHANGED, *head,
                    _pack((job.date, job.return_date, flight, currencies[flight], old, price,
                           old_cycle, job.options, job.legs))))
        if before is None or before[0] < job.cycle:
            previous[job.id] = (job.cycle, prices)
            latest[job.id] = (job.id, job.cycle, encode_prices(prices))
    return events, list(latest.values())


def event_from_row(row: Sequence[Any]) -> Event:
    """Turn an outbox row (``EVENT_COLUMNS``) into the event publishers send.

    The body is JSON: ``id``, ``kind``, ``occurred_at`` (Unix time stored), ``job``
    (id, cycle, backend, origin, destination, date, return_date, ``legs`` of a multi-city
    trip, "" for any other, and ``search``: adults, children, infants, cabin, pos and
    currency asked, "" for the airline's own), then
    ``fares`` for ``fares.collected`` (a calendar's: its days, ``date``, ``price`` and
    ``currency``; a multi-city fare's later legs as ``legs``), or ``flight`` (a
    calendar's: the day), ``currency``, ``old_price``, ``new_price``, ``old_cycle`` and
    ``new_cycle`` for ``fare.price_changed``. Events
    stored before search options had none: theirs are the defaults.
    """
    seq, ident, kind, cycle, job_id, backend, origin, destination, created_at, payload = row
    data = msgpack.unpackb(bytes(payload), raw=False)
    date, return_date = data[0], data[1]
    options, legs = (data[3 if kind == FARES_COLLECTED else 7:] + ["", ""])[:2]
    body: dict[str, Any] = {
        "id": ident, "kind": kind, "occurred_at": created_at,
        "job": {"id": job_id, "cycle": cycle, "backend": backend, "origin": origin,
                "destination": destination, "date": date, "return_date": return_date,
                "legs": legs, "search": parse_options(options)._asdict()}}
    if kind == FARES_COLLECTED:
        body["fares"] = [_fare_body(fare) for fare in data[2]]
    else:
        flight, currency, old, new, old_cycle = data[2:7]
        body.update(flight=flight, currency=currency, old_price=old, new_price=new,
                    old_cycle=old_cycle, new_cycle=cycle)
    return Event(seq, ident, kind, backend, origin, destination, _JSON.encode(body).encode())


_FARE_KEYS = RoundTripFare._fields  # a one-way fare has the first five
_DAY_KEYS = CalendarDay._fields
_LEG_KEYS = ("flight", "departure", "arrival")


def _fare_body(fare: Sequence[Any]) -> dict[str, Any]:
    """A fare as an event shows it: its fields by name (a multi-city fare's later legs as
    ``legs``, each a flight, departure and arrival)."""
    if len(fare) == 6:
        return {**dict(zip(_FARE_KEYS[:5], fare[:5], strict=True)),
                "legs": [dict(zip(_LEG_KEYS, leg, strict=True)) for leg in fare[5]]}
    return dict(zip(_DAY_KEYS if len(fare) == 3 else _FARE_KEYS, fare, strict=False))
_pack = msgpack.Packer(use_bin_type=True).pack


def acknowledgements(results: Sequence[Result], stored: set[tuple[int, str]]) -> list[str]:
    """Per result, ``"done"`` when its job's fares of that cycle are stored, else its status."""
    return [DONE if (r.job.cycle, r.job.id) in stored else r.status for r in results]
