"""Block detection: an airline that refuses to answer is a ``blocked`` outcome, never "no flights".

Airlines block scrapers two ways. Some say it with a status: 403, or 429 still there
after the fetch's retries (``VOE_FETCH_BLOCK_STATUSES``). Others answer 200 with
a captcha, or with their normal results page showing no flights and a banner; read
by a parser, that page is a plausible empty result, the worst kind of wrong. So
each backend declares the words of its airline's block pages in a class attribute,
``block_markers`` (e.g. ``("captcha", "acesso negado")``), and every page a backend
fetches is searched for them, case-insensitively, before the backend sees it.

Either way the fetch raises ``BlockedError`` (transient: the job is tried again,
and the page is kept for the user), and a page-borne block counts as throttling
(a blocking status is counted by ``voe.worker.fetch.throttle`` already).
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests

from voe.backends.base import BlockedError
from voe.worker.fetch.chain import FetchRequest
from voe.worker.fetch.markers import Markers
from voe.worker.fetch.throttle import ThrottleCounter

# Characters of the airline's answer quoted in the error.
_QUOTED = 200
# Characters of a block page read for the quote.
_SCANNED = 20_000
_INVISIBLE = re.compile(r"<(head|script|style)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def parse_statuses(text: str) -> frozenset[int]:
    """Parse ``403,429`` into status codes; ``ValueError`` if one is not an HTTP status."""
    statuses = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        status = int(part)
        if not 100 <= status <= 599:
            raise ValueError(f"{status} is not an HTTP status")
        statuses.add(status)
    return frozenset(statuses)


def _page_text(response: requests.Response) -> str:
    """The body as text: its declared charset if any, else UTF-8 (bad bytes replaced)."""
    encoding = "utf-8"
    if "charset=" in response.headers.get("Content-Type", "").lower() and response.encoding:
        encoding = response.encoding
    try:
        return response.content.decode(encoding, errors="replace")
    except LookupError:  # an unknown charset name: read it as UTF-8
        return response.content.decode("utf-8", errors="replace")


def _airline_says(response: requests.Response) -> str:
    """What the answer says: its JSON ``error``, or the start of the text a reader sees."""
    try:
        payload = json.loads(response.content)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"][:_QUOTED]
    text = _page_text(response)
    if "<" in text[:_SCANNED]:  # a page: what a reader sees of its start
        text = _TAG.sub(" ", _INVISIBLE.sub(" ", text[:_SCANNED]))
    return " ".join(text[:_QUOTED * 4].split())[:_QUOTED] or response.reason or "no details"


class BlockDetection:
    """Raise ``BlockedError`` for a blocking status or a page holding its backend's markers."""

    def __init__(self, statuses: frozenset[int], counter: ThrottleCounter) -> None:
        self.statuses = statuses
        self.counter = counter
        self._markers: dict[tuple[str, ...], Markers] = {}

    @classmethod
    def from_session(cls, session: Any) -> BlockDetection:
        """Statuses of ``VOE_FETCH_BLOCK_STATUSES``; page blocks count in ``session.throttled``."""
        return cls(parse_statuses(session.settings.voe_fetch_block_statuses), session.throttled)

    def markers(self, backend: object) -> Markers | None:
        """The ``block_markers`` of ``backend``, ready to search (None when it declares none)."""
        declared = getattr(backend, "block_markers", None)
        if not declared:
            return None
        declared = tuple(declared)
        markers = self._markers.get(declared)
        if markers is None:
            markers = self._markers[declared] = Markers(declared)
        return markers

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        """Let a normal answer through; raise ``BlockedError`` (with the page) for a block."""
        status = response.status_code
        if status in self.statuses:
            raise BlockedError(f"blocked by the airline (HTTP {status}): "
                               f"{_airline_says(response)}", page=response.content)
        markers = self.markers(request.backend)
        if markers is not None:
            found = markers.find(response.content, response.headers.get("Content-Type", ""))
            if found is not None:
                self.counter.add(request.host)
                raise BlockedError(f"blocked by the airline: the page says {found!r} "
                                   f"(HTTP {status}, {request.request.url})",
                                   page=response.content)
        return response
