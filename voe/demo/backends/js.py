"""The demo-js backend: the demo airline's JavaScript page (``/js/search``), rendered by Chromium.

The page's markup holds no fares: once loaded, its script asks the airline's JSON
endpoint for them and builds the same ``table#results`` as the HTML page, so it is
rendered by headless Chromium through Playwright (``voe.worker.browser``) and then parsed
by the demo backend's parser. The render passes the worker's fetch chain like any
request (deadline, identity, per-host limit, retries, block detection, throttle
counting: ``voe.worker.browser.chained``). A consent wall is passed by clicking its
button. Needs ``pip install 'voe[browser]'`` and Chromium (``VOE_BROWSER``); each
worker starts one browser with ``VOE_BROWSER_PAGES`` pages on its first demo-js job.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import requests

from voe.backends.base import ParseError, PermanentError, TransientError
from voe.demo.backends.page import DemoBackend
from voe.demo.backends.parse import parse_results
from voe.model import Answer, SearchJob
from voe.settings import Settings
from voe.worker.browser import (
    client as browser_client,  # a module: voe.worker.browser imports us too
)

_ERROR_TEXT_LIMIT = 200
READY_SELECTOR = "table#results"
# The button of the airline's cookie-consent wall.
CONSENT_SELECTOR = "#consent-accept"


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
    """Search the demo airline's JavaScript page through headless Chromium (one-way only,
    like ``DemoBackend``)."""

    name = "demo-js"
    # The demo airline's block words: the fetch chain looks for them in the rendered page.
    block_markers = DemoBackend.block_markers

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"{settings.voe_demo_airline_url}/js/search"
        block = tuple(part for part in settings.voe_browser_block.split(",") if part)
        self.browser = browser_client.Browser(settings.voe_browser, settings.voe_browser_pages,
                                              block, settings.voe_browser_viewport)
        self._session: requests.Session | None = None

    def _http(self, http: requests.Session | None) -> requests.Session:
        """The worker's session (its fetch chain); outside a worker, one of this backend's."""
        if http is not None and hasattr(http, "fetch_through"):
            return http
        if self._session is None:
            # Imported here: voe.worker.http imports the fetch chain, which imports voe.backends.
            from voe.worker.http import new_session

            self._session = new_session(self.settings, self.settings.voe_browser_pages)
        return self._session

    def search(self, job: SearchJob, http: requests.Session | None) -> Answer:
        """Render and parse the fares of ``job``; raise a ``BackendError`` on failure.

        The rendered page says which search it answers (route heading, date), as the
        HTML page does. Blocks and throttling were judged by the fetch chain already.
        """
        from voe.worker.browser.chained import render_page  # see _http: it imports the chain

        query = urlencode({"origin": job.origin, "destination": job.destination,
                           "date": job.date})
        session = self._http(http)
        url = f"{self.url}?{query}"
        if session is http:  # the worker runs this job's fetches already (fetching_for)
            response = render_page(session, self.browser, url, READY_SELECTOR, CONSENT_SELECTOR)
        else:
            with session.fetching_for(self.name, self, job.id):
                response = render_page(session, self.browser, url, READY_SELECTOR,
                                       CONSENT_SELECTOR)
        page = response.rendered
        if page.status >= 400 or page.status == 0:
            message = f"demo airline: {_error_text(page.text)} (HTTP {page.status})"
            if page.status >= 500 or page.status in (0, 429):
                raise TransientError(message)
            raise PermanentError(message)
        if not page.ready:
            raise ParseError("the page did not render its fares before the deadline",
                             page=response.content)
        return parse_results(response.content)

    def close(self) -> None:
        """Stop this backend's browser (the worker calls this when it stops)."""
        self.browser.stop()
        if self._session is not None:
            self._session.close()
