"""Throttle counting: answers that say we ask too much, counted per backend for the master.

The worker reads and resets the session's ``ThrottleCounter`` every half second and
tells the master, which slows the leasing of that backend's jobs for the whole fleet
(``voe.master.pacing``). At order 900, nearer the network than retries (``voe.worker.fetch.retry``,
550), this middleware sees every answer of a fetch, the retried ones too, and counts
each throttling one once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from gevent.local import local

from voe.worker.fetch.chain import FetchRequest


def is_throttling(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer says we ask too much: 429, 403 (blocked), or 503 with Retry-After."""
    return status in (429, 403) or (status == 503 and "Retry-After" in headers)


class ThrottleCounter:
    """Throttling answers seen, by label, since the last ``take``.

    The label is the one set by ``counting_for`` in the running greenlet (the
    worker sets the job's backend name), else the host. ``total`` never resets.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._label = local()
        self.total = 0

    @contextmanager
    def counting_for(self, label: str) -> Iterator[None]:
        """Count what this greenlet's requests meet under ``label`` (e.g. a backend's name)."""
        previous = self.swap_label(label)
        try:
            yield
        finally:
            self._label.value = previous

    def swap_label(self, label: str | None) -> str | None:
        """Count this greenlet's requests under ``label`` from now on; return the label before
        (``counting_for`` as two calls, for a caller that keeps its own context)."""
        previous = getattr(self._label, "value", None)
        self._label.value = label
        return previous

    def add(self, host: str, count: int = 1) -> None:
        """Count ``count`` throttling answers from ``host``."""
        label = getattr(self._label, "value", None) or host
        self._counts[label] += count
        self.total += count

    def take(self) -> dict[str, int]:
        """Return the counts by label since the last call, and start again from zero."""
        counts, self._counts = dict(self._counts), Counter()
        return counts


class Throttle:
    """Count every answer that says we ask too much (``is_throttling``), every try's."""

    def __init__(self, counter: ThrottleCounter) -> None:
        self.counter = counter

    @classmethod
    def from_session(cls, session: Any) -> Throttle:
        """Count into the session's ``throttled`` counter (the one the worker reports)."""
        return cls(session.throttled)

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        """Count ``response`` if it throttles us; never changes it."""
        if is_throttling(response.status_code, response.headers):
            self.counter.add(request.host)
        return response
