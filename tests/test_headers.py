"""The worker's header parser builds the message the email parser builds, for any block."""

from __future__ import annotations

import email.parser
import http.client
import io
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voe.settings import Settings
from voe.worker import headers
from voe.worker.headers import parse_headers
from voe.worker.http import new_session


def _email_parse(block: bytes) -> http.client.HTTPMessage:
    """What the standard library's ``http.client.parse_headers`` returns for ``block``."""
    lines = http.client._read_headers(io.BytesIO(block))
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
        b"".join(lines).decode("iso-8859-1"))


def _state(message: http.client.HTTPMessage) -> dict[str, object]:
    state = dict(vars(message))
    state["defects"] = [(type(defect), str(defect)) for defect in message.defects]
    return state


def _same(block: bytes) -> None:
    fast = parse_headers(io.BytesIO(block))
    assert type(fast) is http.client.HTTPMessage
    assert _state(fast) == _state(_email_parse(block))
    assert fast.items() == _email_parse(block).items()


@pytest.mark.parametrize("block", [
    b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 35\r\n\r\nbody",
    b"Server: demo\nX-Empty:\nX-Blanks: \t  a value with trailing blanks  \n\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nVary: *\r\n\r\n",
    b"X-Folded: first\r\n second line\r\nNext: 1\r\n\r\n",      # a continuation line
    b"From somebody\r\nA: 1\r\n\r\n",                          # an envelope line
    b"Name : spaced\r\nA: 1\r\n\r\n",                          # taken for the body
    b": no name\r\nA: 1\r\n\r\n",
    b"A: 1\rB: 2\r\n\r\n",                                     # a bare carriage return
    b"A: caf\xe9 \x85\x0b\x0c\r\n\r\n",                        # Latin-1 and other breaks
    b"A: 1\r\nB: 2\r\n",                                       # no blank line: ends at EOF
    b"\r\n",
    b"",
])
def test_known_blocks_parse_as_the_email_parser_parses_them(block: bytes) -> None:
    _same(block)


_LINE = st.text(alphabet=st.sampled_from(list("Fromx-Z: \t\r\x0b\x0c\x85\x1c\xe9;=~!")),
                max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=6), st.sampled_from(["\r\n", "\n"]))
def test_any_block_parses_as_the_email_parser_parses_it(lines: list[str], ending: str) -> None:
    block = "".join(line + ending for line in lines) + ending
    _same(block.encode("iso-8859-1"))


def test_the_limits_of_http_client_still_hold() -> None:
    with pytest.raises(http.client.LineTooLong):
        parse_headers(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        parse_headers(io.BytesIO(b"A: 1\r\n" * 101 + b"\r\n"))


def test_a_worker_session_installs_it(monkeypatch: pytest.MonkeyPatch,
                                      make_settings: Callable[..., Settings]) -> None:
    monkeypatch.setattr(http.client, "parse_headers", http.client.parse_headers)
    new_session(make_settings()).close()
    assert http.client.parse_headers is headers.parse_headers
