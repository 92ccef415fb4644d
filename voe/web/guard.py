"""The HTTP port's gate: ASGI middleware that every request passes before any route.

It refuses what no endpoint takes (long URLs, request bodies, chunked uploads), applies
``voe.web.auth`` to every path but the dashboard's public files (origin, Host, bearer
token, throttled guessing), and adds the security headers to every answer. Refusals
are JSON, ``{"error": "..."}``, like the API's own.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from voe.web import auth

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Headers of every answer: no sniffing, no framing (the Retry buttons), scripts only ours.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
_SECURITY = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
# Longest path and query a request may have.
MAX_URL = 4096
# Largest request body announced (the API takes none; a small one is ignored).
MAX_BODY = 64 * 1024
JSON = "application/json"


def render(payload: Any) -> bytes:
    """A JSON body as the API writes it (indented like ``voe status --json``)."""
    return json.dumps(payload, indent=2).encode() + b"\n"


async def refuse(send: Send, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
    """Answer ``{"error": message}`` with ``status`` (and the security headers)."""
    body = render({"error": message})
    raw = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode()),
           *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wraps an ASGI app: limits, auth and security headers (see the module).

    ``token`` is ``VOE_HTTP_TOKEN`` (empty: loopback only); ``public`` the paths
    anyone may GET (the dashboard's files).
    """

    def __init__(self, app: App, token: str, public: frozenset[str] = frozenset(),
                 throttle: auth.Throttle | None = None) -> None:
        self.app = app
        self.token = token
        self.public = public
        self.throttle = throttle or auth.Throttle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or refuse it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY]
            await send(message)

        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"]}
        refusal = self._limits(scope, headers)
        if refusal is None and not (scope["path"] in self.public
                                    and scope["method"] in ("GET", "HEAD")):
            refusal = await self._auth(scope, headers)
        if refusal is not None:
            await refuse(secured, *refusal)
            return
        await self.app(scope, receive, secured)

    @staticmethod
    def _limits(scope: Scope, headers: dict[str, str]
                ) -> tuple[int, str, dict[str, str]] | None:
        close = {"Connection": "close"}  # the unread body must not be taken for a request
        if len(scope["raw_path"]) + len(scope["query_string"]) > MAX_URL:
            return 414, f"the URL is longer than {MAX_URL} characters", close
        if "transfer-encoding" in headers:
            return 411, "send a Content-Length, not a chunked body", close
        length = headers.get("content-length", "0").strip()
        if not (length.isascii() and length.isdigit()):  # h11 refuses these first
            return 400, "malformed Content-Length", close
        if len(length) > len(str(MAX_BODY)) or int(length) > MAX_BODY:
            return 413, f"a request body may hold at most {MAX_BODY} bytes", close
        return None

    async def _auth(self, scope: Scope, headers: dict[str, str]
                    ) -> tuple[int, str, dict[str, str]] | None:
        authorization = headers.get("authorization")
        sender = (scope.get("client") or ("unknown",))[0]
        guessing = bool(self.token) and authorization is not None
        waited = 0.0
        # Until this address owes nothing (a guess that woke with others and failed first
        # puts it in debt again), or it would be held past the longest wait.
        while guessing and (wait := self.throttle.wait(sender)) > 0:
            if waited + wait > self.throttle.max_wait:
                return 429, "too many wrong tokens from this address: wait and try again", {
                    "Retry-After": str(math.ceil(wait))}
            await asyncio.sleep(wait)  # holds this request only, never the loop
            waited += wait
        refusal = auth.authorized(self.token, authorization, headers.get("host"),
                                  headers.get("origin"))
        if refusal is None:
            return None
        status, why = refusal
        if status != 401:
            return status, why, {}
        if guessing:
            self.throttle.wrong(sender)
        return status, why, {"WWW-Authenticate": 'Bearer realm="voe"'}
