"""The backend contract: given a search job and an HTTP session, return fares or raise.

A backend knows nothing of ZeroMQ, the ledger or the store. It raises
``TransientError`` for failures worth retrying (timeouts, 5xx, 429),
``PermanentError`` for ones that are not (a route the airline does not fly), and
``ParseError`` (transient: a truncated page may parse next time) when a page does
not yield fares; ``ParseError.page`` keeps the raw page for the backend's author.
"""

from __future__ import annotations

from typing import Protocol

import requests

from voe.model import Fare, SearchJob


class BackendError(Exception):
    """Base of every error a backend may raise on purpose."""

    kind = "error"


class TransientError(BackendError):
    """A failure that may pass: the job is retried until its attempts run out."""

    kind = "transient"


class PermanentError(BackendError):
    """A failure that will not pass (e.g. an unknown route): the job fails at once."""

    kind = "permanent"


class ParseError(TransientError):
    """The page came back but did not yield fares; ``page`` holds the raw bytes."""

    kind = "parse"

    def __init__(self, message: str, page: bytes | None = None) -> None:
        super().__init__(message)
        self.page = page


class Backend(Protocol):
    """What a backend is: a name and a ``search`` that returns the fares of one job."""

    name: str

    def search(self, job: SearchJob, http: requests.Session) -> list[Fare]:
        """Fetch and parse the fares of ``job``; raise a ``BackendError`` on failure."""
        ...
