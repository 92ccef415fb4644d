"""uvicorn's h11 protocol with the defence it lacks against slow clients: a deadline
on every request.

uvicorn times out idle keep-alive connections only: a client that drips one header
line every few seconds keeps its connection forever, and every byte it sends even
cancels the keep-alive timer. Here a connection must finish sending each request
within ``REQUEST_TIMEOUT`` seconds of opening it (or of the previous answer), or it
is closed. (A garbage ``Content-Length`` needs nothing here: h11 0.16 refuses one
that is not plain digits or longer than 20, and uvicorn answers 400 with one line.)
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
    """``H11Protocol`` with a deadline on every request."""

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
        super().handle_events()
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
