"""Benchmark fetch and parse: demo-airline pages through one voe worker, Scrapy and a bare loop.

The demo airline answers every search after ``--latency-ms`` (100) with a ~30 KB
page of ``--flights`` (60) fares. Each peer fetches the same ``--pages`` (3,000)
searches with 100 at once and parses every fare:

- voe: ``voe master --once`` + ``voe sink`` + one ``voe worker --concurrency 100``
  (``demo`` backend). Wall time from the worker's first job to the last result
  stored; CPU of the worker process over the run.
- bare loop (``bare_loop.py``): gevent + requests + lxml.html, 100 greenlets.
- Scrapy (``scrapy_spider.py``): ``scrapy runspider``, CONCURRENT_REQUESTS=100.

The peers time themselves over the crawl (imports and setup excluded). Every
figure is checked: fares = flights x pages, and the fares of a sample of pages
equal the airline's ``/api/search`` JSON.

The machine's speed drifts from minute to minute (the same peer's pages per CPU-second
vary by 10-20% between runs here), so ``--rounds`` (3) runs the peers in turn that many
times: each ratio is taken between runs of one round, minutes apart at most, and the
targets are judged on the median round's ratio; the main table shows each peer's
median run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from measure import Quiet, measured
from procs import BENCH, Proc, clean_env, stop_all
from profiler import profile_summary, start_profiler, stop_profiler
from report import common_args, fmt, ratio, record, table, verdict, workdir
from roles import VoeCluster, api_fares, start_airline
from rounds import median_run, paired_ratios
from sized_plans import plan_jobs, write_plan

from voe.demo.airline.fares import AIRPORTS

CONCURRENCY = 100
SAMPLE = 20


@dataclass
class Outcome:
    """One peer's crawl: pages, fares, wall and CPU seconds of the fetching process."""

    system: str
    pages: int
    fares: int
    wall: float
    cpu: float
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
        """Pages per CPU-second of the fetching process."""
        return self.pages / self.cpu


def check_sample(url: str, sample: dict[str, list[list[str]]]) -> int:
    """Compare sampled pages with the airline's JSON; return how many matched (raise if not)."""
    for key, fares in sample.items():
        route, date = key.split(":", 1)
        origin, destination = route.split("-")
        expected = api_fares(url, origin, destination, date)
        if sorted(tuple(fare) for fare in fares) != expected:
            raise RuntimeError(f"fares of {key} differ from the airline's /api/search")
    return len(sample)


def run_voe(tmp: Path, airline: Proc, url: str, plan: Path, pages: int, flights: int,
            profile_dir: Path | None = None) -> Outcome:
    """The pages through one voe worker (concurrency 100), a master and a sink."""
    cluster = VoeCluster(tmp, url)
    try:
        sink = cluster.sink()
        worker = cluster.worker("worker-1", concurrency=CONCURRENCY, probe=True)
        cluster.wait_log("sink", "sink listening", 1)
        cluster.wait_log("worker", ": concurrency", 1)
        worker.mark()
        sink.mark()
        airline.mark()
        master = cluster.master(plan)
        profiler = None
        if profile_dir is not None:
            profiler = start_profiler(worker, profile_dir / "worker.txt")
        master.wait(120 + pages / 20)
        cpu = worker.cpu_since_mark()
        airline_cpu = airline.cpu_since_mark()
        stop_profiler(profiler)
        if master.returncode != 0:
            raise RuntimeError(f"voe master exited {master.returncode}:\n{master.log_tail()}")
        wall, fares, matched = check_voe_run(cluster, url, pages, flights)
        check = (f"{pages:,} jobs done, {fares:,} fares = {flights} x pages; "
                 f"{matched} sampled pages equal /api/search; "
                 + ("CURVE encryption on (voe's default)" if cluster.curve else "no CURVE"))
        return Outcome("voe worker", pages, fares, wall, cpu, airline_cpu, check)
    finally:
        cluster.stop()


