"""The fare queries both stores run, written once; each store gives its dialect's pieces.

``by_price`` orders prices as numbers (SQLite casts to REAL, PostgreSQL to NUMERIC);
``mark`` is the parameter placeholder (``?`` or ``%s``).
"""

from __future__ import annotations

from voe.store.base import FARE_FIELDS

COLUMNS = ", ".join(FARE_FIELDS)
# What makes one search: a fare's route and dates.
ROUTE = ("origin", "destination", "date", "return_date")
# Among equal prices, the cheapest fare is picked the same way every time.
TIE_BREAK = "backend, flight, departure"


def cheapest(chosen: str, by_price: str) -> str:
    """The cheapest fare per route and dates among the fares the query ``chosen`` selects."""
    route = ", ".join(ROUTE)
    return (f"WITH chosen AS ({chosen}), ranked AS ("
            f" SELECT {COLUMNS}, ROW_NUMBER() OVER ("
            f"  PARTITION BY {route} ORDER BY {by_price}, {TIE_BREAK}"
            f" ) AS rank FROM chosen)"
            f" SELECT {COLUMNS} FROM ranked WHERE rank = 1 ORDER BY {route}")


def price_history(by_price: str, mark: str, with_date: bool) -> str:
    """The cheapest fare of one route per cycle and dates, in one pass over the fares.

    Parameters: origin, destination, and the date when ``with_date``.
    """
    where = f"origin = {mark} AND destination = {mark}"
    if with_date:
        where += f" AND date = {mark}"
    return (f"WITH ranked AS ("
            f" SELECT {COLUMNS}, ROW_NUMBER() OVER ("
            f"  PARTITION BY cycle, date, return_date ORDER BY {by_price}, {TIE_BREAK}"
            f" ) AS rank FROM fares WHERE {where})"
            f" SELECT {COLUMNS} FROM ranked WHERE rank = 1 ORDER BY date, return_date, cycle")
