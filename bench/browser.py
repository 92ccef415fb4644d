"""Benchmark JS pages: demo-js pages per CPU-second and peak memory, voe vs scrapy-playwright.

The demo airline's ``/js/search`` page holds no fares in its markup: a script draws
``table#results`` after load, so only a browser reads it. Both peers render the same
``--pages`` (300) searches in Debian's headless Chromium, ``--concurrency`` (4) pages
at once, each waiting for ``table#results``, and parse every fare:

- voe: ``voe master --once`` + ``voe sink`` + one ``voe worker --concurrency N`` with
  the ``demo-js`` backend as this revision ships it (``VOE_BROWSER`` = Chromium,
  ``VOE_BROWSER_PAGES`` = N). Window: from before the master starts to its exit (the
  worker's Chromium starts on the first job, inside it); wall time from the worker's
  first job to the last result stored.
- scrapy-playwright (``playwright_spider.py``): ``scrapy runspider`` with the handler
  at its defaults, ``PLAYWRIGHT_LAUNCH_OPTIONS`` = Debian's Chromium, headless, and
  CONCURRENT_REQUESTS = N. Window: from just before its first request to its close
  (a file handshake with the spider; Chromium launches on the first request, inside it).

CPU and memory are those of each peer's whole process tree (the worker or the Scrapy
process, Playwright's driver, every Chromium process, short-lived renderers
included), measured by ``proctree.TreeMeter``: exact CPU from the kernel's own and
reaped-children times summed over the tree, cross-checked by sampling the tree every
50 ms; peak memory is the largest RSS summed over the tree in those samples (the
target's figure), with the peak PSS beside it (shared pages split between processes).
Every figure is checked: fares = flights x pages, and the fares of a sample of pages
equal the airline's ``/api/search`` JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from measure import Quiet, measured
from procs import BENCH, REPO, Proc, clean_env, stop_all
from proctree import TreeMeter, TreeUsage
from report import common_args, fmt, ratio, record, table, verdict, workdir
from roles import VoeCluster, start_airline, wait_for
from scrape import check_peer, check_voe_run
from sized_plans import plan_jobs, write_plan

from voe.demo.airline.fares import AIRPORTS
from voe.worker.browser.client import BrowserError, browser_path

SAMPLE = 20
PLAYWRIGHT = "scrapy-playwright"
MIB = 1024 * 1024


@dataclass
class Outcome:
    """One peer's crawl: pages, fares, wall seconds and its process tree's CPU and memory."""

    system: str
    pages: int
    fares: int
    wall: float
    usage: TreeUsage
    airline_cpu: float
    check: str
    background: float = 0.0
    quiet: str = ""

    @property
    def rate(self) -> float:
        """Pages per second."""
        return self.pages / self.wall

    @property
    def per_cpu(self) -> float:
        """Pages per CPU-second of the whole process tree."""
        return self.pages / self.usage.cpu

    @property
    def peak_mib(self) -> float:
        """Peak RSS of the process tree in MiB."""
        return self.usage.peak_rss / MIB

    @property
    def peak_pss_mib(self) -> float:
        """Peak PSS of the process tree in MiB."""
        return self.usage.peak_pss / MIB


def run_voe(tmp: Path, airline: Proc, url: str, plan: Path, pages: int, flights: int,
            concurrency: int, chromium: str) -> Outcome:
    """The pages through one voe worker with the demo-js backend, a master and a sink."""
    cluster = VoeCluster(tmp, url, VOE_BROWSER=chromium, VOE_BROWSER_PAGES=str(concurrency))
    try:
        sink = cluster.sink()
        worker = cluster.worker("worker-1", concurrency=concurrency, probe=True)
        cluster.wait_log("sink", "sink listening", 1)
        cluster.wait_log("worker", ": concurrency", 1)
        meter = TreeMeter(worker.pid)
        sink.mark()
        airline.mark()
        meter.mark()
        master = cluster.master(plan)
        master.wait(120 + pages)
        usage = meter.end()
        airline_cpu = airline.cpu_since_mark()
        beside = sink.cpu_since_mark() + master.cpu()
        if master.returncode != 0:
            raise RuntimeError(f"voe master exited {master.returncode}:\n{master.log_tail()}")
        wall, fares, matched = check_voe_run(cluster, url, pages, flights)
        check = (f"{pages:,} jobs done, {fares:,} fares = {flights} x pages; {matched} sampled "
                 f"pages equal /api/search; {usage.describe()}; master and sink beside it "
                 f"{beside:.2f} CPU s (not counted, as in scrape.py)")
        return Outcome("voe worker", pages, fares, wall, usage, airline_cpu, check)
    finally:
        cluster.stop()


def run_playwright(tmp: Path, airline: Proc, url: str, jobs_file: Path, pages: int,
                   flights: int, concurrency: int, chromium: str) -> Outcome:
    """The pages through scrapy-playwright; its window is set by a handshake with the spider."""
    out = tmp / "playwright.json"
    argv = [sys.executable, "-m", "scrapy", "runspider", str(BENCH / "playwright_spider.py"),
            "-a", f"base={url}", "-a", f"jobs={jobs_file}", "-a", f"out={out}",
            "-a", f"sample={SAMPLE}", "-a", f"chromium={chromium}",
            "-a", f"concurrency={concurrency}"]
    proc = Proc(PLAYWRIGHT, argv, clean_env(PYTHONPATH=str(BENCH)), BENCH,
                tmp / f"{PLAYWRIGHT}.out")
    try:
        _wait_signal(out, ".start", proc, 120)
        meter = TreeMeter(proc.pid)
        airline.mark()
        meter.mark()
        out.with_name(out.name + ".go").touch()
        _wait_signal(out, ".end", proc, 120 + pages)
        usage = meter.end()
        airline_cpu = airline.cpu_since_mark()
        out.with_name(out.name + ".ack").touch()
        code = proc.wait(120)
    finally:
        stop_all([proc])
    summary = json.loads(out.read_text())
    matched = check_peer(PLAYWRIGHT, code, summary, url, pages, flights, proc)
    check = (f"{pages:,} pages, {summary['fares']:,} fares = {flights} x pages; {matched} "
             f"sampled pages equal /api/search; {usage.describe()}")
    return Outcome(PLAYWRIGHT, pages, summary["fares"], summary["wall"], usage, airline_cpu,
                   check)


def _wait_signal(out: Path, suffix: str, proc: Proc, timeout: float) -> None:
    """Wait for the spider's ``OUT.suffix`` file; raise if the spider exits first."""
    path = out.with_name(out.name + suffix)

    def written() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{PLAYWRIGHT} exited ({proc.returncode}) before writing "
                               f"{path.name}:\n{proc.log_tail()}")
        return path.exists()

    wait_for(written, timeout, f"{PLAYWRIGHT} to write {path.name}", interval=0.002)


