"""Browser contexts by identity (voe.worker.browser.profiles) in a real headless Chromium: an
identity's renders share one context (and its pages), identities never do, a context goes
with its identity's last render, after a failure and past the spare count, and a render
holds exactly its identity's cookies."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="headless Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the browser extra is not installed (pip install -e '.[browser]')"),
]


def in_chromium(test: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``test(browser)`` against a headless Chromium launched for it alone."""
    from playwright.async_api import async_playwright

    from voe.worker.browser.client import browser_path
    from voe.worker.browser.host import CHROMIUM_ARGS

    async def main() -> None:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=browser_path(""), headless=True,
                chromium_sandbox=False, args=list(CHROMIUM_ARGS))
            try:
                await asyncio.wait_for(test(browser), 60)
            finally:
                await browser.close()

    asyncio.run(main())


def test_an_identitys_renders_share_a_context_and_identities_never_do():
    from voe.worker.browser.profiles import Profiles

    async def test(browser: Any) -> None:
        profiles = Profiles(browser, spare=4)
        async with profiles.using({"profile": "1"}) as first:
            async with profiles.using({"profile": "1"}) as again:
                assert again.context is first.context and again.running == 2
            async with profiles.using({"profile": "2"}) as other:
                assert other.context is not first.context
        async with profiles.using({"profile": "1", "user_agent": "another"}) as changed:
            assert changed.context is not first.context  # a User-Agent is a context's own
        assert len(profiles) == 3 and len(browser.contexts) == 3
        await profiles.close()
        assert browser.contexts == []

    in_chromium(test)


def test_a_context_goes_after_its_identitys_last_render_a_failure_and_past_the_spares():
    from voe.worker.browser.profiles import Profiles

    async def test(browser: Any) -> None:
        profiles = Profiles(browser, spare=1)
        async with profiles.using({"profile": "1", "last": True}) as last:
            pass
        assert last.context not in browser.contexts and len(profiles) == 0
        with pytest.raises(RuntimeError):
            async with profiles.using({"profile": "2"}) as failed:
                raise RuntimeError("the render failed")
        assert failed.context not in browser.contexts and len(profiles) == 0
        for number in range(3):
            async with profiles.using({"profile": str(number)}) as profile:
                await profiles.done_with(profile, await profiles.page(profile))
        assert len(profiles) == 1 and len(browser.contexts) == 1  # the last one used
        async with profiles.using({"profile": "2"}) as kept:
            assert kept.served == 2 and len(kept.idle) == 1
            page = await profiles.page(kept)
            assert kept.idle == [] and len(kept.context.pages) == 1
        await profiles.done_with(kept, page)
        # One idle page at most (spare=1): another identity's page closes the oldest.
        async with profiles.using({"profile": "3"}) as newer:
            await profiles.done_with(newer, await profiles.page(newer))
        assert [len(p.idle) for p in profiles._profiles.values()] == [1]
        assert len(browser.contexts) == 1

    in_chromium(test)


def test_a_page_serves_a_bounded_number_of_renders_and_a_closing_context_keeps_none():
    from voe.worker.browser.profiles import PAGE_RENDERS, Profiles

    async def test(browser: Any) -> None:
        profiles = Profiles(browser, spare=4)
        pages = []
        for _ in range(PAGE_RENDERS + 1):
            async with profiles.using({"profile": "1"}) as profile:
                page = await profiles.page(profile)
                pages.append(page)
                await profiles.done_with(profile, page)
        assert all(page is pages[0] for page in pages[:PAGE_RENDERS])
        assert pages[0].is_closed() and pages[-1] is not pages[0]
        async with profiles.using({"profile": "1", "last": True}) as profile:
            page = await profiles.page(profile)
            await profiles.done_with(profile, page)
            assert page.is_closed() and profile.idle == []
        assert len(profiles) == 0 and browser.contexts == []

    in_chromium(test)


def test_a_render_holds_exactly_its_identitys_cookies(demo_airline):
    from voe.worker.browser.profiles import Profiles
    from voe.worker.browser.render import render

    url = demo_airline()
    host = url.split("//", 1)[1].split(":", 1)[0]
    page = f"{url}/js/search?origin=GRU&destination=REC&date=2026-12-01"

    async def test(browser: Any) -> None:
        profiles = Profiles(browser, spare=4)
        task = {"url": page, "ready": "table#results", "profile": "1",
                "cookies": [{"name": "planted", "value": "1", "domain": host, "path": "/"}]}
        first = await render(profiles, task, time.monotonic() + 20)
        assert "planted" in {cookie["name"] for cookie in first["cookies"]}
        # The identity's jar lost the cookie meanwhile: the context must not keep it.
        second = await render(profiles, {**task, "cookies": []}, time.monotonic() + 20)
        assert first["ready"] and second["ready"]
        assert "planted" not in {cookie["name"] for cookie in second["cookies"]}
        # The identity's one page served both renders (its renderer process kept).
        [profile] = profiles._profiles.values()
        assert len(profile.idle) == 1 and len(profile.context.pages) == 1
        other = await render(profiles, {**task, "profile": "2", "cookies": []},
                             time.monotonic() + 20)
        assert "planted" not in {cookie["name"] for cookie in other["cookies"]}
        await profiles.close()

    in_chromium(test)
