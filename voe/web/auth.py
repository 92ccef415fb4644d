"""Who may use the master's HTTP port: a bearer token, and loopback-only without one.

Without ``VOE_HTTP_TOKEN`` the port must listen on loopback, and it answers only
requests whose ``Host`` names loopback (so a web page cannot reach it by DNS
rebinding). With a token every API request must carry ``Authorization: Bearer
TOKEN``; beyond loopback the token must be at least ``MIN_TOKEN_LENGTH`` characters,
and wrong ones cost their sender time (``Throttle``). Any request that a browser
marks as coming from another origin is refused, so no other web site can drive the
control API from a user's browser. These are decisions only; ``voe.web.guard``
applies them to requests.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from urllib.parse import urlsplit

# Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
# Fewest characters of a token guarding a port bound beyond loopback.
MIN_TOKEN_LENGTH = 16
# Seconds every wrong token adds to its sender's wait before its next token is checked.
WRONG_TOKEN_PENALTY = 0.5
# Longest wait a request is held for; a sender owing more is answered 429 at once.
MAX_THROTTLE_WAIT = 5.0
# Senders of wrong tokens remembered at most (the oldest are forgotten first).
MAX_THROTTLED = 4096


class WebError(Exception):
    """The HTTP port cannot be served as configured; the message is meant for the user."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 possibly in brackets) is loopback."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str, what: str = "the master's HTTP port (dashboard and "
                  "control API)", setting: str = "VOE_HTTP_PORT") -> None:
    """Refuse to serve ``what`` on a non-loopback address without a token, or with one
    shorter than ``MIN_TOKEN_LENGTH`` that could be guessed (``WebError``)."""
    if is_loopback(host):
        return
    if not token:
        raise WebError(f"VOE_HTTP_HOST={host} is not a loopback address, so {what} needs a "
                       f"token: set VOE_HTTP_TOKEN, or {setting}=0 to turn the port off")
    if len(token) < MIN_TOKEN_LENGTH:
        raise WebError(f"VOE_HTTP_TOKEN has {len(token)} characters: {what} on the "
                       f"non-loopback VOE_HTTP_HOST={host} needs at least {MIN_TOKEN_LENGTH} "
                       "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe())'), "
                       f"or {setting}=0 to turn the port off")


def bearer_ok(token: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (always true without a token).

    A header arrives as latin-1 text (one character per byte on the wire, as HTTP
    servers decode it), so its bytes are compared with the token's UTF-8 bytes: a
    non-ASCII token matches when the client sends it in UTF-8.
    """
    if not token:
        return True
    if authorization is None:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_wire_bytes(given.strip()), token.encode())


def _wire_bytes(text: str) -> bytes:
    """The bytes a header's text was decoded from (latin-1); UTF-8 for text that cannot
    have come from the wire (a character beyond latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def host_ok(token: str, host_header: str | None) -> bool:
    """Whether the ``Host`` header is acceptable: anything with a token, loopback without."""
    if token:
        return True
    if not host_header:
        return False
    return is_loopback(urlsplit(f"//{host_header}").hostname or "")


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """Whether a browser's ``Origin`` (absent for curl and scripts) is this server itself."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return bool(host_header) and parts.scheme in ("http", "https") and \
        parts.netloc.lower() == (host_header or "").lower()


def authorized(token: str, authorization: str | None, host_header: str | None,
               origin: str | None) -> tuple[int, str] | None:
    """The refusal (status, reason) of a request to a protected endpoint, or None to serve it."""
    if not same_origin(origin, host_header):
        return 403, f"requests from another origin ({origin}) are refused"
    if not host_ok(token, host_header):
        return 403, f"Host {host_header!r} is not a loopback name (set VOE_HTTP_TOKEN to " \
                    "serve other names)"
    if not bearer_ok(token, authorization):
        return 401, "missing or wrong bearer token (Authorization: Bearer VOE_HTTP_TOKEN)"
    return None


class Throttle:
    """Slows down guessing: each wrong token makes its sender wait longer.

    Every wrong token adds ``penalty`` seconds to its sender's debt; a sender's next
    request waits until the debt is paid before its token is checked, and one owing
    more than ``max_wait`` is refused at once. So an address tries at most one token
    per ``penalty`` seconds, however many connections it opens. Used from one thread
    (the HTTP port's event loop); remembers at most ``max_senders`` addresses.
    """

    def __init__(self, penalty: float = WRONG_TOKEN_PENALTY, max_wait: float = MAX_THROTTLE_WAIT,
                 max_senders: int = MAX_THROTTLED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.penalty = penalty
        self.max_wait = max_wait
        self.max_senders = max_senders
        self.clock = clock
        self._free_at: dict[str, float] = {}

    def wait(self, sender: str) -> float:
        """Seconds ``sender`` must wait before its token is checked (0: none)."""
        free_at = self._free_at.get(sender)
        return 0.0 if free_at is None else max(0.0, free_at - self.clock())

    def wrong(self, sender: str) -> None:
        """Record a wrong token from ``sender``."""
        now = self.clock()
        free_at = max(now, self._free_at.pop(sender, now)) + self.penalty
        if len(self._free_at) >= self.max_senders:
            self._free_at = {who: when for who, when in self._free_at.items() if when > now}
            while len(self._free_at) >= self.max_senders:  # all still owe: forget the oldest
                del self._free_at[next(iter(self._free_at))]
        self._free_at[sender] = free_at
