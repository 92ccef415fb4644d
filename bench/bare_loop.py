"""The bare peer of the scrape benchmark: gevent + requests + lxml, 100 greenlets, no voe.

What one would write by hand: one ``requests.Session`` whose pool holds a connection
per greenlet, a ``gevent.pool.Pool``, ``lxml.html`` and XPath. It fetches every
search in the jobs file, counts the fares, keeps the fares of a sample of pages
for the benchmark to check, and prints a JSON summary with its CPU seconds and
wall time over the crawl (imports and setup excluded).

    python bench/bare_loop.py --base URL --jobs FILE [--concurrency 100] [--sample 20]
"""

from gevent import monkey

monkey.patch_all()

# ruff: noqa: E402  (imports after monkey-patching, as gevent requires)
import argparse
import json
import resource
import sys
import time

import gevent.pool
import lxml.html
import requests
from extract import CELL, CURRENCY, FIELDS, ROWS, parse_brl
from requests.adapters import HTTPAdapter

MAX_SECONDS = 600.0


def cpu() -> float:
    """CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    """Crawl, then print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sample", type=int, default=20)
    args = parser.parse_args()
    with open(args.jobs, encoding="utf-8") as jobs_file:
        jobs = json.load(jobs_file)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=args.concurrency))
    sample_every = max(1, len(jobs) // max(1, args.sample))
    totals = {"pages": 0, "fares": 0, "errors": 0}
    sample: dict[str, list[list[str]]] = {}

    def fetch(index: int, job: list[str]) -> None:
        origin, destination, date = job
        try:
            response = session.get(f"{args.base}/search", timeout=10,
                                   params={"origin": origin, "destination": destination,
                                           "date": date})
            response.raise_for_status()
        except requests.RequestException as error:
            totals["errors"] += 1
            print(f"{origin}-{destination} {date}: {error}", file=sys.stderr)
            return
        root = lxml.html.fromstring(response.content)
        fares = []
        for row in root.xpath(ROWS):
            cells = [(row.xpath(CELL.format(name)) or [""])[0].strip() for name in FIELDS]
            cells[3] = parse_brl(cells[3])
            fares.append([*cells, CURRENCY])
        totals["pages"] += 1
        totals["fares"] += len(fares)
        if index % sample_every == 0:
            sample[f"{origin}-{destination}:{date}"] = fares

    pool = gevent.pool.Pool(args.concurrency)
    cpu_start, wall_start = cpu(), time.monotonic()
    for index, job in enumerate(jobs):
        pool.spawn(fetch, index, job)
    pool.join(timeout=MAX_SECONDS)
    wall, used = time.monotonic() - wall_start, cpu() - cpu_start
    print(json.dumps({**totals, "cpu": used, "wall": wall, "sample": sample}))
    return 0 if totals["errors"] == 0 and totals["pages"] == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
