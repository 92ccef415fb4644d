"""Retries inside a fetch: a transient failure tried again after a backoff or a Retry-After.

A connection refused or reset, a timeout, a body cut short, or an answer 429, 500,
502, 503 or 504 may pass on its own: the fetch sends the request again, up to
``VOE_HTTP_RETRIES`` times, waiting ``VOE_HTTP_BACKOFF`` seconds before the first
retry and twice as long before each next one, plus random jitter of up to
``VOE_HTTP_BACKOFF`` (so workers that failed together do not retry together), never
more than ``MAX_BACKOFF``. A 429 or 503 with a ``Retry-After`` is waited out instead
(at most ``MAX_RETRY_AFTER``; a malformed or zero one counts as absent).
When the retries are spent the fetch ends with the last answer (block detection then
calls a 429 still there a block) or the last error.

A retry never waits past the fetch's deadline (``voe.worker.fetch.deadline``): one that
could not start before it gives up at once, with the last answer or error, rather
than end as "deadline passed". A request that may have reached the airline is sent
again only if its method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE), as
urllib3 did: a POST is retried only when its connection could not even be made. A
retried answer's body was already read by the session: it is dropped.

The middleware sends again through the chain's re-send (``voe.worker.fetch.chain``): it
returns the request from ``process_response`` or ``process_exception``. At order
550 it sits nearer the network than block detection (300) and identities (200), so a
block (a 403, a page with its markers) is never retried here, nor a fetch refused
because every proxy cools down: the master tries the job again, maybe as another
identity. And it sits nearer the backend than per-host
limits (800) and throttle counting (900), so every try waits for its host's slot and
pause, holds no slot while it waits to retry, and every throttling answer is counted.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.exceptions import ChunkedEncodingError
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, ProxyError
from urllib3.util import retry as urllib3_retry

from voe.worker.fetch.chain import FetchRequest

log = logging.getLogger("voe.fetch")

# Longest Retry-After honoured, in seconds: a longer one is waited only this long.
MAX_RETRY_AFTER = 10.0
# Longest wait between two retries, in seconds.
MAX_BACKOFF = 30.0
# Airline answers worth another try: rate limited, or a server error that may pass.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers whose Retry-After is honoured (urllib3's choice: too many, unavailable, too large).
RETRY_AFTER_STATUSES = frozenset(urllib3_retry.Retry.RETRY_AFTER_STATUS_CODES)
# Methods sent again although the airline may have received them already.
IDEMPOTENT_METHODS = frozenset(urllib3_retry.Retry.DEFAULT_ALLOWED_METHODS)
# ``FetchRequest.meta`` key: the retries of the fetch so far.
RETRIES = "retries"

_RETRY_AFTER_PARSER = urllib3_retry.Retry(0)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """An answer's Retry-After in seconds, at most ``MAX_RETRY_AFTER``; None if absent or odd."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = _RETRY_AFTER_PARSER.parse_retry_after(value)
    except InvalidHeader:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def is_transient(error: Exception) -> bool:
    """Whether a failed try may pass on another: a connection refused or reset, a timeout, a
    body cut short. A certificate error or a fetch abandoned on purpose (deadline, cap) won't."""
    if isinstance(error, requests.exceptions.SSLError):
        return False
    return isinstance(error, requests.ConnectionError | requests.Timeout | ChunkedEncodingError)


def never_sent(error: Exception) -> bool:
    """Whether the request surely did not reach the airline: its connection was never made."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, ProxyError):
        reason = reason.original_error
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too


class Retries:
    """Send a fetch again after a transient failure, as the module docstring says."""

    def __init__(self, retries: int, backoff: float) -> None:
        self.retries = retries
        self.backoff = backoff

    @classmethod
    def from_session(cls, session: Any) -> Retries:
        """Retries of ``VOE_HTTP_RETRIES``, backoff of ``VOE_HTTP_BACKOFF``."""
        return cls(session.settings.voe_http_retries, session.settings.voe_http_backoff)

    def backoff_for(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first): the backoff doubled at
        each retry, plus jitter of up to the backoff, at most ``MAX_BACKOFF``."""
        if self.backoff <= 0:
            return 0.0
        return min(MAX_BACKOFF, self.backoff * 2 ** (retry - 1) + random.random() * self.backoff)

    def process_request(self, request: FetchRequest) -> None:
        """Count this fetch's retries from zero (re-sends do not pass here again)."""
        request.meta[RETRIES] = 0

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response | FetchRequest:
        """Send the request again after a 429 or a 5xx that may pass, while retries and time
        are left; else pass the answer on."""
        status = response.status_code
        if status not in RETRY_STATUSES or not self._idempotent(request):
            return response
        wait = retry_after(response.headers) if status in RETRY_AFTER_STATUSES else None
        why = f"HTTP {status}"
        return self._again(request, wait, why) or response

    def process_exception(self, request: FetchRequest, error: Exception) -> FetchRequest | None:
        """Send the request again after a transient error, while retries and time are left."""
        if not is_transient(error) or not (never_sent(error) or self._idempotent(request)):
            return None
        return self._again(request, None, type(error).__name__)

    @staticmethod
    def _idempotent(request: FetchRequest) -> bool:
        return (request.request.method or "GET").upper() in IDEMPOTENT_METHODS

    def _again(self, request: FetchRequest, wait: float | None, why: str) -> FetchRequest | None:
        """Wait, then return ``request`` to send it again; None when no retry is left or the
        wait would not end before the deadline."""
        done = request.meta.get(RETRIES)
        if done is None or done >= self.retries:  # None: not a request this middleware sent
            return None
        wait = wait or self.backoff_for(done + 1)
        if request.deadline is not None and time.monotonic() + wait >= request.deadline:
            log.debug("%s: %s, no retry: the fetch's deadline comes within %.2fs",
                      request.host, why, wait)
            return None
        request.meta[RETRIES] = done + 1
        log.debug("%s: %s, retry %d of %d in %.2fs", request.host, why, done + 1, self.retries,
                  wait)
        if wait > 0:
            time.sleep(wait)
        return request
