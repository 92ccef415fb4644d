"""The Scrapy peer of the scrape benchmark: the same searches, fetched and parsed by Scrapy.

    python -m scrapy runspider bench/scrapy_spider.py -a base=URL -a jobs=FILE -a out=FILE

CONCURRENT_REQUESTS (and per domain) 100, no delay, no robots.txt, cookies, retries
or telnet console (Scrapy's advice for broad crawls). Rows and cells are read with
``response.xpath`` and the same expressions as the other peers (``extract.py``).
Counts, CPU seconds and wall time over the crawl (from the spider's first request
to its close) and the fares of a sample of pages go to the ``out`` JSON file.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

import scrapy
from extract import CELL, CURRENCY, FIELDS, ROWS, parse_brl
from scrapy.http import Response


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class FaresSpider(scrapy.Spider):
    """Fetch every search of the jobs file and count its fares."""

    name = "fares"
    custom_settings = {
        "CONCURRENT_REQUESTS": 100,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 100,
        "DOWNLOAD_DELAY": 0,
        "DOWNLOAD_TIMEOUT": 10,
        "ROBOTSTXT_OBEY": False,
        "COOKIES_ENABLED": False,
        "RETRY_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    }

    def __init__(self, base: str, jobs: str, out: str, sample: str = "20",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base
        with open(jobs, encoding="utf-8") as jobs_file:
            self.jobs = json.load(jobs_file)
        self.out = out
        self.sample_every = max(1, len(self.jobs) // max(1, int(sample)))
        self.totals = {"pages": 0, "fares": 0, "errors": 0}
        self.sample: dict[str, list[list[str]]] = {}
        self.cpu_start = self.wall_start = 0.0

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """One request per job."""
        self.cpu_start, self.wall_start = _cpu(), time.monotonic()
        for index, (origin, destination, date) in enumerate(self.jobs):
            url = f"{self.base}/search?origin={origin}&destination={destination}&date={date}"
            yield scrapy.Request(url, callback=self.parse, errback=self.failed,
                                 cb_kwargs={"key": f"{origin}-{destination}:{date}",
                                            "index": index})

    def parse(self, response: Response, key: str, index: int) -> None:
        """Read the fares of one results page."""
        fares = []
        for row in response.xpath(ROWS):
            cells = [(row.xpath(CELL.format(name)).get() or "").strip() for name in FIELDS]
            cells[3] = parse_brl(cells[3])
            fares.append([*cells, CURRENCY])
        self.totals["pages"] += 1
        self.totals["fares"] += len(fares)
        if index % self.sample_every == 0:
            self.sample[key] = fares

    def failed(self, failure: Any) -> None:
        """Count a request that failed."""
        self.totals["errors"] += 1
        self.logger.warning("request failed: %s", failure)

    def closed(self, reason: str) -> None:
        """Write the summary."""
        wall, used = time.monotonic() - self.wall_start, _cpu() - self.cpu_start
        with open(self.out, "w", encoding="utf-8") as out:
            json.dump({**self.totals, "cpu": used, "wall": wall, "reason": reason,
                       "sample": self.sample}, out)
