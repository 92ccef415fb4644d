"""How the demo airline answers over WSGI: whole bodies (plain, JSON, an HTML error
page) and the bodies its ``trickle`` and ``endless`` faults stream out slowly."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent

from voe.demo.airline.pages import error_page

# Seconds between two bytes of a trickled body (the "trickle" fault).
TRICKLE_SECONDS = 1.0
# Bytes of each write of a body that never ends (the "endless" fault).
ENDLESS_CHUNK = 64 * 1024

StartResponse = Callable[..., Any]


def trickle(body: bytes) -> Iterator[bytes]:
    """``body`` one byte at a time, ``TRICKLE_SECONDS`` apart."""
    for index in range(len(body)):
        if index:
            gevent.sleep(TRICKLE_SECONDS)
        yield body[index:index + 1]


def endless(body: bytes) -> Iterator[bytes]:
    """The page's start, then the same ``ENDLESS_CHUNK`` bytes of markup forever."""
    yield body[:len(body) // 2]
    filler = (b"<!-- " + b"voos " * (ENDLESS_CHUNK // 5))[:ENDLESS_CHUNK - 4] + b" -->"
    while True:
        yield filler


def respond(start_response: StartResponse, status: str, content_type: str,
            body: bytes, extra: Iterable[tuple[str, str]] = (),
            cache: str = "no-store") -> list[bytes]:
    """Start a response with ``body`` whole (its length, type, caching and ``extra`` headers)."""
    start_response(status, [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", cache),
        *extra,
    ])
    return [body]


def json_body(status: str, payload: Any) -> tuple[str, str, bytes]:
    """The status, content type and body of a JSON answer of ``payload``."""
    return status, "application/json", json.dumps(payload, ensure_ascii=False).encode()


def json_response(start_response: StartResponse, status: str, payload: Any,
                  extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    """Answer ``payload`` as JSON."""
    _, content_type, body = json_body(status, payload)
    return respond(start_response, status, content_type, body, extra)


def html_error(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    """Answer the airline's HTML error page for ``status`` saying ``message``."""
    return respond(start_response, status, "text/html; charset=utf-8",
                   error_page(status, message).encode())
