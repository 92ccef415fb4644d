"""A digest of a search's answer, so the master can tell whether it changed since last time.

The fares are sorted first: an airline listing the same fares in another order has not
changed its answer. A CRC-32 of their MessagePack is enough to tell a change (two answers
collide once in four billion) and costs the sink about two microseconds a result.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import msgpack

_pack = msgpack.Packer(use_bin_type=True).pack


def answer_digest(fares: Sequence[Sequence[Any]]) -> int:
    """The digest of an answer (its fares, in any order)."""
    return zlib.crc32(_pack(sorted(fares)))
