"""Benchmark ``voe run`` end to end: the demo plan against the demo airline at 50 ms.

Runs ``voe run --latency-ms 50`` (demo airline, sink, master, 2 workers, the 280-job
demo plan) in a fresh working directory with free ports (VOE_JOBS_PORT,
VOE_CONTROL_PORT, VOE_RESULTS_PORT, VOE_DEMO_AIRLINE_URL), polls ``fares.db`` every
10 ms, and reports the time to the first stored fare, the time to the last, and
fares stored per second, each next to its latency bound: with 2 workers x
concurrency 16 searches in flight, the plan needs ceil(280 / 32) rounds of 50 ms.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import time
from pathlib import Path

from measure import Quiet, measured
from procs import Proc, clean_env
from report import common_args, fmt, ratio, record, table, workdir
from roles import free_port

from voe.master.plan import load_plan

WORKERS = 2
CONCURRENCY = 16  # voe's default VOE_CONCURRENCY


def fare_count(store: Path) -> int:
    """Fares in ``store`` now (0 while it does not exist yet or is being created)."""
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # created but its schema is not there yet, or locked for a moment


def run_once(work: Path, latency_ms: int, timeout: float) -> dict[str, float]:
    """One ``voe run`` in ``work``: first and last fare (s from start), fares, results, total."""
    env = clean_env(VOE_JOBS_PORT=str(free_port()), VOE_CONTROL_PORT=str(free_port()),
                    VOE_RESULTS_PORT=str(free_port()), VOE_HTTP_PORT=str(free_port()),
                    VOE_SINK_HTTP_PORT=str(free_port()),
                    VOE_DEMO_AIRLINE_URL=f"http://127.0.0.1:{free_port()}")
    store = work / "fares.db"
    run = Proc("voe run", [sys.executable, "-m", "voe", "run", "--latency-ms", str(latency_ms)],
               env, work, work / "run.out")
    first = None
    deadline = time.monotonic() + timeout
    try:
        while run.poll() is None and time.monotonic() < deadline:
            if first is None and fare_count(store):
                first = time.monotonic() - run.started_monotonic
            time.sleep(0.01)
        if run.poll() is None:
            raise RuntimeError(f"voe run still running after {timeout:g}s")
    finally:
        run.stop()
    assert run.exited_monotonic is not None
    fares = fare_count(store)
    if run.returncode != 0 or not fares or first is None:
        raise RuntimeError(f"voe run exited {run.returncode} with {fares} fares:\n"
                           f"{run.log_tail()}")
    with sqlite3.connect(store) as db:
        results, span_start, span_end = db.execute(
            "SELECT COUNT(*), MIN(stored_at), MAX(stored_at) FROM results").fetchone()
    return {"first": first, "last": span_end - run.started, "fares": fares,
            "results": results, "total": run.exited_monotonic - run.started_monotonic,
            "span": max(span_end - span_start, 1e-6)}


def main() -> int:
    """Run ``voe run`` once and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=50, help="airline latency (50)")
    parser.add_argument("--timeout", type=float, default=170.0, help="give up after (170 s)")
    common_args(parser)
    args = parser.parse_args()
    jobs = load_plan(None).job_count()
    with workdir("e2e", args.keep) as work:
        outcome, others, calm = measured(
            lambda k: run_once(_fresh(work / f"run-{k}"), args.latency_ms, args.timeout),
            Quiet(args.quiet_wait))
    first, last, fares, total, span = (outcome[key] for key in
                                       ("first", "last", "fares", "total", "span"))
    results = int(outcome["results"])
    rounds = math.ceil(jobs / (WORKERS * CONCURRENCY))
    latency = args.latency_ms / 1000
    bound = rounds * latency
    span_bound = max(rounds - 1, 1) * latency
    rows = [
        ("time to first stored fare", f"{first:.2f} s", f"{latency:.2f} s (one answer)",
         ratio(first, latency)),
        ("time to last stored fare", f"{last:.2f} s", f"{bound:.2f} s ({rounds} rounds)",
         ratio(last, bound)),
        ("fares stored per second (whole run, to exit)", fmt(fares / total),
         fmt(fares / bound), ratio(fares / total, fares / bound)),
        ("fares stored per second (first to last stored)", fmt(fares / span),
         fmt(fares / span_bound), ratio(fares / span, fares / span_bound)),
    ]
    body = "\n".join([
        f"`voe run` stored {fares:,.0f} fares of {results} jobs (plan: {jobs} jobs) and exited "
        f"after {total:.2f} s, including starting and stopping the airline, sink, master and "
        f"{WORKERS} workers.", "",
        table(("figure", "measured", "latency bound", "measured / bound"), rows), "",
        f"The latency bound assumes {WORKERS} workers x {CONCURRENCY} searches in flight and "
        "no other cost: the first fare one answer in, the last after every round, and "
        "rounds - 1 between them. Times count from the start of `voe run`.", "",
        f"Machine: {calm}; other work on it used {others:.1f} CPU s during the run.",
    ])
    record(f"e2e: voe run, demo plan, {args.latency_ms} ms latency", body, args.no_record)
    return 0


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


if __name__ == "__main__":
    sys.exit(main())
