"""Flight codes: an airline designator and a number, written the one way voe stores them."""

from __future__ import annotations

import re

from voe.worker.farepipeline.base import FieldStage, all_match

# What voe stores (and the demo airline writes): designator, one space, number.
_CANONICAL = re.compile(r"(?:[A-Z][A-Z0-9]|[0-9][A-Z])[A-Z]? [0-9]{1,4}[A-Z]?")
# A two-character IATA designator (at least one letter: no designator is two digits) or
# a three-letter ICAO one, then 1 to 4 digits and an optional operational suffix; the
# space between them is optional.
_CODE = re.compile(r"((?:[A-Z][A-Z0-9]|[0-9][A-Z])[A-Z]?) ?([0-9]{1,4}[A-Z]?)")
# Labels pages put before the code: "Voo G3 3573", "Vôo nº G3 3573", "Flight: LA 1234".
_LABEL = re.compile(r"(?:(?:voo|vôo|flight|flt|vuelo|vol)\b\.?:?\s*)?(?:n[º°o]\.?\s*)?",
                    re.IGNORECASE)


def normalise_flight(text: str) -> str:
    """``"Voo G3\\xa03573"`` -> ``"G3 3573"``; ``ValueError`` if it is not a flight code.

    Every kind of space (no-break, thin, tabs) counts as one space; a leading label
    ("Voo", "Flight", "nº") is dropped; letters are upper-cased.
    """
    if _CANONICAL.fullmatch(text):
        return text
    spaced = " ".join(text.split())
    unlabelled = spaced[_LABEL.match(spaced).end():].upper()  # type: ignore[union-attr]
    match = _CODE.fullmatch(unlabelled)
    if match is None:
        raise ValueError(f"{text!r} is not a flight code (designator and number)")
    return f"{match[1]} {match[2]}"


class FlightCode(FieldStage):
    """Normalise every fare's flight code (``G3 3573``) and refuse what is not one."""

    fields = ("flight",)
    all_valid = staticmethod(all_match(_CANONICAL.pattern))  # each already "G3 3573"

    def check(self, value: str) -> str:
        """The flight code in voe's form; ``ValueError`` if it is none."""
        return normalise_flight(value)
