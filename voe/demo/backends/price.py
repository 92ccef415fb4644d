"""Prices on the demo airline's HTML pages: an amount in reais read exactly, or refused.

The airline's own format (``R$ 1.234,56``) is read by one regular expression, the
hot path; anything else goes through price-parser (a library made for price
strings) and is accepted only when its shape is unambiguous.
"""

from __future__ import annotations

import re
from decimal import Decimal

from price_parser import Price

CURRENCY = "BRL"
# A price at or above this is a misread, not a fare (reais).
MAX_PRICE = Decimal(10_000_000)

_PRICE = re.compile(r"R\$\s*([0-9]{1,3}(?:\.[0-9]{3})*|[0-9]+),([0-9]{2})")
_CURRENCY_SIGNS = {"R$": "BRL", "BRL": "BRL"}
_SPACES = str.maketrans({"\xa0": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ",
                         "\t": " ", "\n": " ", "\r": " "})
# (shape of the amount, its decimal separator) in the order tried; the same grouping
# separator throughout a number, two decimals or none (whole reais).
_AMOUNT_SHAPES = (
    (re.compile(r"[0-9]{1,3}([. ])[0-9]{3}(?:\1[0-9]{3})*,[0-9]{2}|[0-9]+,[0-9]{2}"), ","),
    (re.compile(r"[0-9]+\.[0-9]{2}"), "."),
    (re.compile(r"[0-9]{1,3}([. ])[0-9]{3}(?:\1[0-9]{3})*|[0-9]+"), ","),
)
_CENTS = Decimal("0.01")
# Whole reais of fewer digits than this are below MAX_PRICE whatever they are.
_FAST_DIGITS = len(str(int(MAX_PRICE)))


def parse_price(text: str) -> str:
    """Read a price in reais as an exact decimal string with cents (``"1234.56"``).

    Accepted: ``R$ 1.234,56``, ``R$1234,56``, thousands separated by a space, a
    no-break or a thin space (``R$ 1 234,56``), ``BRL 1234.56``, and whole reais
    (``R$ 1.234`` is 1234.00). Anything else raises ``ValueError``: a price with
    words, a sign or a second amount around it, another currency or none, digits
    other than ASCII, mixed or irregular separators (``R$ 1,234.56``, ``R$ 12.34,56``),
    one decimal digit, zero or an absurd amount.
    """
    match = _PRICE.fullmatch(text.strip())
    if match is not None:
        whole = match[1].replace(".", "").lstrip("0")
        if len(whole) < _FAST_DIGITS and (whole or match[2] != "00"):
            # Positive and below MAX_PRICE: what the Decimal path below writes, without it.
            return f"{whole or '0'}.{match[2]}"
        amount = Decimal(f"{match[1].replace('.', '')}.{match[2]}")
    else:
        amount = _library_price(text)
    if amount <= 0:
        raise ValueError(f"price {text!r} is not positive")
    if amount >= MAX_PRICE:
        raise ValueError(f"price {text!r} is beyond any fare")
    return str(amount.quantize(_CENTS))


def _library_price(text: str) -> Decimal:
    """Read a price not in the airline's own format with price-parser, refusing any doubt."""
    spaced = " ".join(text.translate(_SPACES).split())
    for shape, separator in _AMOUNT_SHAPES:
        price = Price.fromstring(spaced, decimal_separator=separator)
        amount_text = (price.amount_text or "").strip()
        if price.amount is None or not shape.fullmatch(amount_text):
            continue
        sign = (price.currency or "").strip()
        if _CURRENCY_SIGNS.get(sign) != CURRENCY:
            raise ValueError(f"unreadable price {text!r}: no price in reais "
                             f"(currency {sign or 'missing'})")
        rest = spaced.replace(sign, "", 1).replace(amount_text, "", 1)
        if rest.strip():
            raise ValueError(f"unreadable price {text!r}: {rest.strip()!r} beside the amount")
        return Decimal(price.amount)
    raise ValueError(f"unreadable price {text!r}")
