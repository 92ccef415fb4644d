"""Waiting and reading in the page's own JavaScript world: one protocol call each.

Playwright's selector waits and ``page.content()`` run in an isolated world with its
selector engine (a large injected script) set up again in every document, and poll
from the driver. On the demo airline's JS page, waiting for the ready selector with a
``MutationObserver`` in the page instead, and reading the document with one
``evaluate``, took about a quarter off the CPU of a render (Chromium and the driver
together, measured with Playwright alone on reused pages).

The page's own scripts run in that world and could fool these helpers (a page that
replaces ``document.querySelector``): such a page can only say it is ready when it is
not, which its parse then refuses with the page kept, or keep the wait from ending,
which the Python-side timeout ends. A page that navigates while a wait runs (a consent
wall that reloads, a script redirect) destroys the wait's world; the wait starts again
in the new document, ``NAVIGATIONS`` times at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

log = logging.getLogger("voe.browser.inpage")

# Documents one wait follows (each navigation during it starts it again in the new one).
NAVIGATIONS = 5
# Seconds the Python side waits past the page's own timer before it gives up on the page.
TIMER_GRACE = 0.25

# The first of ``selectors`` that matches now, else null.
_MATCH = """(selectors) =>
  selectors.find((selector) => document.querySelector(selector) !== null) ?? null"""
# The first of ``selectors`` to match, as the document changes; null after ``ms``.
_WAIT = """([selectors, ms]) => new Promise((resolve) => {
  const match = () => selectors.find((s) => document.querySelector(s) !== null);
  const now = match();
  if (now !== undefined) { resolve(now); return; }
  let timer = null;
  const observer = new MutationObserver(() => {
    const seen = match();
    if (seen !== undefined) { observer.disconnect(); clearTimeout(timer); resolve(seen); }
  });
  observer.observe(document, {childList: true, subtree: true, attributes: true});
  timer = setTimeout(() => { observer.disconnect(); resolve(null); }, ms);
})"""
# The document as markup, its doctype first (what ``page.content()`` answers).
_HTML = """() => (document.doctype ? new XMLSerializer().serializeToString(document.doctype)
  : "") + (document.documentElement ? document.documentElement.outerHTML : "")"""


async def first_match(page: Page, selectors: Sequence[str], deadline: float) -> str | None:
    """The first of ``selectors`` to match in ``page`` before ``deadline`` (a
    ``time.monotonic`` instant), or None; raises ``PlaywrightError`` if the page fails
    ``NAVIGATIONS`` times (closed, a selector the browser refuses)."""
    for attempt in range(1, NAVIGATIONS + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return await asyncio.wait_for(
                page.evaluate(_WAIT, [list(selectors), int(left * 1000)]), left + TIMER_GRACE)
        except TimeoutError:
            return None
        except PlaywrightError as error:
            if page.is_closed() or attempt == NAVIGATIONS:
                raise
            log.debug("waiting for %s again (%s)", selectors, str(error).split("\n")[0])
            await page.wait_for_load_state("domcontentloaded",
                                           timeout=max(1.0, left * 1000))
    return None


async def match_now(page: Page, selectors: Sequence[str]) -> str | None:
    """The first of ``selectors`` that matches in ``page`` now, or None."""
    return await page.evaluate(_MATCH, list(selectors))


async def markup(page: Page) -> str:
    """The page's document as markup; Playwright's ``content()`` if the page's world is
    being replaced (a navigation under way)."""
    try:
        return await page.evaluate(_HTML)
    except PlaywrightError as error:
        log.debug("reading the page through Playwright (%s)", str(error).split("\n")[0])
        return await page.content()
