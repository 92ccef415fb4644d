"""Benchmark the master at scale: a 10-million-job plan, then throughput by worker count.

1. A plan of ``--jobs`` (10,000,000) null jobs: start a sink, two workers (one
   notes its first job) and ``voe master``; measure the time from the master's
   start to the first job received by a worker, then let them work for
   ``--window`` seconds while the master's RSS is sampled every 20 ms.
   Targets: first job under 5 s, peak RSS under 300 MB.
2. Throughput with 1, 2, 4 and 8 workers (``--workers``): ``--n`` (50,000) null jobs
   each, a fresh data dir per point, timed from the master's start until it exits;
   where adding workers stops paying is where the curve bends.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from measure import Quiet, RssSampler, measured
from report import common_args, fmt, ratio, record, table, verdict, workdir
from roles import VoeCluster, wait_for
from sized_plans import write_plan

RSS_TARGET_MB = 300
FIRST_JOB_TARGET_S = 5.0


def big_plan(tmp: Path, jobs: int, window: float) -> dict[str, float]:
    """Start serving a ``jobs``-job plan; time to first job, peak RSS, jobs done in the window."""
    cluster = VoeCluster(tmp)
    plan = tmp / "plan.toml"
    write_plan(plan, jobs, "null")
    try:
        cluster.sink()
        cluster.worker("worker-1", probe=True)
        cluster.worker("worker-2")
        cluster.wait_log("sink", "sink listening", 1)
        cluster.wait_log("worker", ": concurrency", 2)
        master = cluster.master(plan, once=True)
        first_file = cluster.first_job_file("worker-1")
        with RssSampler({"master": master.pid}, interval=0.02) as sampler:
            wait_for(first_file.exists, 60, "the first job to reach a worker", 0.01)
            first = float(first_file.read_text()) - master.started
            end = time.monotonic() + window
            while time.monotonic() < end:
                status = master.poll()
                if status == 0:
                    break  # a small plan was all done within the window
                if status is not None:
                    raise RuntimeError(f"the master failed (status {status}):\n"
                                       f"{master.log_tail()}")
                time.sleep(0.1)
            rss = sampler.peak["master"]
            samples = sampler.samples
        served = time.monotonic() - master.started_monotonic
        master_cpu = master.cpu()
        cluster.stop()
        results, _ = cluster.store_counts()
        return {"first_job": first, "rss_mb": rss / 1e6, "samples": samples,
                "curve": float(cluster.curve),
                "served": served, "done": results, "master_cpu": master_cpu}
    finally:
        cluster.stop()


def throughput(tmp: Path, jobs: int, workers: int) -> dict[str, float]:
    """Jobs per second with ``workers`` workers, master start to exit, and CPU by role."""
    cluster = VoeCluster(tmp)
    plan = tmp / "plan.toml"
    write_plan(plan, jobs, "null")
    try:
        sink = cluster.sink()
        procs = [cluster.worker(f"worker-{i}") for i in range(1, workers + 1)]
        cluster.wait_log("sink", "sink listening", 1)
        cluster.wait_log("worker", ": concurrency", workers, timeout=60)
        for proc in (sink, *procs):
            proc.mark()
        master = cluster.master(plan)
        master.wait(120 + jobs / 200)
        assert master.exited_monotonic is not None
        seconds = master.exited_monotonic - master.started_monotonic
        workers_cpu = sum(proc.cpu_since_mark() for proc in procs)
        sink_cpu = sink.cpu_since_mark()
        if master.returncode != 0:
            raise RuntimeError(f"voe master exited {master.returncode}:\n{master.log_tail()}")
        states = cluster.ledger_states()
        results, fares = cluster.store_counts()
        if states != {"done": jobs} or results != jobs or fares != 5 * jobs:
            raise RuntimeError(f"ledger {states}, {results} results, {fares} fares")
        return {"workers": workers, "seconds": seconds, "rate": jobs / seconds,
                "master": master.cpu(), "workers_cpu": workers_cpu, "sink": sink_cpu}
    finally:
        cluster.stop()


def bend(points: list[dict[str, float]]) -> str:
    """Where adding workers stops paying: the first step that gains under 15%."""
    for before, after in zip(points, points[1:], strict=False):
        gain = after["rate"] / before["rate"] - 1
        if gain < 0.15:
            count = int(before["workers"])
            return (f"the curve bends at {count} worker{'s' if count != 1 else ''}: going to "
                    f"{int(after['workers'])} changes throughput by {gain:+.0%}")
    return "no bend within the points measured (every step gained at least 15%)"


def main() -> int:
    """Run both parts and record them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000_000, help="big plan (10,000,000)")
    parser.add_argument("--window", type=float, default=30.0,
                        help="seconds to serve the big plan while sampling RSS (30)")
    parser.add_argument("--n", type=int, default=50_000, help="jobs per throughput point")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts (1,2,4,8)")
    common_args(parser)
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",") if part]
    with workdir("scale", args.keep) as tmp:
        quiet = Quiet(args.quiet_wait)
        print(f"serving a {args.jobs:,}-job plan for {args.window:g}s...", flush=True)
        big, big_background, big_machine = measured(
            lambda k: big_plan(tmp / f"big-{k}", args.jobs, args.window), quiet)
        print(f"  first job after {big['first_job']:.2f}s, master peak RSS "
              f"{big['rss_mb']:.0f} MB, {big['done']:,} jobs stored", flush=True)
        points = []
        for workers in counts:
            print(f"{args.n:,} jobs with {workers} workers...", flush=True)
            point, background, _ = measured(
                lambda k, w=workers: throughput(tmp / f"w{w}-{k}", args.n, w), quiet)
            point["background"] = background
            print(f"  {point['rate']:,.0f} jobs/s", flush=True)
            points.append(point)
    curve = "CURVE encryption on (voe's default)" if big["curve"] else "no CURVE"
    lines = [f"voe ran with {curve}.", "",
             f"Serving a {args.jobs:,}-job plan (2 workers, {args.window:g} s window, RSS "
             f"sampled every 20 ms, {big['samples']:.0f} samples):", "",
             table(("figure", "measured", "target", "measured / target", "verdict"), [
                 ("time to first job received by a worker", f"{big['first_job']:.2f} s",
                  f"< {FIRST_JOB_TARGET_S:g} s", ratio(big["first_job"], FIRST_JOB_TARGET_S),
                  verdict(big["first_job"] < FIRST_JOB_TARGET_S)),
                 ("master peak RSS", f"{big['rss_mb']:.0f} MB", f"< {RSS_TARGET_MB} MB",
                  ratio(big["rss_mb"], RSS_TARGET_MB), verdict(big["rss_mb"] < RSS_TARGET_MB)),
             ]), "",
             f"In {big['served']:.1f} s of serving, {big['done']:,.0f} jobs were stored "
             f"(master CPU {big['master_cpu']:.1f} s; other processes on the machine used "
             f"{big_background:.1f} CPU s meanwhile; machine: {big_machine}).", ""]
    base = points[0]["rate"] if points else None
    rows = [(int(p["workers"]), f"{p['seconds']:.2f}", fmt(p["rate"]),
             ratio(p["rate"], base), f"{p['master']:.2f}", f"{p['workers_cpu']:.2f}",
             f"{p['sink']:.2f}", f"{p['background']:.1f}") for p in points]
    lines += [f"Throughput, {args.n:,} null jobs per point (fresh data dir each):", "",
              table(("workers", "seconds", "jobs/s", "vs 1 worker", "master CPU s",
                     "workers CPU s", "sink CPU s", "background CPU s"), rows), "",
              "Background CPU s: what other processes on the machine used meanwhile (0 on a "
              "quiet machine).", ""]
    if points:
        lines.append(f"Bend: {bend(points)}. The machine has 2 cores shared by every role.")
    record(f"scale: {args.jobs:,}-job plan, then 1-8 workers", "\n".join(lines), args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
