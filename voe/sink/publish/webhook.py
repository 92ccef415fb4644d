"""HTTP webhooks: each event POSTed as JSON, signed, retried, and dead-lettered after a while.

The body is the event's JSON; ``X-Voe-Signature: t=UNIX_SECONDS,v1=HEX`` signs it with
``VOE_WEBHOOK_SECRET`` (HEX is the HMAC-SHA256 of ``t.body``, Stripe's scheme), so a
receiver that refuses a ``t`` more than ``SIGNATURE_TOLERANCE`` seconds from its clock
cannot be fed a replayed event; ``X-Voe-Event`` is the kind and ``X-Voe-Event-Id`` the
id. The signature is made at each attempt, never stored, so a re-sent dead letter
carries a fresh one. A 2xx answer delivers the event. Any other answer (a redirect too:
it is never followed, since that would hand the signed event to another host), or no
answer in time, is a failed attempt: it is tried again after a backoff, and after
``VOE_WEBHOOK_MAX_ATTEMPTS`` it becomes a dead letter (``voe outbox`` lists them,
``voe outbox retry`` sends them again). A receiver that cannot be reached at all is an
outage, not an attempt: events wait.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import requests

from voe import __version__
from voe.sink.publish.outbox import Outcome, Unavailable
from voe.store.rows import Event

log = logging.getLogger("voe.publish")

# Seconds to connect to the receiver (VOE_WEBHOOK_TIMEOUT is the wait for its answer).
CONNECT_TIMEOUT = 3.0
# Seconds between a signature's timestamp and a receiver's clock beyond which the
# receiver should refuse it (README, "Verifying a webhook"; voe only signs, receivers check).
SIGNATURE_TOLERANCE = 300
# Characters of a redirect's Location kept in the error (it is the receiver's text).
LOCATION_CHARS = 200


def destination_name(url: str) -> str:
    """The destination of a webhook URL, without credentials or query (they may be secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    name = f"webhook:{parts.scheme}://{host}{port}{parts.path}"
    if parts.username or parts.password or parts.query or parts.fragment:
        name += "#" + hashlib.sha256(url.encode()).hexdigest()[:8]
    return name


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """``X-Voe-Signature``: ``t=TIMESTAMP,v1=`` the HMAC of ``TIMESTAMP.body``, time signed too."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def _printable(text: str) -> str:
    """``text`` clipped, its control characters escaped: it reaches logs and terminals."""
    clipped = text[:LOCATION_CHARS] + ("..." if len(text) > LOCATION_CHARS else "")
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode()
                   for char in clipped)


class WebhookPublisher:
    """POSTs events to one URL."""

    def __init__(self, url: str, secret: str, max_attempts: int, backoff: float,
                 timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.clock = clock  # Unix time of each signature (tests pass their own)
        self.name = destination_name(url)
        self._session = requests.Session()

    def _post(self, event: Event) -> str | None:
        """POST one event: None when delivered, else why the attempt failed.

        Raises ``Unavailable`` when the receiver cannot be reached.
        """
        headers = {"Content-Type": "application/json", "X-Voe-Event": event.kind,
                   "X-Voe-Event-Id": event.id, "User-Agent": f"voe/{__version__}",
                   "X-Voe-Signature": signature(self.secret, event.body, int(self.clock()))}
        try:
            with self._session.post(self.url, data=event.body, headers=headers,
                                    timeout=(CONNECT_TIMEOUT, self.timeout),
                                    allow_redirects=False) as answer:
                if 200 <= answer.status_code < 300:
                    return None
                if 300 <= answer.status_code < 400:
                    location = answer.headers.get("Location")
                    where = f" to {_printable(location)}" if location else " without a Location"
                    return self._without_secrets(
                        f"HTTP {answer.status_code} redirect{where} (not followed)")
                return f"HTTP {answer.status_code}"
        except requests.ReadTimeout:
            return f"no answer within {self.timeout} s"
        except requests.RequestException as error:
            raise Unavailable(self._without_secrets(f"{type(error).__name__}: {error}")
                              ) from error

    def _without_secrets(self, text: str) -> str:
        """``text`` without the URL's query or password, which may hold a token."""
        parts = urlsplit(self.url)
        for secret in (parts.query, parts.password):
            if secret:
                text = text.replace(secret, "********")
        return text

    def publish(self, events: Sequence[Event], stop: threading.Event) -> Outcome:
        """POST each event in order, retrying failed attempts with backoff."""
        settled = 0
        dead: list[tuple[int, int, str]] = []
        for event in events:
            attempts = 0
            while True:
                if stop.is_set():
                    return Outcome(settled, dead)
                try:
                    failure = self._post(event)
                except Unavailable as error:
                    error.outcome = Outcome(settled, dead)
                    raise
                if failure is None:
                    break
                attempts += 1
                if attempts >= self.max_attempts:
                    log.warning("%s: event %s (%s) is a dead letter after %d attempts: %s",
                                self.name, event.id, event.kind, attempts, failure)
                    dead.append((event.seq, attempts, failure))
                    break
                log.debug("%s: event %s attempt %d failed: %s", self.name, event.id, attempts,
                          failure)
                stop.wait(self.backoff * 2 ** (attempts - 1))
            settled += 1
        return Outcome(settled, dead)

    def idle(self) -> None:
        """Nothing to keep alive between events."""

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()
