"""Checked reading of values a peer sent: bounded strings, printable names, integers, arrays.

A peer's bytes are untrusted: every value decoded from the wire passes one of these
before voe uses it, and a name that reaches logs or terminals must be printable.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from voe.model import MAX_LEGS, CalendarDay, Fare, FieldCount, MultiCityFare, RoundTripFare

# Longest string anywhere in a message (errors are truncated to fit before sending).
MAX_STR = 4096
# Largest count of fares with a field valid (or invalid) one result may report.
MAX_FIELD_COUNT = 1_000_000
# The fields a result may count, each at most once: a fare's (the fare pipeline checks no other).
FIELD_NAMES = frozenset(Fare._fields)
# Field counts ([field, valid, invalid]) remembered once validated: answers repeat a few.
KNOWN_FIELD_COUNTS = 4096


def text(value: Any, limit: int = MAX_STR, empty: bool = False) -> str:
    """A string of at most ``limit`` characters (empty only if allowed)."""
    if not isinstance(value, str) or len(value) > limit or (not value and not empty):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def label(value: Any, limit: int, empty: bool = False) -> str:
    """A name shown in logs and on terminals (a worker, an address, a backend): a string
    of printable characters, so a peer cannot forge a log line or drive a terminal."""
    found = text(value, limit, empty)
    if not is_label(found):
        raise ValueError("control characters in a name")
    return found


def is_label(text: str) -> bool:
    """Whether ``text`` is safe in a log line and on a terminal: printable characters only.

    Refused: control characters (C0, DEL, C1: line breaks, escapes), Unicode line and
    paragraph separators (a line break to many log readers), format characters (bidi
    overrides that reorder what a terminal shows), unassigned and private code points,
    and every space but the ASCII one.
    """
    return text.isprintable()


def printable(text: str) -> str:
    """``text`` with each character ``is_label`` refuses made a space: one plain line."""
    return text if text.isprintable() else "".join(
        char if char.isprintable() else " " for char in text)


def opt_text(value: Any, limit: int = MAX_STR) -> str | None:
    """``None``, or a string of at most ``limit`` characters."""
    return None if value is None else text(value, limit, empty=True)


def integer(value: Any, low: int = 0, high: int = 2**62) -> int:
    """An integer (never a bool or a float) in [low, high]."""
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"expected an integer in [{low}, {high}]")
    return value


def array(value: Any) -> list[Any]:
    """An array (a list, as msgpack decodes one)."""
    if not isinstance(value, list):
        raise ValueError(f"expected an array, got {type(value).__name__}")
    return value


def fares(value: Any) -> tuple[Fare, ...]:
    """Validate a result's fare rows; the sink's hot path, so the checks are inlined."""
    if type(value) is not list:
        raise ValueError("fares must be an array")
    other_shapes = False
    for row in value:
        if type(row) is not list or len(row) != 5:
            if type(row) is not list or len(row) not in _OTHER_SHAPES:
                raise ValueError("a fare has 5 fields (8 for a round trip, 6 for a multi-city "
                                 "trip, 3 for a calendar's day)")
            other_shapes = True
            if len(row) == 3:
                _calendar_day(row)
                continue
            if len(row) == 6:
                _later_legs(row[5])
            else:
                _return_leg(row[5:])
        flight, departure, arrival, price, currency = row[:5] if other_shapes else row
        if not (type(flight) is str and type(departure) is str and type(arrival) is str
                and type(price) is str and type(currency) is str):
            raise ValueError("a fare's fields are strings")
        if (not 0 < len(flight) <= 64 or len(departure) > 64 or len(arrival) > 64
                or not 0 < len(price) <= 32 or not 0 < len(currency) <= 8):
            raise ValueError("a fare's fields are short, and flight, price, currency are set")
    if other_shapes:
        return tuple(_shaped(row) for row in value)
    return tuple(map(_new_fare, value))  # each checked to have Fare's five fields


_new_fare = partial(tuple.__new__, Fare)
# A fare's type by its number of fields (a multi-city fare's, 6, is made by ``_shaped``).
_SHAPES: dict[int, Any] = {5: Fare, 8: RoundTripFare, 3: CalendarDay}
_OTHER_SHAPES = frozenset({3, 6, 8})


def _shaped(row: list[Any]) -> Any:
    """A fare row (checked) as its type; a multi-city fare's later legs become tuples."""
    if len(row) == 6:
        return MultiCityFare(*row[:5], tuple(tuple(leg) for leg in row[5]))
    return _SHAPES[len(row)]._make(row)


def _later_legs(legs: Any) -> None:
    """Check a multi-city fare's later legs: 1 to ``MAX_LEGS - 1`` (flight, departure,
    arrival) arrays of short strings, each flight set."""
    if type(legs) is not list or not 0 < len(legs) < MAX_LEGS:
        raise ValueError(f"a multi-city fare has 1 to {MAX_LEGS - 1} later legs")
    for leg in legs:
        if type(leg) is not list or len(leg) != 3:
            raise ValueError("a later leg is [flight, departure, arrival]")
        _return_leg(leg, "later leg's")


def _calendar_day(row: list[Any]) -> None:
    """Check a calendar's day: a date, a price and a currency, short strings, all set."""
    date, price, currency = row
    if not (type(date) is str and type(price) is str and type(currency) is str):
        raise ValueError("a calendar day's fields are strings")
    if len(date) != 10 or not 0 < len(price) <= 32 or not 0 < len(currency) <= 8:
        raise ValueError("a calendar day has a date (YYYY-MM-DD), a price and a currency")


def _return_leg(leg: list[Any], what: str = "return") -> None:
    """Check a round-trip fare's return flight and times: short strings, the flight set."""
    flight, departure, arrival = leg
    if not (type(flight) is str and type(departure) is str and type(arrival) is str):
        raise ValueError("a fare's fields are strings")
    if not 0 < len(flight) <= 64 or len(departure) > 64 or len(arrival) > 64:
        raise ValueError(f"a fare's {what} fields are short, and its {what} flight is set")


_known_counts: dict[tuple[str, int, int], FieldCount] = {}


def field_counts(value: Any) -> tuple[FieldCount, ...]:
    """Validate a result's per-field counts: each a fare's field, named once, with counts in
    [0, ``MAX_FIELD_COUNT``]. Per result on the sink's hot path: a row validated before
    (up to ``KNOWN_FIELD_COUNTS`` of them) costs a lookup once its counts are integers (so
    that ``1.0`` or ``True`` never pass for a remembered ``1``)."""
    if type(value) is not list or len(value) > len(FIELD_NAMES):
        raise ValueError(f"field counts are an array of at most {len(FIELD_NAMES)}")
    counts = []
    for row in value:
        if type(row) is not list or len(row) != 3:
            raise ValueError("a field count is [field, valid, invalid]")
        field, valid, invalid = row
        if type(valid) is not int or type(invalid) is not int:
            raise ValueError("a field's counts are integers")
        count = _known_counts.get((field, valid, invalid))
        if count is None:
            if type(field) is not str or field not in FIELD_NAMES:
                raise ValueError("a field count names a fare's field")
            if not 0 <= valid <= MAX_FIELD_COUNT or not 0 <= invalid <= MAX_FIELD_COUNT:
                raise ValueError(f"a field's counts are in [0, {MAX_FIELD_COUNT}]")
            count = FieldCount(field, valid, invalid)
            if len(_known_counts) < KNOWN_FIELD_COUNTS:
                _known_counts[count] = count
        counts.append(count)
    if len({count.field for count in counts}) != len(counts):
        raise ValueError("a field is counted once")
    return tuple(counts)
