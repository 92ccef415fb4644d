"""Browser contexts by identity: one context per identity, reused while the identity lives.

A browser context is Chromium's incognito profile: its cookies, storage, HTTP cache and
compiled scripts. Opening one per render cost about 2.5 times the CPU of a render in
a warm context on the demo airline's JS page (every script and style fetched and
compiled again, a new network context), so a context belongs to an identity
(``voe.fetch.identities``: a proxy, a User-Agent, a cookie jar), as a profile belongs to
one visitor, and serves that identity's renders only. Renders of different identities
never share a context.

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

from playwright.async_api import Browser, BrowserContext
from playwright.async_api import Error as PlaywrightError

log = logging.getLogger("voe.browser.profiles")

# Renders one context serves before it is closed (its cache and storage start afresh).
MAX_RENDERS = 200
# Chromium never proxies loopback addresses unless told so: an identity's proxy takes every
# request, as it does for HTTP backends.
PROXY_BYPASS = "<-loopback>"


@dataclass
class Profile:
    """One identity's context and its use: renders under way, renders served, health."""

    context: BrowserContext
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
    ``spare`` idle contexts are kept at most."""

    def __init__(self, browser: Browser, spare: int) -> None:
        self.browser = browser
        self.spare = max(0, spare)
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
