"""Write every stored fare as CSV or JSON Lines, for ``voe export`` and other tools.

Prices stay the exact decimal strings the store holds; nothing is rounded.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from voe.store.base import FARE_FIELDS, Store

FORMATS = ("csv", "jsonl")


def export_fares(store: Store, out: TextIO, fmt: str) -> int:
    """Write every fare of ``store`` to ``out`` as ``"csv"`` or ``"jsonl"``; return the count.

    CSV has a header row and writes a missing return date as an empty field; open ``out``
    with ``newline=""``. Raises ``ValueError`` for another format before writing anything.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    fares = store.iter_fares()
    return _write_csv(fares, out) if fmt == "csv" else _write_jsonl(fares, out)


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
