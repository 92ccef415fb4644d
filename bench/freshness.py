"""Benchmark the schedulers against prices that move: how fresh each keeps the store.

One command: ``python bench/freshness.py``. The demo airline's prices change at random
(``--price-changes``, seeded) on a clock running ``--speed`` times real time, and every
scheduler gets the same plan (6 routes x 334 dates: 2,004 searches), the same budget
(``--budget`` searches a simulated day, well below the 2,004 a cycle a day would need)
and the same start: a store holding one observation of each search, made first at the
budget's pace (so the answers' ages are spread as in a running collector). Then ``cycle``
(a new cycle whenever one at the budget's pace would end), ``ttl``, ``adaptive`` and
``freshness`` each run for ``--days`` simulated days at once, each on its own copy of
that store with its own airline process, master, sink and worker, all real processes.

Figures (``bench/freshness_eval.py``): the time-averaged share of searches whose stored
answer equals the airline's, the mean absolute price error, the searches the airline
served, and the stale share the master's audits measured beside the true one. A chart of
freshness over the week goes to ``docs/freshness.svg``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sqlite3
import time
import urllib.request
from pathlib import Path

from freshness_eval import Figures, Truth, audit_estimate, evaluate, plot, stored_timelines
from procs import REPO, Proc, stop_all
from report import common_args, record, table, workdir
from roles import VoeCluster, start_airline, wait_for

from voe.master.plan import load_plan

SCHEDULERS = ("cycle", "ttl", "adaptive", "freshness")
AIRPORTS = '["GRU", "REC", "SSA"]'  # six routes
DAY = 86_400.0
PLAN = """
[plan]
name = "freshness-bench"
trip = "oneway"
scheduler = "{scheduler}"
{cycle}
max_attempts = 3
lease_seconds = 30

[dates]
start_in_days = 1
days_ahead = {dates}
step_days = 1

