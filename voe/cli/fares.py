"""What the store says about fares, for `voe prices`, `voe cheapest`, the dashboard and
`voe run`'s summary: a route's price history and the cheapest fare per route and date."""

from __future__ import annotations

import re
from decimal import Decimal

from voe.cli.report import open_report_store
from voe.settings import Settings

_ROUTE = re.compile(r"[A-Z0-9]{3}-[A-Z0-9]{3}")


def parse_route(route: str) -> tuple[str, str]:
    """``ORIG-DEST`` as (origin, destination); ``ValueError`` saying what is wrong."""
    if not _ROUTE.fullmatch(route):
        raise ValueError(f"route {route!r}: expected ORIG-DEST, e.g. GRU-REC")
    origin, destination = route.split("-")
    return origin, destination


def prices(settings: Settings, origin: str, destination: str,
           date: str | None = None) -> list[dict]:
    """The cheapest fare of a route per date, search options and cycle, oldest cycle first,
    flagging drops (a price is compared with the same search's of the cycle before).

    Each row holds the fare, ``previous`` (the price of the cycle before, or None),
    ``change`` (the difference as a decimal string, or None) and ``drop`` (it fell).
    """
    store = open_report_store(settings)
    if store is None:
        return []
    try:
        rows = store.price_history(origin, destination, date)
    finally:
        store.close()
    rows.sort(key=lambda fare: (fare["date"], fare["return_date"] or "", fare["options"],
                                fare["cycle"]))
    before: dict[tuple[str, str | None, str], str] = {}
    for row in rows:
        key = (row["date"], row["return_date"], row["options"])
        previous = before.get(key)
        change = Decimal(row["price"]) - Decimal(previous) if previous is not None else None
        row.update(previous=previous, change=None if change is None else str(change),
                   drop=change is not None and change < 0)
        before[key] = row["price"]
    return rows


def cheapest(settings: Settings) -> list[dict]:
    """The cheapest stored fare per route, date and search options."""
    store = open_report_store(settings)
    if store is None:
        return []
    try:
        return store.cheapest()
    finally:
        store.close()
