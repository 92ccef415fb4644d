"""The scrapy-playwright peer of the browser benchmark: the demo airline's JS page, rendered.

    python -m scrapy runspider bench/playwright_spider.py -a base=URL -a jobs=FILE \
        -a out=FILE -a chromium=PATH -a concurrency=4

The scrape benchmark's Scrapy spider (``scrapy_spider.py``: same parsing, counts and
sample), with scrapy-playwright's download handler at its defaults except
``PLAYWRIGHT_LAUNCH_OPTIONS`` (Debian's Chromium, headless), and each request waiting
for ``table#results`` (the page draws its fares after load, as voe's demo-js backend
waits for). CONCURRENT_REQUESTS is ``concurrency``, the pages voe renders at once.

The benchmark measures this process's whole tree from outside; so that the window is
the crawl alone (imports and the driver's start excluded, the browser's launch
included), the spider writes ``OUT.start`` before its first request and ``OUT.end`` when
it closes, and each time waits for the benchmark's ``OUT.go`` / ``OUT.ack``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy_playwright.page import PageMethod
from scrapy_spider import FaresSpider

READY_SELECTOR = "table#results"
# Seconds the spider waits for the benchmark to answer a handshake.
HANDSHAKE_TIMEOUT = 60.0


def handshake(said: Path, answer: Path) -> None:
    """Write ``said`` and block until the benchmark writes ``answer`` (the reactor waits too)."""
    said.write_text(f"{time.time():.6f}\n", encoding="utf-8")
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    while not answer.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {answer.name} from the benchmark in {HANDSHAKE_TIMEOUT:g}s")
        time.sleep(0.002)


class PlaywrightFaresSpider(FaresSpider):
    """Render every search of the jobs file in Chromium through scrapy-playwright."""

    name = "fares-playwright"
    custom_settings = {
        **FaresSpider.custom_settings,
        "DOWNLOAD_HANDLERS": {
            "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
            "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
        },
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    }

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> PlaywrightFaresSpider:
        """Pages at once and the browser's executable come from the spider's arguments."""
        concurrency = int(kwargs.get("concurrency", "4"))
        for name in ("CONCURRENT_REQUESTS", "CONCURRENT_REQUESTS_PER_DOMAIN"):
            crawler.settings.set(name, concurrency, priority="spider")
        crawler.settings.set("PLAYWRIGHT_LAUNCH_OPTIONS",
                             {"executable_path": kwargs["chromium"], "headless": True},
                             priority="spider")
        return super().from_crawler(crawler, *args, **kwargs)

    def __init__(self, base: str, jobs: str, out: str, sample: str = "20",
                 chromium: str = "chromium", concurrency: str = "4", **kwargs: Any) -> None:
        super().__init__(base, jobs, out, sample, **kwargs)
        self.out_path = Path(out)

    def _signal(self, suffix: str) -> Path:
        return self.out_path.with_name(self.out_path.name + suffix)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """One rendered request per job, after the benchmark has started measuring."""
        handshake(self._signal(".start"), self._signal(".go"))
        async for request in super().start():
            yield request.replace(meta={
                "playwright": True,
                "playwright_page_methods": [PageMethod("wait_for_selector", READY_SELECTOR)],
            })

    def closed(self, reason: str) -> None:
        """Write the summary, then let the benchmark end its window before teardown."""
        super().closed(reason)
        handshake(self._signal(".end"), self._signal(".ack"))