[[routes]]
backend = "demo-api"
airports = {airports}
requests_per_second = {rate:.4f}
"""


def write_plan(path: Path, scheduler: str, rate: float, dates: int, cycle_seconds: float) -> Path:
    """The plan every run shares but for its scheduler (``cycle``: one every cycle_seconds)."""
    cycle = f'cycle = "{cycle_seconds:.0f}s"' if scheduler == "cycle" else ""
    path.write_text(PLAN.format(scheduler=scheduler, cycle=cycle, rate=rate, dates=dates,
                                airports=AIRPORTS))
    return path


def airline(tmp: Path, args: argparse.Namespace, origin: float) -> tuple[Proc, str]:
    """The demo airline with moving prices on the simulated clock."""
    return start_airline(tmp, 0, options=(
        "--price-changes", str(args.changes), "--seed", str(args.seed),
        "--clock-speed", str(args.speed), "--clock-origin", str(origin)))


def served(url: str) -> int:
    """Searches the airline has served."""
    with urllib.request.urlopen(url + "/stats", timeout=5) as answer:
        return int(json.load(answer)["requests"])


class Run:
    """One scheduler's collector: airline, master, sink and a worker on one data dir."""

    def __init__(self, tmp: Path, name: str, args: argparse.Namespace, origin: float,
                 plan: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.name, self.plan = name, plan
        self.airline, self.url = airline(tmp, args, origin)
        self.cluster = VoeCluster(tmp, self.url, VOE_CLOCK_SPEED=str(args.speed),
                                  VOE_CLOCK_ORIGIN=str(origin),
                                  VOE_AUDIT_SHARE=str(args.audit_share))

    def start(self) -> None:
        self.cluster.sink()
        self.cluster.worker("w1")
        self.cluster.master(self.plan, once=False)

    def stop(self) -> None:
        self.cluster.stop()
        self.airline.stop()

    def observations(self) -> int:
        path = self.cluster.data_dir / "ledger.db"
        if not path.exists():
            return 0
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            try:
                return db.execute("SELECT COUNT(DISTINCT search) FROM observations").fetchone()[0]
            except sqlite3.OperationalError:
                return 0


def copy_database(source: Path, target: Path) -> None:
    """Copy one SQLite file consistently (its WAL included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=2880.0,
                        help="simulated seconds per real second (2880: a day in 30 s)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="searches a simulated day, for every scheduler (300)")
    parser.add_argument("--days", type=float, default=7.0, help="simulated days measured (7)")
    parser.add_argument("--dates", type=int, default=334, help="dates per route (334)")
    parser.add_argument("--changes", type=float, default=0.05,
                        help="the airline's --price-changes (0.05)")
    parser.add_argument("--seed", type=int, default=1, help="the airline's --seed (1)")
    parser.add_argument("--audit-share", type=float, default=0.03,
                        help="VOE_AUDIT_SHARE of the continuous schedulers (0.03)")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "freshness.svg",
                        help="where the chart goes (docs/freshness.svg)")
    common_args(parser)
    args = parser.parse_args()
    rate = args.budget * args.speed / DAY
    with workdir("freshness", args.keep) as tmp:
        try:
            return _bench(tmp, args, rate)
        finally:
            stop_all()


def _bench(tmp: Path, args: argparse.Namespace, rate: float) -> int:
    origin = time.time()
    to_sim = lambda wall: origin + (wall - origin) * args.speed  # noqa: E731
    searches_total = 6 * args.dates
    cycle_seconds = searches_total / rate
    warm = Run(tmp / "warm", "warm", args, origin,
               write_plan(tmp / "warm.toml", "ttl", rate, args.dates, cycle_seconds))
    warm.start()
    print(f"warming up: one observation of each of {searches_total} searches at "
          f"{rate:.1f}/s (~{cycle_seconds:.0f} s)", flush=True)
    wait_for(lambda: warm.observations() >= searches_total, cycle_seconds * 2 + 60,
             "every search observed once", interval=1.0)
    warm.stop()
    runs = []
    for name in SCHEDULERS:
        run = Run(tmp / name, name, args, origin,
                  write_plan(tmp / f"{name}.toml", name, rate, args.dates, cycle_seconds))
        for database in ("ledger.db", "fares.db"):
            copy_database(warm.cluster.data_dir / database, run.cluster.data_dir / database)
        if name == "cycle":  # its first cycle is due at once, as the others start at once
            with sqlite3.connect(run.cluster.data_dir / "ledger.db") as db:
                db.execute("UPDATE cycles SET started_at = started_at - ?", (cycle_seconds,))
        runs.append(run)
    start_sim = to_sim(time.time())
    before = {run.name: served(run.url) for run in runs}
    for run in runs:
        run.start()
    span = args.days * DAY / args.speed
    print(f"running {', '.join(SCHEDULERS)} side by side for {span:.0f} s "
          f"({args.days:g} simulated days)", flush=True)
    deadline = time.time() + span
    while time.time() < deadline:
        time.sleep(min(10.0, max(deadline - time.time(), 0.0)))
        print(f"  day {(to_sim(time.time()) - start_sim) / DAY:.1f}", flush=True)
    end_sim = start_sim + args.days * DAY
    spent = {run.name: served(run.url) - before[run.name] for run in runs}
    for run in runs:
        run.stop()
    return _report(tmp, args, runs, spent, start_sim, end_sim, to_sim, rate)


def _report(tmp: Path, args: argparse.Namespace, runs: list[Run], spent: dict[str, int],
            start_sim: float, end_sim: float, to_sim, rate: float) -> int:
    plan = load_plan(tmp / "freshness.toml")
    today = dt.datetime.fromtimestamp(start_sim, dt.UTC).date()
    searches = [(job.id, job.origin, job.destination, job.date) for job in plan.jobs(0, today)]
    truth = Truth(args.changes, args.seed)
    results = []
    for run in runs:
        figures = Figures(run.name, searches=spent[run.name])
        timelines = stored_timelines(run.cluster.data_dir / "fares.db", to_sim)
        evaluate(figures, searches, timelines, truth, start_sim, end_sim)
        if run.name != "cycle":
            figures.estimate, figures.audits = audit_estimate(
                run.cluster.data_dir / "ledger.db", start_sim)
        results.append(figures)
    plot(results, args.plot, args.days)
    by_name = {figures.name: figures for figures in results}
    fresh = by_name["freshness"]
    best_other = min(by_name["ttl"].stale, by_name["adaptive"].stale)
    rows = [(f.name, f"{1 - f.stale:.1%}", f"{f.stale:.1%}", f"{f.error:.2f}", f.searches,
             "n/a" if f.estimate is None else f"{f.estimate:.1%} ({f.audits} audits)",
             f"{fresh.stale / f.stale:.2f}x" if f is not fresh else "")
            for f in results]
    body = (f"{len(searches)} searches (6 routes x {args.dates} dates), budget {args.budget:g} "
            f"searches a simulated day ({rate:.2f}/s real), {args.days:g} simulated days at "
            f"{args.speed:g}x, airline --price-changes {args.changes:g} --seed {args.seed}; "
            f"freshness sampled every 2 simulated hours.\n\n"
            + table(("scheduler", "fresh", "stale", "mean abs error (BRL)", "searches",
                     "audits' stale estimate", "freshness's stale / this"), rows)
            + f"\n\n- freshness vs cycle: {by_name['cycle'].stale / fresh.stale:.2f}x fewer stale "
            f"searches (target 1.5x); vs the best of ttl and adaptive: "
            f"{best_other / fresh.stale:.2f}x (target 1.2x); searches spent "
            f"{fresh.searches} against {max(by_name[n].searches for n in ('ttl', 'adaptive'))} "
            f"(the most of ttl and adaptive)"
            + (f"\n- measured staleness: estimated {fresh.estimate:.1%} (95% interval "
               f"{_interval(fresh.estimate, fresh.audits)}) against a true {fresh.stale:.1%} "
               f"({abs(fresh.estimate - fresh.stale) * 100:.1f} points apart, target within 5)"
               if fresh.estimate is not None else "")
            + f"\n- chart: {_shown(args.plot)}")
    record("Freshness: schedulers against moving prices (bench/freshness.py)", body,
           args.no_record)
    return 0


def _interval(share: float, count: int) -> str:
    """Wilson's 95% interval of a share measured on ``count`` audits."""
    z = 1.96
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / (
        1 + z * z / count)
    return f"{max(centre - half, 0.0):.1%}-{min(centre + half, 1.0):.1%}"


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    raise SystemExit(main())
