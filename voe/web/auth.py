"""Who may use the master's HTTP port: a bearer token, and loopback-only without one.

Without ``VOE_HTTP_TOKEN`` the port must listen on loopback, and it answers only
requests whose ``Host`` names loopback (so a web page cannot reach it by DNS
rebinding). With a token every API request must carry ``Authorization: Bearer
TOKEN``. Any request that a browser marks as coming from another origin is refused,
so no other web site can drive the control API from a user's browser.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

# Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


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
    """Refuse to serve ``what`` on a non-loopback address without a token (``WebError``)."""
    if not token and not is_loopback(host):
        raise WebError(f"VOE_HTTP_HOST={host} is not a loopback address, so {what} needs a "
                       f"token: set VOE_HTTP_TOKEN, or {setting}=0 to turn the port off")


def bearer_ok(token: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (always true without a token)."""
    if not token:
        return True
    if authorization is None:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


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
