"""The fare queries both stores run, written once; each store gives its dialect's pieces.

``by_price`` orders prices as numbers (SQLite casts to REAL, PostgreSQL to NUMERIC);
``mark`` is the parameter placeholder (``?`` or ``%s``).
"""

from __future__ import annotations

from collections.abc import Sequence

from voe.store.base import FARE_FIELDS
from voe.store.rows import EVENT_COLUMNS

COLUMNS = ", ".join(FARE_FIELDS)
# What makes one search: a fare's route, dates, options (party, cabin, point of sale) and
# a multi-city trip's legs.
ROUTE = ("origin", "destination", "date", "return_date", "options", "legs")
# Among equal prices, the cheapest fare is picked the same way every time, a full
# search's (its flights named) before a calendar's day.
TIE_BREAK = "flight = '', backend, flight, departure"


def cheapest(chosen: str, by_price: str) -> str:
    """The cheapest fare per route and dates among the fares the query ``chosen`` selects."""
    route = ", ".join(ROUTE)
    return (f"WITH chosen AS ({chosen}), ranked AS ("
            f" SELECT {COLUMNS}, ROW_NUMBER() OVER ("
            f"  PARTITION BY {route} ORDER BY {by_price}, {TIE_BREAK}"
            f" ) AS rank FROM chosen)"
            f" SELECT {COLUMNS} FROM ranked WHERE rank = 1 ORDER BY {route}")


def latest_per_route(same: str) -> str:
    """The fares of each route's latest cycle with fares; ``same`` compares NULLs equal."""
    return ("SELECT f.* FROM fares AS f JOIN ("
            " SELECT origin, destination, date, return_date, options, legs, MAX(cycle) AS cycle"
            " FROM fares GROUP BY origin, destination, date, return_date, options, legs"
            ") AS latest ON f.origin = latest.origin AND f.destination = latest.destination"
            f" AND f.date = latest.date AND f.return_date {same} latest.return_date"
            " AND f.options = latest.options AND f.legs = latest.legs"
            " AND f.cycle = latest.cycle")


def price_history(by_price: str, mark: str, with_date: bool) -> str:
    """The cheapest fare of one route per cycle, dates and options, in one pass over the fares.

    Parameters: origin, destination, and the date when ``with_date``.
    """
    where = f"origin = {mark} AND destination = {mark}"
    if with_date:
        where += f" AND date = {mark}"
    return (f"WITH ranked AS ("
            f" SELECT {COLUMNS}, ROW_NUMBER() OVER ("
            f"  PARTITION BY cycle, date, return_date, options, legs"
            f"  ORDER BY {by_price}, {TIE_BREAK}"
            f" ) AS rank FROM fares WHERE {where})"
            f" SELECT {COLUMNS} FROM ranked WHERE rank = 1"
            " ORDER BY date, return_date, options, legs, cycle")


# What a batch writes -----------------------------------------------------------------

def _insert(table: str, columns: str, mark: str, tail: str = "") -> str:
    count = len(columns.split(","))
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join([mark] * count)}){tail}"


def insert_result(mark: str) -> str:
    """Mark a job's fares of a cycle stored (``rows.result_row``)."""
    return _insert("results", "cycle, job_id, backend, origin, destination, date, return_date,"
                   " fare_count, worker, stored_at, options, legs, answer", mark)


def insert_fare(mark: str, columns: Sequence[str] = FARE_FIELDS) -> str:
    """Store one fare (``rows.fare_rows``), or only its ``columns`` (the others take their
    defaults)."""
    return _insert("fares", ", ".join(columns), mark)


def insert_outcome(mark: str) -> str:
    """Record an attempt's outcome once (``rows.outcome_row``)."""
    return _insert("outcomes", "cycle, job_id, attempt, worker, status, duration, error, at",
                   mark, " ON CONFLICT DO NOTHING")


def insert_event(mark: str) -> str:
    """Add an event to the outbox once (``rows.outbox_rows``)."""
    return _insert("outbox", ", ".join(EVENT_COLUMNS[1:]), mark, " ON CONFLICT DO NOTHING")


def upsert_prices(mark: str) -> str:
    """Keep a job's prices of its latest cycle (job_id, cycle, prices)."""
    return (_insert("last_prices", "job_id, cycle, prices", mark)
            + " ON CONFLICT (job_id) DO UPDATE SET cycle = excluded.cycle,"
            " prices = excluded.prices WHERE excluded.cycle > last_prices.cycle")


# The outbox ------------------------------------------------------------------------

