"""Waits and reads in the page's own world (voe.worker.browser.inpage) in a real headless
Chromium, on pages served over loopback: a selector that comes late, by a new element or
by an attribute; a wait that follows the page into the document it navigates to; a page
that breaks its own timers cannot hold a wait past its deadline; the markup read is the
document's. And the render host's launch switches: images off without losing Playwright's
own Blink settings, Playwright's disabled features kept beside RenderDocument, and a
page drawn in animation frames still renders in a reused page."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_browser_profiles import in_chromium, pytestmark  # noqa: F401 (the same skips)

PAGES = {
    "/late": """<!DOCTYPE html><html><body><div id="app"></div><script>
setTimeout(() => { const t = document.createElement("table"); t.id = "results";
  document.getElementById("app").appendChild(t); }, 300);</script></body></html>""",
    "/attribute": """<!DOCTYPE html><html><body><table></table><script>
setTimeout(() => { document.querySelector("table").id = "results"; }, 300);
</script></body></html>""",
    "/moves": """<!DOCTYPE html><html><body><p>one moment</p><script>
setTimeout(() => { location.href = "/late"; }, 200);</script></body></html>""",
    "/hostile": """<!DOCTYPE html><html><body><script>
window.setTimeout = () => 0; window.MutationObserver = function () {
  this.observe = () => {}; this.disconnect = () => {}; };
</script></body></html>""",
    "/frames": """<!DOCTYPE html><html><body><div id="app"></div><script>
requestAnimationFrame(() => requestAnimationFrame(() => {
  document.getElementById("app").innerHTML = '<table id="results"></table>'; }));
</script></body></html>""",
    "/both": """<!DOCTYPE html><html><body><button id="consent-accept">ok</button>
<table id="results"></table></body></html>""",
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = PAGES.get(self.path.split("?")[0], "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the tests say what they saw."""


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        serving.join(5)


def _waits(site: str, path: str, selectors: tuple[str, ...], seconds: float) -> tuple[Any, float]:
    """Open ``path`` and wait for ``selectors`` for ``seconds``: what matched and how long."""
    from voe.worker.browser.inpage import first_match

    seen: dict[str, Any] = {}

    async def test(browser: Any) -> None:
        page = await browser.new_page()
        await page.goto(site + path, wait_until="domcontentloaded")
        started = time.monotonic()
        seen["match"] = await first_match(page, selectors, started + seconds)
        seen["took"] = time.monotonic() - started
        seen["url"] = page.url

    in_chromium(test)
    return seen, seen["took"]


def test_a_selector_that_comes_late_is_seen_by_a_new_element_or_an_attribute(site):
    for path in ("/late", "/attribute"):
        seen, took = _waits(site, path, ("table#results",), 10)
        assert seen["match"] == "table#results", path
        assert took < 5, (path, took)  # woken by the change, not at the 10 s deadline


def test_a_wait_follows_the_page_into_the_document_it_navigates_to(site):
    seen, took = _waits(site, "/moves", ("table#results",), 10)
    assert seen["match"] == "table#results" and seen["url"].endswith("/late")
    assert took < 5, took


def test_a_page_that_breaks_its_own_timers_cannot_hold_a_wait_past_its_deadline(site):
    from voe.worker.browser.inpage import TIMER_GRACE

    seen, took = _waits(site, "/hostile", ("table#results",), 1.0)
    assert seen["match"] is None
    assert 0.9 < took < 1.0 + TIMER_GRACE + 1.0, took


def test_the_first_selector_listed_wins_and_the_markup_is_the_documents(site):
    from voe.worker.browser.inpage import markup, match_now

    seen, _ = _waits(site, "/both", ("table#results", "#consent-accept"), 5)
    assert seen["match"] == "table#results"
    read: dict[str, str] = {}

    async def test(browser: Any) -> None:
        page = await browser.new_page()
        await page.goto(site + "/both")
        read["ours"], read["playwright"] = await markup(page), await page.content()
        read["none"] = str(await match_now(page, ("div.missing",)))

    in_chromium(test)
    assert read["ours"] == read["playwright"] and read["ours"].startswith("<!DOCTYPE html>")
    assert read["none"] == "None"


def test_images_switched_off_at_launch_leave_playwrights_pointer_settings(site):
    from playwright.async_api import async_playwright

    from voe.worker.browser.blocking import launch_switches
    from voe.worker.browser.client import browser_path
    from voe.worker.browser.host import CHROMIUM_ARGS

    seen: dict[str, Any] = {}

    async def main() -> None:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=browser_path(""), headless=True, chromium_sandbox=False,
                args=[*CHROMIUM_ARGS, *launch_switches(frozenset({"image"}))])
            try:
                page = await browser.new_page()
                asked: list[str] = []
                page.on("request", lambda request: asked.append(request.url))
                await page.goto(site + "/both")
                await page.set_content('<img src="/pixel.png" alt="">')
                await page.wait_for_load_state("load")
                seen["hover"] = await page.evaluate("matchMedia('(hover: hover)').matches")
                seen["fine"] = await page.evaluate("matchMedia('(pointer: fine)').matches")
                seen["asked"] = asked
            finally:
                await browser.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert seen["hover"] is True and seen["fine"] is True  # Playwright's own settings kept
    assert not [url for url in seen["asked"] if url.endswith(".png")]  # the image never asked


def test_chromium_keeps_playwrights_disabled_features_beside_render_document(site):
    from playwright.async_api import async_playwright

    from voe.worker.browser.client import browser_path
    from voe.worker.browser.host import CHROMIUM_ARGS
    from voe.worker.browser.inpage import first_match
    from voe.worker.browser.process import find_browser

    seen: dict[str, Any] = {}

    async def launched(playwright: Any, name: str, args: list[str]) -> Any:
        marker = f"--voe-render-host=features-{os.getpid()}-{name}"
        browser = await playwright.chromium.launch(
            executable_path=browser_path(""), headless=True, chromium_sandbox=False,
            args=[*args, marker])
        pid = find_browser(marker)
        assert pid is not None
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        switches = [arg for arg in arguments if arg.startswith("--disable-features=")]
        seen[name] = set(switches[-1].split("=", 1)[1].split(","))  # Chromium keeps the last
        return browser

    async def main() -> None:
        async with async_playwright() as playwright:
            await (await launched(playwright, "playwright", [])).close()
            browser = await launched(playwright, "voe", list(CHROMIUM_ARGS))
            try:
                page = await browser.new_page()
                await page.goto(site + "/both")
                await page.goto(site + "/frames")  # a reused page drawn in animation frames
                seen["frames"] = await first_match(page, ("table#results",),
                                                   time.monotonic() + 10)
            finally:
                await browser.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert seen["playwright"] and seen["playwright"] <= seen["voe"], (
        f"Playwright disables features voe's switch drops: {seen['playwright'] - seen['voe']}")
    assert "RenderDocument" in seen["voe"]
    assert seen["frames"] == "table#results"