def check_peer(name: str, code: int | None, summary: dict, url: str, pages: int,
               flights: int, proc: Proc) -> int:
    """The sampled pages of a peer's summary that equal /api/search; ``RuntimeError`` (with
    the end of its log) unless it exited 0 with every page and ``flights`` fares on each."""
    if code != 0 or summary["errors"] or summary["pages"] != pages \
            or summary["fares"] != flights * pages:
        raise RuntimeError(f"{name} failed ({code}): {summary['pages']} pages, "
                           f"{summary['fares']} fares, {summary['errors']} errors\n"
                           f"{proc.log_tail()}")
    return check_sample(url, summary["sample"])


def check_voe_run(cluster: VoeCluster, url: str, pages: int, flights: int
                  ) -> tuple[float, int, int]:
    """Wall seconds from worker-1's first job to the last result stored, the fares stored
    and the sampled pages that equal /api/search; ``RuntimeError`` (with the end of the
    worker's log) unless every job is done with ``flights`` fares."""
    first = float(cluster.first_job_file("worker-1").read_text())
    wall = cluster.last_stored_at() - first
    states = cluster.ledger_states()
    results, fares = cluster.store_counts()
    if states != {"done": pages} or results != pages or fares != flights * pages:
        log = cluster.data_dir / "worker.log"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        raise RuntimeError(f"voe: ledger {states}, {results} results, {fares} fares; "
                           "the worker's log ends:\n" + "\n".join(tail))
    return wall, fares, check_sample(url, _voe_sample(cluster.data_dir / "fares.db", pages))


