"""Requests a fare page does not need, never sent: by URL where it can, by type otherwise.

``VOE_BROWSER_BLOCK`` names Playwright resource types (image, font, media, ...). The
cheap way: Chromium drops requests whose URL ends in one of the type's file
extensions by itself (DevTools' ``Network.setBlockedURLs``), with no round trip to
Playwright per request. Asking Playwright about every request instead (a route
handler that aborts by resource type) cost about a quarter more CPU per page than
blocking nothing, on the demo airline's JS page of 40 sub-resources; blocking by URL
cost less than blocking nothing. Types that no extension tells (xhr, fetch,
document, websocket, eventsource, other) are blocked by such a route handler, only
when the setting names them. A resource of a blocked type whose URL has no known
extension (an image at ``/img?id=3``) is not blocked.
"""

from __future__ import annotations

from playwright.async_api import BrowserContext, Page, Route

# File extensions of each resource type, as URLs of that type commonly end.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image": ("png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico", "bmp"),
    "font": ("woff", "woff2", "ttf", "otf", "eot"),
    "media": ("mp4", "webm", "mp3", "ogg", "oga", "wav", "m4a", "mov", "m3u8"),
    "stylesheet": ("css",),
    "script": ("js", "mjs"),
    "texttrack": ("vtt",),
    "manifest": ("webmanifest",),
}


def url_patterns(types: frozenset[str]) -> list[str]:
    """Chromium's URL patterns (``*`` wildcards) of the extensions of ``types``."""
    patterns = []
    for kind in sorted(types):
        for extension in EXTENSIONS.get(kind, ()):
            patterns += [f"*.{extension}", f"*.{extension}?*"]
    return patterns


class TypeBlocker:
    """A route handler that aborts requests of the given resource types."""

    def __init__(self, types: frozenset[str]) -> None:
        self.types = types

    async def __call__(self, route: Route) -> None:
        """Playwright's route handler."""
        if route.request.resource_type in self.types:
            await route.abort("blockedbyclient")
        else:
            await route.continue_()


async def block_in_context(context: BrowserContext, types: frozenset[str]) -> None:
    """Block requests of ``types`` that no extension tells, in every page of ``context``
    (once, when the context opens)."""
    by_type = frozenset(kind for kind in types if kind not in EXTENSIONS)
    if by_type:
        await context.route("**/*", TypeBlocker(by_type))


async def block_in_page(context: BrowserContext, page: Page, types: frozenset[str]) -> None:
    """Block requests of ``types`` by URL in ``page`` (once, before its first navigation)."""
    patterns = url_patterns(types)
    if patterns:
        session = await context.new_cdp_session(page)
        await session.send("Network.enable")
        await session.send("Network.setBlockedURLs", {"urls": patterns})
