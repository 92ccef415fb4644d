"""A browser's render under the fetch chain: the same policy as every airline request.

The page's URL goes through the worker session's fetch chain (``voe.worker.fetch``) like an
HTTP backend's request, with the render as the chain's innermost step instead of the
network. So the render gets the chain's deadline (``VOE_FETCH_DEADLINE``, the
render's time), the job's identity (its proxy, User-Agent and cookies become those of
the identity's browser context, ``voe.worker.browser.profiles``; the context's cookies go
back to the identity), a per-host slot
and any Retry-After pause, retries of a 429 or 5xx answer, block detection (a
blocking status, the backend's ``block_markers`` in the rendered page: a
``BlockedError`` that retires the identity) and throttle counting for the master.
The chain sees the rendered document as the answer's body.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from voe.worker.browser.client import Browser, Rendered, RenderTask
from voe.worker.browser.cookies import from_browser, to_browser
from voe.worker.fetch.chain import FetchRequest
from voe.worker.fetch.deadline import BodyTooLarge


class RenderedResponse(requests.Response):
    """A render as the chain sees it: ``content`` is the rendered document; ``rendered``
    the whole render (its text, whether the page became ready)."""

    rendered: Rendered


def _proxy(fetch: FetchRequest) -> str:
    """The proxy the chain chose for this request (an identity's, or ``VOE_HTTP_PROXY``)."""
    proxies = fetch.options.get("proxies") or {}
    scheme = (fetch.request.url or "").split(":", 1)[0]
    return proxies.get(scheme) or proxies.get("all") or ""


def _identity(fetch: FetchRequest, session: Any) -> tuple[str, bool]:
    """The render's profile (its identity's number; empty without identities, when the
    session's jar is every job's) and whether the identity serves no job after this one."""
    identity = fetch.meta.get("identity")
    if identity is None:
        return "", False
    pool = getattr(session, "identities", None)
    return str(identity.number), pool is not None and pool.used_up(identity)


class RenderDownload:
    """The chain's innermost step for one page: render it, answer like a download."""

    def __init__(self, browser: Browser, session: Any, ready: str, consent: str,
                 seconds: float) -> None:
        self.browser = browser
        self.session = session
        self.ready = ready
        self.consent = consent
        self.seconds = seconds

    def __call__(self, fetch: FetchRequest) -> requests.Response:
        """Render ``fetch``'s URL as its identity, within its deadline and body cap."""
        jar = fetch.cookies if fetch.cookies is not None else self.session.cookies
        url = fetch.request.url or ""
        profile, last = _identity(fetch, self.session)
        task = RenderTask(url, self.ready, self.consent,
                          fetch.request.headers.get("User-Agent", ""), _proxy(fetch),
                          to_browser(jar), profile, last)
        deadline = fetch.deadline or time.monotonic() + self.seconds
        rendered = self.browser.render(task, deadline)
        from_browser(jar, rendered.cookies)
        body = rendered.html.encode()
        if fetch.max_bytes is not None and len(body) > fetch.max_bytes:
            raise BodyTooLarge(f"{fetch.host}: a rendered page of {len(body)} bytes, over the "
                               f"{fetch.max_bytes}-byte cap (VOE_FETCH_MAX_BYTES)")
        response = RenderedResponse()
        response.status_code = rendered.status
        response.headers = CaseInsensitiveDict(rendered.headers)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response._content = body
        response._content_consumed = True
        response.encoding = "utf-8"
        response.url = url
        response.request = fetch.request
        response.reason = ""
        response.rendered = rendered
        return response


def render_page(session: Any, browser: Browser, url: str, ready: str = "",
                consent: str = "") -> RenderedResponse:
    """Render ``url`` through ``session``'s fetch chain (a ``voe.worker.http.Session``); raises what
    the chain raises (``BlockedError``, ``DeadlinePassed``...) or ``BrowserError``."""
    request = session.prepare_request(requests.Request("GET", url))
    download = RenderDownload(browser, session, ready, consent,
                              session.settings.voe_fetch_deadline)
    response = session.fetch_through(request, download, proxies={}, timeout=None,
                                     verify=True, cert=None)
    if not isinstance(response, RenderedResponse):
        raise TypeError(f"a fetch middleware answered a render with {type(response).__name__}")
    return response
