"""Write every stored fare as CSV or JSON Lines, for ``voe export`` and other tools.

Prices stay the exact decimal strings the store holds; nothing is rounded.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from voe.store.base import FARE_FIELDS, Store

FORMATS = ("csv", "jsonl")


def export_fares(store: Store, out: TextIO, fmt: str, cycle: int | None = None,
                 since: int | None = None) -> int:
    """Write the fares of ``store`` to ``out`` as ``"csv"`` or ``"jsonl"``; return the count.

    ``cycle`` keeps one cycle, ``since`` the cycles from that number on (both: their overlap).
    CSV has a header row and writes a missing return date as an empty field; open ``out``
    with ``newline=""``. Raises ``ValueError`` for another format before writing anything.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    fares = _fares(store, cycle, since)
    return _write_csv(fares, out) if fmt == "csv" else _write_jsonl(fares, out)


def _fares(store: Store, cycle: int | None, since: int | None) -> Iterator[dict[str, Any]]:
    """The fares of the chosen cycles, oldest cycle first."""
    if since is None:
        yield from store.iter_fares(cycle)
        return
    from voe.cli.audit import store_cycles

    for number in sorted(store_cycles(store)):
        if number >= since and (cycle is None or number == cycle):
            yield from store.iter_fares(number)


def _write_csv(fares: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=FARE_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for fare in fares:
        writer.writerow(fare)
        count += 1
    return count


def _write_jsonl(fares: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for fare in fares:
        out.write(json.dumps(fare, ensure_ascii=False) + "\n")
        count += 1
    return count


def export_format(out: str) -> str:
    """The format ``voe export`` writes when none is given: by the file's extension, else jsonl."""
    return "csv" if out.lower().endswith(".csv") else "jsonl"
