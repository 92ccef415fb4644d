"""Measure a voe worker's CPU per demo-airline page in one process, without master or sink.

``bench/scrape.py`` measures the whole cluster against its peers; this measures only
what a worker does per job, to compare one change to the worker's hot path with
another in a few seconds: the session of ``voe.worker.http.new_session``, the ``demo``
backend and the fare pipeline, run by ``Worker.search`` as the worker runs them, and
each result encoded as the worker encodes it. ``--concurrency`` greenlets (100) share
one session, as a worker's do. The first ``--warmup`` pages (connections, imports,
caches) are not measured; then CPU seconds (``time.process_time``) over ``--pages``
pages are, after the worker's garbage-collector policy (``voe.gcpolicy``).

The demo airline runs as its own process: started here on a free port (stopped by its
PID at the end), or an already running one given with ``--url``. Every page must
come back ok with ``--flights`` fares, or the run fails.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from gevent.pool import Pool  # noqa: E402
from procs import clean_env, stop_all  # noqa: E402
from report import workdir  # noqa: E402
from roles import start_airline  # noqa: E402

from voe.demo.airline.fares import AIRPORTS  # noqa: E402
from voe.model import OK, SearchJob  # noqa: E402

# Days ahead the searches' dates spread over (the pages differ by route and date).
DAYS = 30


def searches(count: int, start: int) -> Iterator[SearchJob]:
    """``count`` demo searches, every route on every date in turn, from the ``start``-th on."""
    today = dt.date.today()
    codes = sorted(AIRPORTS)
    routes = [(a, b) for a in codes for b in codes if a != b]
    keys = itertools.cycle(list(itertools.product(range(1, DAYS + 1), routes)))
    for days, (origin, destination) in itertools.islice(keys, start, start + count):
        date = (today + dt.timedelta(days=days)).isoformat()
        yield SearchJob(f"demo:{origin}-{destination}:{date}", 1, 1, "demo", origin,
                        destination, date)


def worker_like(url: str, concurrency: int) -> SimpleNamespace:
    """What ``Worker.search`` reads of a worker: settings, session, backends, pipeline, name."""
    env = clean_env(VOE_DEMO_AIRLINE_URL=url)  # voe as released: no VOE_* of ours, no plugins
    os.environ.clear()
    os.environ.update(env)
    from voe.settings import load
    from voe.worker.farepipeline import FarePipeline
    from voe.worker.http import new_session

    settings = load(env_file=os.devnull)
    return SimpleNamespace(settings=settings, backends={}, name="inprocess",
                           fare_pipeline=FarePipeline(settings),
                           http=new_session(settings, concurrency))


def run(worker: SimpleNamespace, jobs: list[SearchJob], concurrency: int,
        flights: int) -> float:
    """Run ``jobs`` as a worker would; return the CPU seconds; fail on any page not ok."""
    from voe import protocol
    from voe.worker.loop import Worker

    def one(job: SearchJob) -> None:
        result = Worker.search(worker, job)
        protocol.encode_result(result)
        if result.status != OK or len(result.fares) != flights:
            raise SystemExit(f"{job.id}: {result.status}, {len(result.fares)} fares: "
                             f"{result.error}")

    pool = Pool(concurrency)
    started = time.process_time()
    for _ in pool.imap_unordered(one, jobs):
        pass
    return time.process_time() - started


def start_profiler(path: str) -> subprocess.Popen:
    """py-spy sampling this process (its Python and native frames) into ``path`` until SIGINT."""
    profiler = subprocess.Popen(["py-spy", "record", "--pid", str(os.getpid()), "--native",
                                 "--rate", "250", "--format", "raw", "--output", path],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # py-spy attaches
    return profiler


def main() -> int:
    """Measure; print microseconds of CPU per page for each round and their median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running demo airline (default: start one here)")
    parser.add_argument("--pages", type=int, default=2000, help="pages measured per round (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="pages run first, unmeasured (200)")
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds (1)")
    parser.add_argument("--concurrency", type=int, default=100, help="searches at once (100)")
    parser.add_argument("--flights", type=int, default=60, help="flights per page (60)")
    parser.add_argument("--latency-ms", type=int, default=100,
                        help="the started airline's latency (100)")
    parser.add_argument("--profile", metavar="FILE",
                        help="also record the measured rounds with py-spy (raw, native) into FILE")
    args = parser.parse_args()
    with workdir("inprocess", keep=False) as tmp:
        airline = None
        url = args.url
        if url is None:
            airline, url = start_airline(tmp, args.latency_ms, args.flights)
        try:
            from voe import gcpolicy

            worker = worker_like(url, args.concurrency)
            run(worker, list(searches(args.warmup, 0)), args.concurrency, args.flights)
            gcpolicy.settle()  # the worker's garbage-collector policy, as Worker.run sets it
            profiler = None if args.profile is None else start_profiler(args.profile)
            per_page = []
            for number in range(args.rounds):
                jobs = list(searches(args.pages, args.warmup + number * args.pages))
                cpu = run(worker, jobs, args.concurrency, args.flights)
                per_page.append(cpu / args.pages * 1e6)
                print(f"round {number + 1}: {per_page[-1]:.0f} µs CPU per page "
                      f"({args.pages / cpu:.0f} pages per CPU-s)", flush=True)
            print(f"median: {statistics.median(per_page):.0f} µs CPU per page")
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                profiler.wait(timeout=60)
        finally:
            if airline is not None:
                stop_all([airline])
    return 0


if __name__ == "__main__":
    sys.exit(main())
