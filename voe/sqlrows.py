"""Many rows into SQLite in few statements: ``INSERT ... VALUES (...), (...), ...``.

``executemany`` runs its statement once per row, and each run costs, besides the row
itself, what Python's driver and SQLite charge per step (the interpreter's lock
released and taken again, the statement reset, SQLite's mutexes): about a third of a
short row's insert. The sink stores five fares and two markers a result, the master
adds every job of its plan; both write their rows here, ``ROWS_PER_STATEMENT`` rows a
statement, in the same order, so the table ends as ``executemany`` would leave it.

A column that is None in every row of a call is written as a literal NULL instead of
bound: Python's sqlite3 binds a str, int or float at once but sends a None through its
adapter lookup (a registry search and two failed attribute lookups, about 2,600
instructions a value, a fifth of a short row's insert).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

ROWS_PER_STATEMENT = 50
"""Rows one statement inserts (measured: 12-column rows, 30% less CPU than one a step;
more gain little)."""
MAX_PARAMETERS = 999
"""Parameters one statement may bind: SQLite's limit before 3.32, the lowest in use."""

_statements: dict[tuple[str, Any], str] = {}


def multi_row(sql: str, rows: int) -> str:
    """``sql``, an ``INSERT ... VALUES (?, ...)`` of one row with an optional tail (``ON
    CONFLICT ...``), made an insert of ``rows`` rows."""
    statement = _statements.get((sql, rows))
    if statement is None:
        head, _, rest = sql.partition(" VALUES ")
        if not rest.startswith("("):
            raise ValueError(f"not an INSERT ... VALUES (...) statement: {sql[:80]}")
        group, _, tail = rest.partition(")")
        statement = _statements[sql, rows] = (
            f"{head} VALUES {', '.join([group + ')'] * rows)}{tail}")
    return statement


def insert_rows(db: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (all as wide as ``sql``'s VALUES) with ``sql``, many to a statement;
    a column None in every row is written NULL in the statement, not bound."""
    if not rows:
        return
    first = rows[0]
    nulls = tuple(column for column, value in enumerate(first)
                  if value is None and all(row[column] is None for row in rows))
    if not nulls:
        insert_values(db, sql, len(first), list(chain.from_iterable(rows)))
        return
    kept = [column for column in range(len(first)) if column not in nulls]
    if not kept:  # every value None: a statement of literals, once a row
        db.executemany(with_nulls(sql, nulls), [()] * len(rows))
        return
    pick = itemgetter(*kept)
    values = (list(chain.from_iterable(map(pick, rows))) if len(kept) > 1
              else list(map(pick, rows)))
    insert_values(db, with_nulls(sql, nulls), len(kept), values)


def with_nulls(sql: str, columns: tuple[int, ...]) -> str:
    """``sql``, an ``INSERT ... VALUES (?, ...)`` of one row, with the placeholders of
    ``columns`` (numbered from 0) made literal NULLs."""
    statement = _statements.get((sql, columns))
    if statement is None:
        head, _, rest = sql.partition(" VALUES (")
        group, close, tail = rest.partition(")")
        marks = [mark.strip() for mark in group.split(",")]
        if not close or any(mark != "?" for mark in marks) or max(columns) >= len(marks):
            raise ValueError(f"not an INSERT ... VALUES (?, ...) of {max(columns) + 1} or more"
                             f" columns: {sql[:80]}")
        group = ", ".join("NULL" if column in columns else mark
                          for column, mark in enumerate(marks))
        statement = _statements[sql, columns] = f"{head} VALUES ({group}){tail}"
    return statement


def insert_values(db: sqlite3.Connection, sql: str, width: int, values: Sequence[Any]) -> None:
    """``insert_rows`` for rows given as one flat list of values, ``width`` a row.

    Whole statements of ``ROWS_PER_STATEMENT`` rows first, then the rest in statements of
    32, 16, 8, 4, 2 and 1 rows: a handful of statement shapes, which the connection's
    statement cache keeps compiled (a shape per row count would outgrow it)."""
    if len(values) % width:
        raise ValueError(f"{len(values)} values do not make rows of {width}")
    per = max(1, min(ROWS_PER_STATEMENT, MAX_PARAMETERS // width))
    step = per * width
    whole = len(values) - len(values) % step
    if whole:
        db.executemany(multi_row(sql, per), [values[start:start + step]
                                             for start in range(0, whole, step)])
    start, left = whole, (len(values) - whole) // width
    while left:
        rows = 1 << (left.bit_length() - 1)  # the most rows a power of two holds
        end = start + rows * width
        db.execute(multi_row(sql, rows), values[start:end])
        start, left = end, left - rows