def _voe_sample(store: Path, pages: int) -> dict[str, list[list[str]]]:
    with sqlite3.connect(store) as db:
        keys = db.execute("SELECT cycle, job_id, origin, destination, date FROM results "
                          "ORDER BY job_id").fetchall()
        sample = {}
        for cycle, job_id, origin, destination, date in keys[::max(1, pages // SAMPLE)]:
            rows = db.execute("SELECT flight, departure, arrival, price, currency FROM fares "
                              "WHERE cycle = ? AND job_id = ?", (cycle, job_id)).fetchall()
            sample[f"{origin}-{destination}:{date}"] = [list(row) for row in rows]
    return sample


def run_peer(name: str, argv: list[str], tmp: Path, airline: Proc, url: str, pages: int,
             flights: int, out: Path | None = None) -> Outcome:
    """Run a peer that prints (or writes to ``out``) its JSON summary; check it."""
    airline.mark()
    proc = Proc(name, argv, clean_env(PYTHONPATH=str(BENCH)), BENCH, tmp / f"{name}.out")
    try:
        code = proc.wait(120 + pages / 10)
    finally:
        stop_all([proc])
    airline_cpu = airline.cpu_since_mark()
    text = out.read_text() if out is not None and out.exists() else \
        proc.log_path.read_text().strip().splitlines()[-1]
    summary = json.loads(text)
    matched = check_peer(name, code, summary, url, pages, flights, proc)
    check = (f"{pages:,} pages, {summary['fares']:,} fares = {flights} x pages; "
             f"{matched} sampled pages equal /api/search")
    return Outcome(name, pages, summary["fares"], summary["wall"], summary["cpu"],
                   airline_cpu, check)


def round_ratios(rounds: dict[str, list[Outcome]], peer: str) -> list[float]:
    """voe's pages per CPU-second over ``peer``'s, round by round."""
    return paired_ratios(rounds.get("voe worker", []), rounds.get(peer, []),
                         lambda run: run.per_cpu)


def report(rounds: dict[str, list[Outcome]], notes: list[str], latency_ms: int) -> str:
    """The Markdown section of this run: each peer's median run, every round, the targets."""
    outcomes = [median_run(runs, lambda run: run.per_cpu) for runs in rounds.values()]
    voe = next((o for o in outcomes if o.system == "voe worker"), None)
    rows = [(o.system, f"{o.pages:,}", f"{o.wall:.2f}", fmt(o.rate),
             ratio(voe.rate, o.rate) if voe and o is not voe else "-",
             f"{o.cpu:.2f}", fmt(o.per_cpu),
             ratio(voe.per_cpu, o.per_cpu) if voe and o is not voe else "-",
             f"{o.airline_cpu:.2f}", f"{o.background:.1f}")
            for o in outcomes]
    count = max(len(runs) for runs in rounds.values())
    lines = [f"Each peer's median run of {count} round(s). Background CPU s: what other "
             "processes on the machine used meanwhile (0 on a quiet machine).", "",
             table(("system", "pages", "seconds", "pages/s", "voe / this", "CPU s",
                    "pages per CPU-s", "voe / this", "airline CPU s", "background CPU s"),
                   rows), ""]
    peers = [name for name in rounds if name != "voe worker"]
    if count > 1:
        lines += ["Pages per CPU-second, round by round (peers run in turn within a round):",
                  "", table(("round", *rounds, *(f"voe / {name}" for name in peers if voe)),
                            [(str(number), *(fmt(runs[number - 1].per_cpu)
                                             for runs in rounds.values()),
                              *(f"{round_ratios(rounds, name)[number - 1]:.2f}x"
                                for name in peers if voe))
                             for number in range(1, count + 1)]), ""]
    lines += ["Checks:", ""] + [f"- {o.system}, round {number}: {o.check}; machine: {o.quiet}"
                                for runs in rounds.values()
                                for number, o in enumerate(runs, start=1)]
    lines += ["", "Targets (the median round's ratio):", ""]
    if voe:
        lines.append(f"- voe worker >= 400 pages per CPU-second: {voe.per_cpu:,.0f}, "
                     f"{verdict(voe.per_cpu >= 400)}")
        for peer, label, target in (("Scrapy", "Scrapy", 3.5), ("bare loop", "the bare loop", 1.3)):
            if peer in rounds:
                values = round_ratios(rounds, peer)
                value = statistics.median(values)
                spread = (f" (rounds: {', '.join(f'{v:.2f}x' for v in values)})"
                          if len(values) > 1 else "")
                lines.append(f"- >= {target} x {label} (pages per CPU-s): {value:.2f}x"
                             f"{spread}, {verdict(value >= target)}")
    ideal = CONCURRENCY / (latency_ms / 1000) if latency_ms else None
    if ideal:
        lines += ["", f"The latency bound is {CONCURRENCY} at once / {latency_ms} ms = "
                      f"{ideal:,.0f} pages/s."]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000, help="pages to fetch (3,000)")
    parser.add_argument("--flights", type=int, default=60, help="fares per page (60)")
    parser.add_argument("--latency-ms", type=int, default=100, help="airline latency (100)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("voe", "bare", "scrapy"), help="leave a peer out")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run the peers in turn this many times; judge the median round (3)")
    parser.add_argument("--profile", action="store_true",
                        help="afterwards, run voe once more under py-spy and add its profile")
    common_args(parser)
    return parser


def main() -> int:
    """Run the benchmark and record it."""
    args = _parser().parse_args()
    notes = [f"{CONCURRENCY} requests at once everywhere; one fetching process per peer; "
             "CPU seconds are those of that process (the voe worker; the peers over their "
             "crawl, imports excluded). The master and sink of voe run beside it.",
             "The bare loop and the spider read each cell with its own XPath "
             "(`td[@class='price']/text()`, the idiomatic form); voe's demo backend walks each "
             "row's cells once after one XPath for the rows. All three check every price.",
             "voe's wall time runs from the worker's first job to the last result stored "
             "in fares.db; the peers time their crawl from the first request to the last "
             "page parsed."]
    if args.rounds < 1:
        _parser().error("--rounds must be at least 1")
    rounds: dict[str, list[Outcome]] = {}
    profile = ""
    quiet = Quiet(args.quiet_wait)
    with workdir("scrape", args.keep) as tmp:
        airline, url = start_airline(tmp, args.latency_ms, args.flights)
        try:
            plan = tmp / "plan.toml"
            write_plan(plan, args.pages, "demo", sorted(AIRPORTS), most_dates=30)
            jobs_file = tmp / "jobs.json"
            jobs_file.write_text(json.dumps(plan_jobs(plan)))
            steps = _steps(args, tmp, airline, url, plan, jobs_file)
            for number in range(1, args.rounds + 1):
                if args.rounds > 1:
                    print(f"round {number} of {args.rounds}", flush=True)
                for name, run in steps:
                    outcome = _step(lambda k, run=run, number=number: run(f"r{number}-{k}"),
                                    quiet)
                    rounds.setdefault(name, []).append(outcome)
            if args.profile and "voe" not in args.skip:
                profile_dir = _dir(tmp, "profile")
                run_voe(_dir(tmp, "voe-profiled"), airline, url, plan, args.pages,
                        args.flights, profile_dir)
                profile = ("\n\nProfile of the voe worker (py-spy, a separate run; self = "
                           "samples in the function itself):\n\n"
                           + profile_summary(profile_dir / "worker.txt", top=12) + "\n")
        finally:
            airline.stop()
    record(f"scrape: {args.pages:,} demo-airline pages ({args.flights} fares, "
           f"{args.latency_ms} ms), voe worker vs bare loop vs Scrapy",
           report(rounds, notes, args.latency_ms) + profile, args.no_record)
    return 0


def _steps(args: argparse.Namespace, tmp: Path, airline: Proc, url: str, plan: Path,
           jobs_file: Path) -> list[tuple[str, Callable[[str], Outcome]]]:
    """Each peer not skipped, as (name, run): ``run(tag)`` crawls once in a directory named
    by ``tag``."""
    steps: list[tuple[str, Callable[[str], Outcome]]] = []
    if "voe" not in args.skip:
        steps.append(("voe worker", lambda tag: run_voe(_dir(tmp, f"voe-{tag}"), airline, url,
                                                        plan, args.pages, args.flights)))
    if "bare" not in args.skip:
        argv = [sys.executable, str(BENCH / "bare_loop.py"), "--base", url, "--jobs",
                str(jobs_file), "--concurrency", str(CONCURRENCY), "--sample", str(SAMPLE)]
        steps.append(("bare loop", lambda tag: run_peer("bare loop", argv,
                                                        _dir(tmp, f"bare-{tag}"), airline,
                                                        url, args.pages, args.flights)))
    if "scrapy" not in args.skip:
        def scrapy(tag: str) -> Outcome:
            out = _dir(tmp, f"scrapy-{tag}") / "scrapy.json"
            argv = [sys.executable, "-m", "scrapy", "runspider",
                    str(BENCH / "scrapy_spider.py"), "-a", f"base={url}", "-a",
                    f"jobs={jobs_file}", "-a", f"out={out}", "-a", f"sample={SAMPLE}"]
            return run_peer("Scrapy", argv, out.parent, airline, url, args.pages,
                            args.flights, out)
        steps.append(("Scrapy", scrapy))
    return steps


def _dir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir(exist_ok=True)
    return path


def _step(run, quiet: Quiet) -> Outcome:
    outcome, background, calm = measured(run, quiet)
    outcome.background, outcome.quiet = background, calm
    print(f"  {outcome.system}: {outcome.pages:,} pages in {outcome.wall:.2f}s = "
          f"{outcome.rate:,.0f} pages/s; {outcome.cpu:.2f} CPU s = {outcome.per_cpu:,.0f} "
          f"pages per CPU-s; airline {outcome.airline_cpu:.2f} CPU s; background "
          f"{outcome.background:.1f} CPU s; machine {outcome.quiet}", flush=True)
    return outcome


if __name__ == "__main__":
    sys.exit(main())
