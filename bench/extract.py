"""The extraction the scrape benchmark's peers share: the XPath of a fare and the price format.

The same expressions as voe's ``demo`` backend reads (``table#results``, its
``tr.flight`` rows, one ``td`` per field by class), and the same price rule
(``R$ 1.234,56`` -> ``"1234.56"``), written without voe so the peers stand alone.
"""

from __future__ import annotations

import re
from decimal import Decimal

ROWS = "//table[@id='results']//tr[@class='flight']"
FIELDS = ("flight", "departure", "arrival", "price")
CELL = "td[@class='{}']/text()"
CURRENCY = "BRL"
_PRICE = re.compile(r"R\$\s*([0-9]{1,3}(?:\.[0-9]{3})*|[0-9]+),([0-9]{2})")


def parse_brl(text: str) -> str:
    """``R$ 1.234,56`` -> ``"1234.56"``; ``ValueError`` for anything else."""
    match = _PRICE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"unreadable price {text!r}")
    return str(Decimal(f"{match[1].replace('.', '')}.{match[2]}"))