EVENT_SELECT = ", ".join(f"o.{column}" for column in EVENT_COLUMNS)
# The fields of a dead letter as ``dead_letters`` selects them.
DEAD_FIELDS = ("destination", "seq", "id", "kind", "job_id", "cycle", "attempts", "error",
               "state", "at")


def outbox_pending(mark: str) -> str:
    """The next events after a destination's cursor, oldest first (destination, limit)."""
    return (f"SELECT {EVENT_SELECT} FROM outbox AS o WHERE o.seq > COALESCE("
            f"(SELECT seq FROM outbox_cursors WHERE destination = {mark}), 0)"
            f" ORDER BY o.seq LIMIT {mark}")


def outbox_retries(mark: str) -> str:
    """A destination's dead letters sent back for retry, oldest first (destination, limit)."""
    return (f"SELECT {EVENT_SELECT} FROM outbox_dead AS d JOIN outbox AS o"
            f" ON o.seq = d.seq WHERE d.destination = {mark} AND d.state = 'retry'"
            f" ORDER BY d.seq LIMIT {mark}")


def move_cursor(mark: str) -> str:
    """Move a destination's cursor forward, never back (destination, seq, updated_at)."""
    return (f"INSERT INTO outbox_cursors (destination, seq, updated_at)"
            f" VALUES ({mark}, {mark}, {mark}) ON CONFLICT (destination) DO UPDATE SET"
            " seq = excluded.seq, updated_at = excluded.updated_at"
            " WHERE excluded.seq > outbox_cursors.seq")


def bury(mark: str) -> str:
    """Record an event a destination gave up on (destination, seq, attempts, error, at)."""
    return ("INSERT INTO outbox_dead (destination, seq, attempts, error, state, at)"
            f" VALUES ({mark}, {mark}, {mark}, {mark}, 'dead', {mark})"
            " ON CONFLICT (destination, seq) DO UPDATE SET"
            " attempts = outbox_dead.attempts + excluded.attempts, error = excluded.error,"
            " state = 'dead', at = excluded.at")


DEAD_COUNTS = ("SELECT destination, COUNT(*), SUM(CASE WHEN state = 'retry' THEN 1 ELSE 0 END)"
               " FROM outbox_dead GROUP BY destination")
"""Per destination, its dead letters and how many of them are sent back for retry."""


def dead_letters(mark: str, one_destination: bool) -> str:
    """Dead letters with their events (of one destination, the parameter, if asked)."""
    where = f" WHERE d.destination = {mark}" if one_destination else ""
    return ("SELECT d.destination, d.seq, o.id, o.kind, o.job_id, o.cycle, d.attempts,"
            " d.error, d.state, d.at FROM outbox_dead AS d JOIN outbox AS o ON o.seq = d.seq"
            f"{where} ORDER BY d.destination, d.seq")


def prune(mark: str) -> str:
    """Delete a chunk of the events up to a seq, older than a time, that none holds dead.

    Parameters: the last seq every destination has passed, the oldest ``created_at``
    to keep, and the chunk size.
    """
    return ("DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox AS o"
            f" WHERE o.seq <= {mark} AND o.created_at < {mark} AND NOT EXISTS"
            " (SELECT 1 FROM outbox_dead AS d WHERE d.seq = o.seq)"
            f" ORDER BY o.seq LIMIT {mark})")


def fares_of_cycle(mark: str) -> str:
    """How many fares one cycle stored, from the per-job counts (``results`` is keyed by cycle)."""
    return f"SELECT COALESCE(SUM(fare_count), 0) FROM results WHERE cycle = {mark}"


# Per-field yields -----------------------------------------------------------------

FIELD_COUNT_COLUMNS = ("cycle", "backend", "field", "valid", "invalid")


def add_field_counts(mark: str) -> str:
    """Add an answer's valid and invalid fares to a (cycle, backend, field) total
    (cycle, backend, field, valid, invalid)."""
    return (f"INSERT INTO field_counts ({', '.join(FIELD_COUNT_COLUMNS)})"
            f" VALUES ({', '.join([mark] * len(FIELD_COUNT_COLUMNS))})"
            " ON CONFLICT (cycle, backend, field) DO UPDATE SET"
            " valid = field_counts.valid + excluded.valid,"
            " invalid = field_counts.invalid + excluded.invalid")


def field_counts_of_cycle(mark: str) -> str:
    """The valid and invalid fares per backend and field of one cycle (the cycle)."""
    return f"SELECT backend, field, valid, invalid FROM field_counts WHERE cycle = {mark}"


def field_cycle(mark: str, before: bool) -> str:
    """The latest cycle with field counts (before a cycle, the parameter, if asked)."""
    return "SELECT MAX(cycle) FROM field_counts" + (f" WHERE cycle < {mark}" if before else "")

