"""The demo-js backend: the demo airline's JavaScript page (``/js/search``), rendered by Chromium.

The page's markup holds no fares: a script decodes them and builds the same
``table#results`` as the HTML page, so it is read by headless Chromium (see
``voe.backends.browser``) and then parsed by the demo backend's parser. Needs
``pip install 'voe[browser]'`` and Chromium (``VOE_BROWSER``); each worker starts
one browser with ``VOE_BROWSER_PAGES`` pages on its first demo-js job.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import requests

from voe.backends.base import BlockedError, ParseError, PermanentError, TransientError
from voe.backends.browser import Browser
from voe.backends.demo import DemoBackend, parse_results
from voe.fetch.chain import host_key
from voe.fetch.markers import find_marker
from voe.fetch.throttle import is_throttling
from voe.model import Answer, SearchJob
from voe.settings import Settings

_ERROR_TEXT_LIMIT = 200
READY_SELECTOR = "table#results"


def _error_text(text: str) -> str:
    """The airline's error: the JSON ``error`` of the answer, or the start of its text."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"]
    return text[:_ERROR_TEXT_LIMIT].strip() or "no details"


class DemoJsBackend:
    """Search the demo airline's JavaScript page through headless Chromium.

    The demo airline sells one-way fares only, so a job's ``return_date`` is ignored.
    """

    name = "demo-js"
    # The demo airline's block words, case-folded (the page is checked here, not by the chain).
    block_markers = tuple(marker.casefold() for marker in DemoBackend.block_markers)

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/js/search"
        self.timeout = settings.voe_http_timeout
        self.browser = Browser(settings.voe_browser, settings.voe_browser_pages,
                               settings.voe_http_proxy or None)

    def search(self, job: SearchJob, http: requests.Session) -> Answer:
        """Render and parse the fares of ``job``; raise a ``BackendError`` on failure.

        ``http`` is not used to fetch (the browser does), only to count throttling. The
        rendered page says which search it answers (route heading, date), as the HTML
        page does.
        """
        query = urlencode({"origin": job.origin, "destination": job.destination,
                           "date": job.date})
        url = f"{self.url}?{query}"
        page = self.browser.render(url, READY_SELECTOR, self.timeout)
        throttled = getattr(http, "throttled", None)
        if throttled is not None and is_throttling(page.status, {}):
            throttled.add(host_key(url))
        if page.status >= 400 or page.status == 0:
            message = f"demo airline: {_error_text(page.text)} (HTTP {page.status})"
            if page.status in (403, 429):
                raise BlockedError(message, page=page.html.encode())
            if page.status >= 500 or page.status == 0:
                raise TransientError(message)
            raise PermanentError(message)
        marker = find_marker(page.html, self.block_markers)
        if marker is not None:  # the browser does not pass the fetch chain: check here
            raise BlockedError(f"blocked by the airline: the page says {marker!r}",
                               page=page.html.encode())
        if not page.ready:
            raise ParseError(f"the page did not render its fares within {self.timeout:g}s",
                             page=page.html.encode())
        return parse_results(page.html.encode())

    def close(self) -> None:
        """Stop this backend's browser (the worker calls this when it stops)."""
        self.browser.stop()
