"""Requests a fare page does not need, never sent: images and fonts by the browser's own
switches, every other type by DevTools' request interception of that type alone.

``VOE_BROWSER_BLOCK`` names Playwright resource types (image, font, media, ...).
Images and web fonts, the bulk of what a fare page does not need, are switched off
for the whole browser at launch (Blink's ``imagesEnabled`` setting,
``--disable-remote-fonts``): Blink never asks for them, so there is no request, no
event and no round trip, whatever their URLs look like. Other types are blocked per
page by DevTools' ``Fetch`` domain with a pattern for each type: only a request of a
blocked type pauses (and is failed as blocked by the client); the others never leave
the browser's network stack.

Measured with Playwright alone on the demo airline's JS page (4 pages at once, reused):
blocking by URL pattern (``Network.setBlockedURLs``) needed the Network domain on a
session of our own, whose events for every request then crossed to the render host,
and cost about a quarter more CPU a page than these switches; a Playwright route
handler asking about every request cost a quarter more than blocking nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from playwright.async_api import BrowserContext, CDPSession, Page
from playwright.async_api import Error as PlaywrightError

log = logging.getLogger("voe.browser.blocking")

# Playwright gives headless Chromium Blink settings of its own (a mouse: hover and a fine
# pointer, which pages' media queries ask about); Chromium keeps only the last
# ``--blink-settings`` switch it is given, so ours repeats them.
PLAYWRIGHT_BLINK = ("primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,"
                    "availablePointerTypes=4")
# Chromium switches that stop a resource type for the whole browser.
SWITCHES: dict[str, tuple[str, ...]] = {
    "image": (f"--blink-settings={PLAYWRIGHT_BLINK},imagesEnabled=false",),
    "font": ("--disable-remote-fonts",),
}
# DevTools' names of Playwright's resource types (the ``Fetch`` domain's patterns).
DEVTOOLS_TYPES: dict[str, str] = {
    "document": "Document", "stylesheet": "Stylesheet", "image": "Image", "media": "Media",
    "font": "Font", "script": "Script", "texttrack": "TextTrack", "xhr": "XHR",
    "fetch": "Fetch", "eventsource": "EventSource", "websocket": "WebSocket",
    "manifest": "Manifest", "other": "Other",
}


def launch_switches(types: frozenset[str]) -> list[str]:
    """The browser's launch switches that block ``types`` (images, fonts)."""
    return [switch for kind in sorted(types) for switch in SWITCHES.get(kind, ())]


def intercepted(types: frozenset[str]) -> list[str]:
    """DevTools' resource types of ``types`` that no launch switch blocks."""
    return [DEVTOOLS_TYPES[kind] for kind in sorted(types)
            if kind not in SWITCHES and kind in DEVTOOLS_TYPES]


class TypeBlocker:
    """Fails every request paused by a page's ``Fetch`` patterns: they name blocked types."""

    def __init__(self, session: CDPSession) -> None:
        self.session = session
        self._failing: set[asyncio.Task[None]] = set()

    def paused(self, event: dict[str, Any]) -> None:
        """``Fetch.requestPaused``: fail the request (the page sees a blocked load)."""
        failing = asyncio.ensure_future(self._fail(event["requestId"]))
        self._failing.add(failing)
        failing.add_done_callback(self._failing.discard)

    async def _fail(self, request_id: str) -> None:
        try:
            await self.session.send("Fetch.failRequest", {"requestId": request_id,
                                                          "errorReason": "BlockedByClient"})
        except PlaywrightError as error:  # the page or its browser went meanwhile
            log.info("blocking a request: %s", str(error).split("\n")[0])


async def block_in_page(context: BrowserContext, page: Page, types: frozenset[str]) -> None:
    """Block requests of ``types`` that no launch switch blocks, in ``page`` (once, before
    its first navigation)."""
    kinds = intercepted(types)
    if not kinds:
        return
    session = await context.new_cdp_session(page)
    blocker = TypeBlocker(session)
    session.on("Fetch.requestPaused", blocker.paused)
    await session.send("Fetch.enable", {"patterns": [
        {"urlPattern": "*", "resourceType": kind, "requestStage": "Request"}
        for kind in kinds]})