def report(outcomes: list[Outcome], notes: list[str]) -> str:
    """The Markdown section of this run."""
    voe = next((o for o in outcomes if o.system == "voe worker"), None)
    rows = [(o.system, f"{o.pages:,}", f"{o.wall:.2f}", fmt(o.rate, 1),
             f"{o.usage.cpu:.2f}", fmt(o.per_cpu, 1),
             ratio(voe.per_cpu, o.per_cpu) if voe and o is not voe else "-",
             fmt(o.peak_mib), ratio(voe.peak_mib, o.peak_mib) if voe and o is not voe else "-",
             fmt(o.peak_pss_mib),
             ratio(voe.peak_pss_mib, o.peak_pss_mib) if voe and o is not voe else "-",
             f"{o.airline_cpu:.2f}", f"{o.background:.1f}")
            for o in outcomes]
    lines = ["CPU s and peak RSS are those of each peer's whole process tree (Chromium "
             "included). Background CPU s: what other processes on the machine used "
             "meanwhile (0 on a quiet machine).", "",
             table(("system", "pages", "seconds", "pages/s", "CPU s (tree)",
                    "pages per CPU-s", "voe / this", "peak RSS MiB (tree)", "voe / this",
                    "peak PSS MiB (tree)", "voe / this",
                    "airline CPU s", "background CPU s"), rows), ""]
    lines += ["Checks:", ""] + [f"- {o.system}: {o.check}; machine: {o.quiet}"
                                for o in outcomes]
    peer = next((o for o in outcomes if o.system == PLAYWRIGHT), None)
    lines += ["", "Targets:", ""]
    if voe and peer:
        value = voe.per_cpu / peer.per_cpu
        lines.append(f"- >= 2 x scrapy-playwright (pages per CPU-s): {value:.2f}x, "
                     f"{verdict(value >= 2)}")
        memory = voe.peak_mib / peer.peak_mib
        lines.append(f"- less peak memory than scrapy-playwright: {voe.peak_mib:,.0f} MiB vs "
                     f"{peer.peak_mib:,.0f} MiB = {memory:.2f}x (RSS summed over the tree), "
                     f"{verdict(memory < 1)}; PSS {voe.peak_pss_mib:,.0f} MiB vs "
                     f"{peer.peak_pss_mib:,.0f} MiB = "
                     f"{voe.peak_pss_mib / peer.peak_pss_mib:.2f}x")
    else:
        lines.append("- not judged: both peers must run in the same run")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="pages to render (300)")
    parser.add_argument("--flights", type=int, default=60, help="fares per page (60)")
    parser.add_argument("--latency-ms", type=int, default=100, help="airline latency (100)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="pages rendered at once by each peer (4, VOE_BROWSER_PAGES' "
                             "default)")
    parser.add_argument("--chromium", default="",
                        help="the Chromium executable both peers use (default: voe's own "
                             "default, chromium-headless-shell if installed, else chromium; "
                             "Playwright's own default for headless pages is its headless "
                             "shell)")
    parser.add_argument("--skip", action="append", default=[], choices=("voe", PLAYWRIGHT),
                        help="leave a peer out")
    common_args(parser)
    return parser


def main() -> int:
    """Run the benchmark and record it."""
    parser = _parser()
    args = parser.parse_args()
    # voe's processes (the airline and its JS page included) run from this checkout, not
    # from wherever ``pip install -e`` pointed: the revision recorded is the one measured.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        chromium = browser_path(args.chromium)
    except BrowserError as error:
        parser.error(f"{error} (or --chromium)")
    if PLAYWRIGHT not in args.skip and importlib.util.find_spec("scrapy_playwright") is None:
        parser.error("scrapy-playwright is not installed: pip install -e '.[bench]' "
                     f"(or --skip {PLAYWRIGHT})")
    notes = _notes(args.concurrency, chromium)
    outcomes: list[Outcome] = []
    quiet = Quiet(args.quiet_wait)
    with workdir("browser", args.keep) as tmp:
        airline, url = start_airline(tmp, args.latency_ms, args.flights)
        try:
            plan = tmp / "plan.toml"
            write_plan(plan, args.pages, "demo-js", sorted(AIRPORTS), most_dates=30)
            jobs_file = tmp / "jobs.json"
            jobs_file.write_text(json.dumps(plan_jobs(plan)))
            if "voe" not in args.skip:
                outcomes.append(_step(lambda k: run_voe(
                    _dir(tmp, f"voe-{k}"), airline, url, plan, args.pages, args.flights,
                    args.concurrency, chromium), quiet))
            if PLAYWRIGHT not in args.skip:
                outcomes.append(_step(lambda k: run_playwright(
                    _dir(tmp, f"playwright-{k}"), airline, url, jobs_file, args.pages,
                    args.flights, args.concurrency, chromium), quiet))
        finally:
            airline.stop()
    record(f"browser: {args.pages:,} demo-airline JS pages ({args.flights} fares, "
           f"{args.latency_ms} ms, {args.concurrency} at once), voe worker vs scrapy-playwright",
           report(outcomes, notes), args.no_record)
    return 0


def _notes(concurrency: int, chromium: str) -> list[str]:
    """How the figures were taken, for the report."""
    return [f"{concurrency} pages rendered at once by each peer, in one Chromium each "
            f"({chromium}); both wait for `table#results`, which the page draws after "
            "load. voe's worker runs with --concurrency and VOE_BROWSER_PAGES = "
            f"{concurrency}; the spider with CONCURRENT_REQUESTS = {concurrency} "
            "(scrapy-playwright's pages per context follow it) and otherwise "
            "scrapy-playwright's defaults.",
            "CPU: each process's user + system time plus its reaped children's, summed "
            "over the live tree at the window's start and end (exact for processes that "
            "exit during the crawl); the tree is also sampled every 50 ms and the larger "
            "of the two sums is used (both are in the checks).",
            "Peak RSS: the largest RSS summed over the tree in any sample; pages shared "
            "between processes (Chromium's libraries) count once per process, for both "
            "peers alike. Peak PSS: the same with each shared page split between the "
            "processes that map it (what the tree adds to the machine), read every 0.5 s.",
            "voe's wall time runs from the worker's first job to the last result stored in "
            "fares.db; scrapy-playwright's from its first request to its close.",
            "voe (the airline too) runs from this checkout (PYTHONPATH), with the demo-js "
            "backend and JS page this revision ships."]


def _dir(tmp: Path, name: str) -> Path:
    """A subdirectory of the run's directory for one peer's attempt."""
    path = tmp / name
    path.mkdir(exist_ok=True)
    return path


def _step(run: Callable[[int], Outcome], quiet: Quiet) -> Outcome:
    """Measure one peer once the machine is quiet (again if disturbed); print its line."""
    outcome, background, calm = measured(run, quiet)
    outcome.background, outcome.quiet = background, calm
    print(f"  {outcome.system}: {outcome.pages:,} pages in {outcome.wall:.2f}s = "
          f"{outcome.rate:,.1f} pages/s; {outcome.usage.cpu:.2f} CPU s (tree) = "
          f"{outcome.per_cpu:,.1f} pages per CPU-s; peak RSS {outcome.peak_mib:,.0f} MiB, "
          f"PSS {outcome.peak_pss_mib:,.0f} MiB (tree); airline {outcome.airline_cpu:.2f} "
          f"CPU s; background {outcome.background:.1f} CPU s; machine {outcome.quiet}",
          flush=True)
    return outcome


if __name__ == "__main__":
    sys.exit(main())
