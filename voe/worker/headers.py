"""A faster ``http.client.parse_headers`` for the worker: the same message, without the
email parser for plain header blocks.

Every answer a worker fetches passes ``http.client.parse_headers``, which hands the
header block to the email package's feed parser: about 25 us for a handful of headers,
a few hundredths of a results page's CPU. A block whose every line is ``Name: value``
(a name of printable characters without a colon, one line ending, no continuation
line) needs none of that parser's cases; for it this builds the same ``HTTPMessage``
the email parser would (its headers, as ``compat32`` keeps them, and an empty
payload). Any other block (a continuation, a stray carriage return, a line the email
parser would take for the body) goes to the email parser as before. ``install``
puts it in place of ``http.client``'s (what ``HTTPResponse.begin`` calls).
"""

from __future__ import annotations

import email.parser
import http.client
import re
from typing import BinaryIO

# A header line the email parser files as (name, value) with nothing else to do: the
# name as its ``headerRE`` takes it (without a space, so never a "From " envelope
# line), blanks after the colon dropped, the line ending dropped (compat32's
# ``header_source_parse``).
_PLAIN_FIELD = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n")
_BLANK = (b"\r\n", b"\n", b"")


def parse_headers(fp: BinaryIO, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
                  ) -> http.client.HTTPMessage:
    """``http.client.parse_headers``: read the header block from ``fp`` (within the same
    limits) and return its message, built directly when every line is plain."""
    lines = http.client._read_headers(fp)
    if lines[-1] in _BLANK:
        fields = []
        for line in lines[:-1]:
            plain = _PLAIN_FIELD.fullmatch(line.decode("iso-8859-1"))
            if plain is None:
                break
            fields.append((plain[1], plain[2]))
        else:
            message = _class()
            message._headers = fields  # what ``set_raw`` appends to, one at a time
            message.set_payload("")
            return message
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=_class).parsestr(text)


def install() -> None:
    """Put ``parse_headers`` in place of ``http.client``'s, unless this Python's http.client
    lacks the line reader it shares (then its own stays)."""
    if hasattr(http.client, "_read_headers"):
        http.client.parse_headers = parse_headers

