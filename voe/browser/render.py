"""One render in the render host: a fresh browser context, the page, its readiness, its cookies.

Every render gets its own ``BrowserContext`` (Playwright's incognito profile) with the
job's identity: its User-Agent, its proxy and its cookies; nothing else carries over
from one job to the next. Requests for what a fare page does not need (the resource
types of ``VOE_BROWSER_BLOCK``: images, fonts, media by default) are never sent
(``voe.browser.blocking``). The page's status is the one of its document (``goto``'s response); an
error answer is read as it is. Otherwise the render waits for the backend's ready
selector (or, without one, for the network to go idle), and when the backend names a
consent button that shows up instead, clicks it and waits again. The context is
closed however the render ends; the cookies it held are handed back for the identity.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from voe.browser.blocking import block_requests

# Chromium never proxies loopback addresses unless told so: an identity's proxy takes every
# request, as it does for HTTP backends.
PROXY_BYPASS = "<-loopback>"
# Seconds of a render's time kept to read the page once a wait has timed out.
READ_MARGIN = 0.5
# What the page shows as text: a ``pre`` (how Chromium shows JSON), else the body.
_TEXT = ("(() => { const pre = document.querySelector('pre');"
         " return (pre || document.body || document.documentElement).innerText; })()")


def _milliseconds(deadline: float) -> float:
    """Playwright's timeout for what is left until ``deadline``, less ``READ_MARGIN`` to
    read the page after a wait that timed out (at least 1 ms)."""
    return max(1.0, (deadline - READ_MARGIN - time.monotonic()) * 1000)


async def _appears(page: Page, selector: str, deadline: float) -> bool:
    """Wait until ``selector`` matches, or the page is idle on the network without it (a
    block or error page that will not render more), or ``deadline``; True if it matched."""
    found = asyncio.ensure_future(page.wait_for_selector(
        selector, state="attached", timeout=_milliseconds(deadline)))
    idle = asyncio.ensure_future(page.wait_for_load_state(
        "networkidle", timeout=_milliseconds(deadline)))
    try:
        await asyncio.wait({found, idle}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (found, idle):
            if not waiting.done():
                waiting.cancel()
        await asyncio.gather(found, idle, return_exceptions=True)
    if found.done() and not found.cancelled() and found.exception() is None:
        return True
    return await page.query_selector(selector) is not None


async def _wait_ready(page: Page, ready: str, consent: str, deadline: float) -> bool:
    """Wait for ``ready`` (or network idle without one), passing a consent wall on the way;
    False when it does not come before ``deadline`` or the page went idle without it."""
    try:
        if not ready:
            await page.wait_for_load_state("networkidle", timeout=_milliseconds(deadline))
            return True
        if not await _appears(page, f"{ready}, {consent}" if consent else ready, deadline):
            return False
        if consent and await page.query_selector(ready) is None:
            await page.click(consent, timeout=_milliseconds(deadline))
            await page.wait_for_selector(ready, state="attached",
                                         timeout=_milliseconds(deadline))
    except PlaywrightTimeout:
        return False
    return True


async def render(browser: Browser, task: dict[str, Any], block: frozenset[str],
                 deadline: float) -> dict[str, Any]:
    """Render ``task`` (see ``voe.browser.client.RenderTask``) in a context of its own."""
    options: dict[str, Any] = {}
    if task.get("user_agent"):
        options["user_agent"] = task["user_agent"]
    if task.get("proxy"):
        options["proxy"] = {"server": task["proxy"], "bypass": PROXY_BYPASS}
    context = await browser.new_context(**options)
    try:
        if task.get("cookies"):
            await context.add_cookies(task["cookies"])
        page = await context.new_page()
        if block:
            await block_requests(context, page, block)
        response = await page.goto(task["url"], wait_until="domcontentloaded",
                                   timeout=_milliseconds(deadline))
        status = response.status if response is not None else 0
        headers = await response.all_headers() if response is not None else {}
        ready = False
        if 0 < status < 400:
            ready = await _wait_ready(page, task.get("ready", ""), task.get("consent", ""),
                                      deadline)
        html = await page.content()
        text = await page.evaluate(_TEXT)
        cookies = await context.cookies()
        return {"status": status, "headers": headers, "html": html, "text": text or "",
                "ready": ready, "cookies": cookies}
    finally:
        await context.close()
