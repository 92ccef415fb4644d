"""Departure and arrival times: a time of day, stored as ``HH:MM``."""

from __future__ import annotations

import re

from voe.worker.farepipeline.base import FieldStage, all_match

_CANONICAL = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
# "05:15", "5:15", "05h15", "5 h 15", "05H15"; nothing else (no seconds, no "+1" days).
_TIME = re.compile(r"([01]?[0-9]|2[0-3]) ?[:hH] ?([0-5][0-9])")


def normalise_time(text: str) -> str:
    """``"05h15"`` or ``" 5:15 "`` -> ``"05:15"``; ``ValueError`` if it is not a time of day."""
    if _CANONICAL.fullmatch(text):
        return text
    match = _TIME.fullmatch(" ".join(text.split()))
    if match is None:
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return f"{int(match[1]):02d}:{match[2]}"


class Times(FieldStage):
    """Normalise every fare's departure and arrival to ``HH:MM`` and refuse what is not a time."""

    fields = ("departure", "arrival")
    all_valid = staticmethod(all_match(_CANONICAL.pattern))  # each already "05:15"

    def check(self, value: str) -> str:
        """The time as ``HH:MM``; ``ValueError`` if it is none."""
        return normalise_time(value)
