"""Browser contexts by identity: one context per identity, its pages reused while it lives.

A browser context is Chromium's incognito profile: its cookies, storage, HTTP cache and
compiled scripts. Opening one per render cost about 2.5 times the CPU of a render in
a warm context on the demo airline's JS page (every script and style fetched and
compiled again, a new network context), so a context belongs to an identity
(``voe.fetch.identities``: a proxy, a User-Agent, a cookie jar), as a profile belongs to
one visitor, and serves that identity's renders only. Renders of different identities
never share a context. Its pages are reused too (a page whose render ended waits for the
identity's next one): a new page costs Chromium a renderer process, a reused one
navigates in its own and keeps its compiled scripts.

A context is closed after the identity's last render (the task says ``last``), after
``MAX_RENDERS`` renders, after any render in it that failed (a timeout, a browser
error: its state is unknown), and when more than ``spare`` contexts are idle (the
least recently used first), so memory stays bounded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import Error as PlaywrightError

from voe.browser.blocking import block_in_context, block_in_page

log = logging.getLogger("voe.browser.profiles")

# Renders one context serves before it is closed (its cache and storage start afresh).
MAX_RENDERS = 200
# Chromium never proxies loopback addresses unless told so: an identity's proxy takes every
# request, as it does for HTTP backends.
PROXY_BYPASS = "<-loopback>"


@dataclass
class Profile:
    """One identity's context and its use: its idle pages, renders under way, renders
    served, health."""

    context: BrowserContext
    idle: list[Page] = field(default_factory=list)
    running: int = 0
    served: int = 0
    broken: bool = False
    last: bool = False
    key: tuple[str, str, str] = field(default=("", "", ""))


def _options(user_agent: str, proxy: str) -> dict[str, Any]:
    """``new_context``'s options for an identity's User-Agent and proxy."""
    options: dict[str, Any] = {}
    if user_agent:
        options["user_agent"] = user_agent
    if proxy:
        options["proxy"] = {"server": proxy, "bypass": PROXY_BYPASS}
    return options


class Profiles:
    """The contexts of one browser, by identity (the task's ``profile``, User-Agent, proxy);
    ``spare`` idle contexts are kept at most; ``block`` names the resource types their
    pages never load (``voe.browser.blocking``)."""

    def __init__(self, browser: Browser, spare: int,
                 block: frozenset[str] = frozenset()) -> None:
        self.browser = browser
        self.spare = max(0, spare)
        self.block = block
        self._profiles: OrderedDict[tuple[str, str, str], Profile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._profiles)

    @asynccontextmanager
    async def using(self, task: dict[str, Any]) -> AsyncIterator[Profile]:
        """The context of ``task``'s identity for one render (opened if it has none); a
        render that raises or is cancelled leaves its context broken: closed once idle."""
        key = (str(task.get("profile", "")), str(task.get("user_agent", "")),
               str(task.get("proxy", "")))
        profile = self._profiles.get(key)
        if profile is None or profile.broken or profile.last or profile.served >= MAX_RENDERS:
            context = await self.browser.new_context(**_options(key[1], key[2]))
            await block_in_context(context, self.block)
            profile = Profile(context, key=key)
            self._profiles[key] = profile
        self._profiles.move_to_end(key)
        profile.running += 1
        profile.served += 1
        profile.last = profile.last or bool(task.get("last"))
        try:
            yield profile
        except BaseException:
            profile.broken = True
            raise
        finally:
            profile.running -= 1
            await self._tidy(profile)

    async def page(self, profile: Profile) -> Page:
        """A page of ``profile``'s context for one render: an idle one, else a new one."""
        while profile.idle:
            page = profile.idle.pop()
            if not page.is_closed():
                return page
        page = await profile.context.new_page()
        await block_in_page(profile.context, page, self.block)
        return page

    @staticmethod
    def done_with(profile: Profile, page: Page) -> None:
        """``page``'s render ended well: it waits for the identity's next render."""
        profile.idle.append(page)

    async def _tidy(self, released: Profile) -> None:
        """Close what should go: ``released`` if broken, used up or replaced, and the least
        recently used idle contexts past ``spare``."""
        doomed = []
        if released.running == 0 and (released.broken or released.last
                                       or released.served >= MAX_RENDERS
                                       or self._profiles.get(released.key) is not released):
            doomed.append(released)
        idle = [p for p in self._profiles.values() if p.running == 0 and p not in doomed]
        doomed += idle[:max(0, len(idle) - self.spare)]
        for profile in doomed:  # out of reach first: closing yields to other renders
            if self._profiles.get(profile.key) is profile:
                del self._profiles[profile.key]
        for profile in doomed:
            await _close(profile.context)

    async def close(self) -> None:
        """Close every context (the browser goes on)."""
        profiles = list(self._profiles.values())
        self._profiles.clear()
        for profile in profiles:
            await _close(profile.context)


async def _close(context: BrowserContext) -> None:
    """Close ``context``; one whose browser is gone is closed already."""
    try:
        await context.close()
    except PlaywrightError as error:
        log.info("closing a browser context: %s", str(error).split("\n")[0])
