"""Browser contexts by identity: one context per identity, its pages reused while it lives.

A browser context is Chromium's incognito profile: its cookies, storage, HTTP cache and
compiled scripts. Opening one per render cost about 2.5 times the CPU of a render in
a warm context on the demo airline's JS page (every script and style fetched and
compiled again, a new network context), so a context belongs to an identity
(``voe.worker.fetch.identities``: a proxy, a User-Agent, a cookie jar), as a profile belongs to
one visitor, and serves that identity's renders only. Renders of different identities
never share a context. Its pages are reused too (a page whose render ended waits for the
identity's next one): a new page costs Chromium a renderer process, a reused one
navigates in its own and keeps its compiled scripts.

Memory stays bounded: a page is closed after ``PAGE_RENDERS`` renders (a renderer's
memory grows with every page it shows), at most ``spare`` pages and ``spare`` contexts
wait idle (the least recently used go first), and a context is closed once idle after
its identity's last render (the task says ``last``), after ``MAX_RENDERS`` renders, or
after any render in it that failed (a timeout, a browser error: its state is unknown).
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import Error as PlaywrightError

from voe.worker.browser.blocking import block_in_page

log = logging.getLogger("voe.browser.profiles")

# Renders one context serves before it is closed (its cache and storage start afresh).
MAX_RENDERS = 500
# Renders one page serves before it is closed (its renderer process with it).
PAGE_RENDERS = 25
# Every page's window by default (VOE_BROWSER_VIEWPORT's default), in CSS pixels.
VIEWPORT = (1280, 64)
# Chromium never proxies loopback addresses unless told so: an identity's proxy takes every
# request, as it does for HTTP backends.
PROXY_BYPASS = "<-loopback>"


@dataclass
class Profile:
    """One identity's context and its use: its idle pages (each with the renders it
    served), renders under way, renders served, and whether it is to close once idle."""

    context: BrowserContext
    key: tuple[str, str, str]
    idle: list[tuple[Page, int]] = field(default_factory=list)
    running: int = 0
    served: int = 0
    broken: bool = False
    last: bool = False

    @property
    def closing(self) -> bool:
        """Whether the context closes once no render runs in it."""
        return self.broken or self.last or self.served >= MAX_RENDERS


def _options(user_agent: str, proxy: str, viewport: tuple[int, int]) -> dict[str, Any]:
    """``new_context``'s options for an identity's User-Agent and proxy, and the window."""
    options: dict[str, Any] = {"viewport": {"width": viewport[0], "height": viewport[1]}}
    if user_agent:
        options["user_agent"] = user_agent
    if proxy:
        options["proxy"] = {"server": proxy, "bypass": PROXY_BYPASS}
    return options


class Profiles:
    """The contexts of one browser, by identity (the task's ``profile``, User-Agent, proxy);
    ``spare`` idle pages and idle contexts are kept at most; ``block`` names the resource
    types their pages never load (``voe.worker.browser.blocking``); ``viewport`` is every
    page's window (width, height): the width lays pages out, the height is what is painted."""

    def __init__(self, browser: Browser, spare: int, block: frozenset[str] = frozenset(),
                 viewport: tuple[int, int] = VIEWPORT) -> None:
        self.browser = browser
        self.spare = max(0, spare)
        self.block = block
        self.viewport = viewport
        self._profiles: OrderedDict[tuple[str, str, str], Profile] = OrderedDict()
        # Pages under way -> renders they served before; weak, so a page whose render failed
        # (its context closed with the broken profile) leaves no entry behind.
        self._uses: weakref.WeakKeyDictionary[Page, int] = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self._profiles)

    @asynccontextmanager
    async def using(self, task: dict[str, Any]) -> AsyncIterator[Profile]:
        """The context of ``task``'s identity for one render (opened if it has none); a
        render that raises or is cancelled leaves its context broken: closed once idle."""
        key = (str(task.get("profile", "")), str(task.get("user_agent", "")),
               str(task.get("proxy", "")))
        profile = self._profiles.get(key)
        if profile is None or profile.broken or profile.served >= MAX_RENDERS:
            context = await self.browser.new_context(**_options(key[1], key[2], self.viewport))
            profile = Profile(context, key)
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
            page, uses = profile.idle.pop()
            if not page.is_closed():
                self._uses[page] = uses
                return page
        page = await profile.context.new_page()
        await block_in_page(profile.context, page, self.block)
        self._uses[page] = 0
        return page

    async def done_with(self, profile: Profile, page: Page, reuse: bool = True) -> None:
        """``page``'s render ended: it waits for the identity's next render, unless
        ``reuse`` is False, it served ``PAGE_RENDERS``, or its context is closing."""
        uses = self._uses.pop(page, 0) + 1
        if reuse and uses < PAGE_RENDERS and not profile.closing:
            profile.idle.append((page, uses))
        else:
            await _close(page)

    async def _tidy(self, released: Profile) -> None:
        """Close what should go: ``released`` if closing or replaced, the least recently used
        idle pages past ``spare``, and the least recently used idle contexts past it."""
        doomed = []
        if released.running == 0 and (released.closing
                                       or self._profiles.get(released.key) is not released):
            doomed.append(released)
        idle = [p for p in self._profiles.values() if p.running == 0 and p not in doomed]
        doomed += idle[:max(0, len(idle) - self.spare)]
        for profile in doomed:  # out of reach first: closing yields to other renders
            if self._profiles.get(profile.key) is profile:
                del self._profiles[profile.key]
        pages = []
        waiting = sum(len(profile.idle) for profile in self._profiles.values())
        for profile in self._profiles.values():  # least recently used first
            while profile.idle and waiting > self.spare:
                pages.append(profile.idle.pop(0)[0])
                waiting -= 1
        for page in pages:
            await _close(page)
        for profile in doomed:
            await _close(profile.context)

    async def close(self) -> None:
        """Close every context (the browser goes on)."""
        profiles = list(self._profiles.values())
        self._profiles.clear()
        for profile in profiles:
            await _close(profile.context)


async def _close(closable: BrowserContext | Page) -> None:
    """Close a context or page; one whose browser is gone is closed already."""
    try:
        await closable.close()
    except PlaywrightError as error:
        log.info("closing a browser %s: %s", type(closable).__name__.lower(),
                 str(error).split("\n")[0])
