"""A deadline per fetch and a cap on its body, enforced while the body streams.

A read timeout bounds each read, not the answer: an airline that trickles one byte
a second, or sends a body that never ends, holds a plain ``requests`` call (and its
memory) forever. Here every fetch has ``VOE_FETCH_DEADLINE`` seconds for its whole
answer (connection, every retry and its wait, headers, body) and may bring
at most ``VOE_FETCH_MAX_BYTES`` bytes of body (after decoding). The session
(``voe.worker.http``) reads every body with ``read_body`` and abandons the fetch, closing
its connection, as soon as either is passed; a Content-Length above the cap fails
before anything is read. So memory never holds more than the cap per fetch. A body
whose length is declared (within the cap) and not encoded is read in one call, where
gevent's timer keeps the deadline (a tenth of a fetch's CPU less than chunk by chunk);
any other body is read chunk by chunk, counting what it decodes to.

The deadline is kept three ways for each try: a ``gevent.Timeout`` over its download
(under gevent, as in workers, it interrupts any wait), a check of the clock between
chunks, and each chunk's socket timeout cut to the time left (so it holds without
gevent too: without it, no body is read in one call). Between tries nothing waits past
it either: a retry that would (``voe.worker.fetch.retry``) is given up, and so is a wait
for a host's slot or pause (``voe.worker.fetch.hosts``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from gevent.monkey import is_module_patched
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

from voe.backends.base import TransientError
from voe.worker.fetch.chain import FetchRequest

# Most bytes asked of the socket at once: a results page (about 35 KB) takes one or two reads.
CHUNK_BYTES = 64 * 1024


class FetchAbandoned(TransientError):
    """The fetch was given up on purpose (too slow or too big); the job may try again."""


class DeadlinePassed(FetchAbandoned):
    """The whole answer did not come within ``VOE_FETCH_DEADLINE`` seconds."""


class BodyTooLarge(FetchAbandoned):
    """The body is over ``VOE_FETCH_MAX_BYTES`` (said by its Content-Length, or as it came)."""


@dataclass(frozen=True)
class Deadline:
    """Give every fetch its deadline and body cap, and cut its timeouts to the deadline."""

    seconds: float
    max_bytes: int

    @classmethod
    def from_session(cls, session: Any) -> Deadline:
        """The limits of ``VOE_FETCH_DEADLINE`` and ``VOE_FETCH_MAX_BYTES``."""
        return cls(session.settings.voe_fetch_deadline, session.settings.voe_fetch_max_bytes)

    def process_request(self, request: FetchRequest) -> None:
        """Set the deadline and the cap; no connect or read timeout may outlast the deadline."""
        request.deadline = time.monotonic() + self.seconds
        request.max_bytes = self.max_bytes
        request.meta["deadline_seconds"] = self.seconds
        timeout = request.options.get("timeout")
        if isinstance(timeout, tuple) and len(timeout) == 2:
            connect, read = timeout
            request.options["timeout"] = (self.seconds if connect is None
                                          else min(connect, self.seconds),
                                          self.seconds if read is None else min(read, self.seconds))
        elif timeout is None or isinstance(timeout, int | float):
            request.options["timeout"] = (self.seconds if timeout is None
                                          else min(timeout, self.seconds))


def deadline_error(request: FetchRequest) -> DeadlinePassed:
    """The error of a fetch whose deadline passed."""
    seconds = request.meta.get("deadline_seconds")
    within = f"within {seconds:g}s " if seconds is not None else ""
    return DeadlinePassed(f"{request.host}: no complete answer {within}(VOE_FETCH_DEADLINE); "
                          "the fetch was abandoned")


def _too_large(request: FetchRequest, size: str) -> BodyTooLarge:
    return BodyTooLarge(f"{request.host}: a body of {size}, over the {request.max_bytes}-byte "
                        "cap (VOE_FETCH_MAX_BYTES); the fetch was abandoned")


def _socket(response: requests.Response) -> socket.socket | None:
    """The socket a streamed answer is read from (None if urllib3 no longer holds it)."""
    connection = getattr(response.raw, "connection", None)
    return getattr(connection, "sock", None)


def read_body(response: requests.Response, request: FetchRequest) -> None:
    """Read the body of a streamed ``response`` into ``response.content``, within the limits.

    Raises ``DeadlinePassed`` or ``BodyTooLarge`` (the connection is closed, nothing
    kept), or requests' own exceptions for a body cut short or undecodable, as
    ``response.content`` would.
    """
    limit, deadline = request.max_bytes, request.deadline
    try:
        declared = response.headers.get("Content-Length", "")
        size = int(declared) if declared.isdigit() else None
        if limit is not None and size is not None and size > limit:
            raise _too_large(request, f"{size} bytes (its Content-Length)")
        with _read_errors(request):
            if size is not None and _whole_at_once(response, deadline):
                content = response.raw.read()
            else:
                content = b"".join(_chunks(response, request, limit, deadline))
    except FetchAbandoned:
        response.close()
        raise
    response._content = content  # what requests' own ``content`` sets
    response._content_consumed = True


def _whole_at_once(response: requests.Response, deadline: float | None) -> bool:
    """Whether a body of a declared length may be read in one call: it is not encoded (its
    length, within the cap, is then the memory it takes), and either no deadline bounds it
    or a ``gevent.Timeout`` does (the session's download runs under one), which cooperative
    sockets let interrupt a read that trickles."""
    encoding = response.headers.get("Content-Encoding")
    return ((encoding is None or encoding.strip().lower() == "identity")
            and (deadline is None or is_module_patched("socket")))


@contextmanager
def _read_errors(request: FetchRequest) -> Iterator[None]:
    """Map urllib3's errors while a body is read to what requests' ``iter_content`` raises; a
    read timeout at the deadline is the deadline's."""
    try:
        yield
    except ReadTimeoutError as error:
        if request.deadline is not None and time.monotonic() >= request.deadline - 0.001:
            raise deadline_error(request) from None
        raise requests.ConnectionError(error) from error
    except ProtocolError as error:
        raise ChunkedEncodingError(error) from error
    except DecodeError as error:
        raise ContentDecodingError(error) from error
    except SSLError as error:
        raise requests.exceptions.SSLError(error) from error


def _chunks(response: requests.Response, request: FetchRequest, limit: int | None,
            deadline: float | None) -> list[bytes]:
    """The body's chunks, read until its end, the cap or the deadline."""
    raw = response.raw
    sock = _socket(response) if deadline is not None else None
    read_timeout = sock.gettimeout() if sock is not None else None
    chunks: list[bytes] = []
    size = 0
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise deadline_error(request)
            if sock is not None and (read_timeout is None or left < read_timeout):
                sock.settimeout(left)
                read_timeout = left
        chunk = raw.read1(CHUNK_BYTES, decode_content=True)
        if not chunk:
            return chunks
        size += len(chunk)
        if limit is not None and size > limit:
            raise _too_large(request, f"more than {limit} bytes")
        chunks.append(chunk)
