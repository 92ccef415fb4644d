"""Reading a page for block markers: the words of an airline's block pages, ignoring case.

Every page a backend fetches is searched, so the search works on the raw bytes: the
body is lowered once (ASCII, a fast C loop) and each marker's longest ASCII run
("muitas requisi" of "muitas requisições") is looked for; only where one is found is
that part of the page decoded and case-folded to compare the whole marker. A page
that declares another charset than UTF-8 is decoded and case-folded whole instead.
Measured on a 29 KB results page: about 8 µs to lower it and 9 µs per marker (the
demo backend's five: about 55 µs), where decoding and case-folding the page alone
costs about 100 µs (a fetch costs about 700 µs of CPU, parsing the page about 1 ms).

Apart from ``voe.worker.fetch.blocks`` so that code which reads pages outside the chain can
check them the same way without importing the chain's errors (browser renders pass the
chain: ``voe.worker.browser.chained``).
"""

from __future__ import annotations

import re

_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_ASCII_RUN = re.compile(r"[\x00-\x7f]+")
# Shortest ASCII run searched for alone; a marker without one is searched for whole.
MIN_KEY = 4


def find_marker(text: str, markers: tuple[str, ...]) -> str | None:
    """The first of ``markers`` (already case-folded) found in ``text``, ignoring case."""
    folded = text.casefold()
    for marker in markers:
        if marker in folded:
            return marker
    return None


class Markers:
    """The block markers of one backend, ready to be searched for in raw pages."""

    def __init__(self, declared: tuple[str, ...]) -> None:
        self.declared = declared
        self.folded = tuple(marker.casefold() for marker in declared)
        keys = []
        for marker, folded in zip(declared, self.folded, strict=True):
            runs = _ASCII_RUN.findall(folded)
            key = max(runs, key=len) if runs else ""
            keys.append((key.encode() if len(key) >= MIN_KEY else folded.encode(), folded,
                         marker))
        self._keys = tuple(keys)

    def find(self, body: bytes, content_type: str = "") -> str | None:
        """The marker ``body`` holds (as declared), or None; ``content_type`` gives its charset."""
        charset = _CHARSET.search(content_type) if "charset" in content_type.lower() else None
        if charset is not None and charset[1].lower() not in _UTF8:
            try:
                text = body.decode(charset[1], errors="replace")
            except LookupError:  # an unknown charset name: the bytes as they are
                pass
            else:
                found = find_marker(text, self.folded)
                return None if found is None else self.declared[self.folded.index(found)]
        lowered = body.lower()
        for key, folded, marker in self._keys:
            at = lowered.find(key)
            while at >= 0:
                reach = 4 * len(folded)  # a character is at most 4 bytes of UTF-8
                window = body[max(0, at - reach):at + reach]
                if folded in window.decode("utf-8", errors="replace").casefold():
                    return marker
                at = lowered.find(key, at + 1)
        return None
