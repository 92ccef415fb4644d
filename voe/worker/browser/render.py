"""One render in the render host: a page in its identity's context, its readiness, its cookies.

Every render opens a page in the browser context of the job's identity
(``voe.worker.browser.profiles``): its User-Agent, its proxy, and exactly the identity's
cookies (the context's are replaced by the identity's jar when no other render of the
identity runs in it); nothing carries over between identities. Requests for what a
fare page does not need (the resource types of ``VOE_BROWSER_BLOCK``: images, fonts,
media by default) are never sent (``voe.worker.browser.blocking``). The page's status is
the one of its document (``goto``'s response); an error answer is read as it is.
Otherwise the render waits for the backend's ready selector (or, without one, for the
network to go idle), and when the backend names a consent button that shows up
instead, clicks it and waits again. The context's cookies are handed back for the
identity, and the page waits for the identity's next render (a failed render's
context is closed, its pages with it). The page's visible text is read only for an
error answer (its message): reading it costs a layout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from voe.worker.browser.inpage import first_match, markup, match_now
from voe.worker.browser.profiles import Profiles

# Seconds of a render's time kept to read the page once a wait has timed out.
READ_MARGIN = 0.5
# What the page shows as text: a ``pre`` (how Chromium shows JSON), else the body.
_TEXT = ("(() => { const pre = document.querySelector('pre');"
         " return (pre || document.body || document.documentElement).innerText; })()")


def _milliseconds(deadline: float) -> float:
    """Playwright's timeout for what is left until ``deadline``, less ``READ_MARGIN`` to
    read the page after a wait that timed out (at least 1 ms)."""
    return max(1.0, (deadline - READ_MARGIN - time.monotonic()) * 1000)


async def _appears(page: Page, selectors: tuple[str, ...], deadline: float) -> str | None:
    """The first of ``selectors`` to match, or None when the page went idle on the network
    without any (a block or error page that will not render more) or ``deadline`` came."""
    until = deadline - READ_MARGIN
    found = asyncio.ensure_future(first_match(page, selectors, until))
    idle = asyncio.ensure_future(page.wait_for_load_state(
        "networkidle", timeout=_milliseconds(deadline)))
    try:
        await asyncio.wait({found, idle}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (found, idle):
            if not waiting.done():
                waiting.cancel()
        await asyncio.gather(found, idle, return_exceptions=True)
    if found.done() and not found.cancelled() and found.exception() is None and found.result():
        return found.result()
    return await match_now(page, selectors)


async def _wait_ready(page: Page, ready: str, consent: str, deadline: float) -> bool:
    """Wait for ``ready`` (or network idle without one), passing a consent wall on the way;
    False when it does not come before ``deadline`` or the page went idle without it."""
    try:
        if not ready:
            await page.wait_for_load_state("networkidle", timeout=_milliseconds(deadline))
            return True
        seen = await _appears(page, (ready, consent) if consent else (ready,), deadline)
        if seen is None:
            return False
        if seen != ready:  # the consent wall: accept, and the page renders once reloaded
            await page.click(consent, timeout=_milliseconds(deadline))
            return await first_match(page, (ready,), deadline - READ_MARGIN) is not None
    except PlaywrightTimeout:
        return False
    return True


async def render(profiles: Profiles, task: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Render ``task`` (see ``voe.worker.browser.client.RenderTask``) in its identity's context."""
    async with profiles.using(task) as profile:
        context = profile.context
        if profile.running == 1:  # alone in it: the context holds the identity's cookies only
            await context.clear_cookies()
        if task.get("cookies"):
            await context.add_cookies(task["cookies"])
        page = await profiles.page(profile)
        response = await page.goto(task["url"], wait_until="domcontentloaded",
                                   timeout=_milliseconds(deadline))
        status = response.status if response is not None else 0
        headers = response.headers if response is not None else {}
        ready = False
        if 0 < status < 400:
            ready = await _wait_ready(page, task.get("ready", ""), task.get("consent", ""),
                                      deadline)
        html = await markup(page)
        text = "" if 0 < status < 400 else await page.evaluate(_TEXT)
        cookies = await context.cookies()
        # A page still waiting for what never came serves no next render.
        await profiles.done_with(profile, page, reuse=ready or not 0 < status < 400)
        return {"status": status, "headers": headers, "html": html, "text": text or "",
                "ready": ready, "cookies": cookies}
