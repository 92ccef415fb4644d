"""Default timeouts of airline requests: ``VOE_HTTP_CONNECT_TIMEOUT`` and ``VOE_HTTP_TIMEOUT``.

requests waits forever unless told otherwise. A request its backend sent without a
``timeout`` gets (``VOE_HTTP_CONNECT_TIMEOUT``, ``VOE_HTTP_TIMEOUT``) here; one the
backend gave is kept. It runs first (order 50), before ``voe.worker.fetch.deadline`` (100),
which cuts every timeout to the fetch's deadline; without this middleware a request
without a timeout has the whole deadline for its connection and for each read.
"""

from __future__ import annotations

from typing import Any

from voe.worker.fetch.chain import FetchRequest


class Timeouts:
    """Give a request without a timeout the (connect, read) timeout of the settings."""

    def __init__(self, connect: float, read: float) -> None:
        self.timeout = (connect, read)

    @classmethod
    def from_session(cls, session: Any) -> Timeouts:
        """The timeouts of ``VOE_HTTP_CONNECT_TIMEOUT`` and ``VOE_HTTP_TIMEOUT``."""
        return cls(session.settings.voe_http_connect_timeout, session.settings.voe_http_timeout)

    def process_request(self, request: FetchRequest) -> None:
        """Set the default (connect, read) timeout when the backend gave none."""
        if request.options.get("timeout") is None:
            request.options["timeout"] = self.timeout
