"""Prices: a positive exact decimal within sane bounds (``VOE_PRICE_MIN``, ``VOE_PRICE_MAX``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

from voe.settings import Settings
from voe.worker.farepipeline.base import FieldStage, all_match

# What a backend hands over: digits, and up to three decimals (a few currencies have
# three), no sign, no exponent, no separators: reading the page's format is the
# backend's job.
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,3})?")
_CENTS = Decimal("0.01")
# Prices already written as normalise_price writes them: no leading zero, two decimals.
_ALL_NORMAL = all_match(r"(?:0|[1-9][0-9]{0,11})\.[0-9]{2}")


def normalise_price(text: str, low: Decimal, high: Decimal) -> str:
    """``"1234.5"`` -> ``"1234.50"``; ``ValueError`` unless a decimal between low and high."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a decimal amount")
    amount = Decimal(text)
    if not low <= amount <= high:
        raise ValueError(f"{text} is outside the bounds {low.normalize():f} to "
                         f"{high.normalize():f} (VOE_PRICE_MIN, VOE_PRICE_MAX)")
    return str(amount.quantize(_CENTS)) if amount.as_tuple().exponent >= -2 else text  # type: ignore[operator]


def _normal_key(bound: Decimal) -> tuple[int, str] | None:
    """``bound`` as the (length, text) of its normal form, or None if it has none (more
    than two decimals, or beyond twelve digits)."""
    if bound < 0 or bound != bound.quantize(_CENTS):
        return None
    text = f"{bound:.2f}"
    return (len(text), text) if _ALL_NORMAL([text]) else None


class PriceBounds(FieldStage):
    """Refuse a price that is not a positive decimal within the bounds; write it with cents.

    The bounds catch misreads (a fare of R$ 0,01 or of a million is a decoy or a
    digit too many): ``VOE_PRICE_MIN`` (1) and ``VOE_PRICE_MAX`` (1000000).
    """

    fields = ("price",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.low = Decimal(str(settings.voe_price_min))
        self.high = Decimal(str(settings.voe_price_max))
        # The bounds as (length, text) of their normal form, when they have one: prices
        # in normal form (no leading zero, two decimals) compare as those pairs do.
        self._low_key = _normal_key(self.low)
        self._high_key = _normal_key(self.high)

    def all_valid(self, values: Sequence[str]) -> bool:
        """Whether every value is a price within the bounds already written with cents."""
        if not values or not _ALL_NORMAL(values):
            return not values
        if self._low_key is None or self._high_key is None:
            amounts = list(map(Decimal, values))
            return self.low <= min(amounts) and max(amounts) <= self.high
        lengths = list(map(len, values))
        if self._low_key[0] < min(lengths) and max(lengths) < self._high_key[0]:
            return True  # every price has more digits than the low bound, fewer than the high
        keys = list(zip(lengths, values, strict=True))
        return self._low_key <= min(keys) and max(keys) <= self._high_key

    def check(self, value: str) -> str:
        """The price with at least two decimals; ``ValueError`` if invalid or out of bounds."""
        return normalise_price(value, self.low, self.high)
