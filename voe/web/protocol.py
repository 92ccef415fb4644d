"""uvicorn's h11 protocol with the two defences it lacks: a request deadline and
a 400 (not a traceback) for a ``Content-Length`` too long to be a number.

uvicorn times out idle keep-alive connections only: a client that drips one header
line every few seconds keeps its connection forever, and every byte it sends even
cancels the keep-alive timer. Here a connection must finish sending each request
within ``REQUEST_TIMEOUT`` seconds of opening it (or of the previous answer), or it
is closed. h11 turns ``Content-Length`` into an ``int``, which Python refuses past
4,300 digits with a ``ValueError`` that uvicorn does not catch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("voe.web")

# Seconds a client has to send a request's line, headers and body.
REQUEST_TIMEOUT = 10.0


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` with a deadline on every request and malformed lengths refused."""

    request_timeout = REQUEST_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock on the first request."""
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        """Parse what arrived; stop the clock once a whole request is in."""
        try:
            super().handle_events()
        except ValueError as error:  # h11's int() of a Content-Length past 4,300 digits
            self.logger.warning("Invalid HTTP request received: %s", str(error)[:80])
            self.send_400_response("Invalid HTTP request received.")
            return
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()

    def on_response_complete(self) -> None:
        """Start the clock on the next request of a kept-alive connection."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        answering = self.cycle is not None and not self.cycle.response_complete
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not answering \
                and not self.transport.is_closing():
            log.debug("HTTP %s: no whole request within %gs; closed", self.client,
                      self.request_timeout)
            self.transport.close()
