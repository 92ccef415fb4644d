"""Benchmark the messaging plane: N null-backend jobs through voe, raw pyzmq and Celery.

voe: ``voe master --once`` -> 2 ``voe worker`` -> ``voe sink`` -> fares.db, timed from
the master's start until it exits (every job done, 5 x N fares stored). Run at
voe's default credit (``--prefetch 2``, growing with the pace: ``voe/worker/credit.py``) and,
for the record, at ``--tuned-prefetch``.

raw pyzmq (``raw_zmq.py``): ventilator -> 2 workers -> sink -> SQLite, one message
per job and per result, no leases, acks or ledger; timed from the ventilator's
start until the sink has stored every result.

Celery (``celery_app.py``, ``celery_caller.py``): a caller publishes one task per
job to RabbitMQ; a prefork worker with 2 processes returns each job's five fares
through the ``rpc://`` backend; the caller stores them in SQLite in batches; timed
from the caller's start until it exits. Celery runs ``--celery-n`` jobs (default
min(N, 20,000)) to stay within minutes; rates are per job, so they compare.

CPU seconds per 1,000 jobs are given for every role (psutil; the master,
ventilator and caller over their whole life, the others from the clock's start).

The same run of either system varies by 15-30% from one minute to the next on a
shared two-core machine, so ``--rounds`` (3) runs voe and raw pyzmq in turn that many
times: the tables show each one's median run, and the raw pyzmq target is judged on
the median of the rounds' ratios. The tuned run and Celery run once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from measure import Quiet, cpu_seconds, measured
from procs import (
    BENCH,
    BYTE_COMPILED_NOTE,
    Proc,
    clean_env,
    plugins_note,
    port_answers,
    stop_all,
)
from profiler import profile_summary, start_profiler, stop_profiler
from report import common_args, fmt, ratio, record, table, verdict, workdir
from roles import VoeCluster, free_port, wait_for
from rounds import median_run, paired_ratios
from sized_plans import write_plan

# The targets of issue 16: voe's throughput against raw pyzmq's and Celery's, same run.
RAW_TARGET = 0.6
CELERY_TARGET = 20

WORKERS = 2
RABBIT_PORT = 5672
CELERY_DEFAULT_MAX = 20_000


@dataclass
class Outcome:
    """One system's run: jobs, wall seconds, CPU seconds by role, and a check."""

    system: str
    jobs: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    check: str = ""
    note: str = ""
    background: float = 0.0
    quiet: str = ""

    @property
    def rate(self) -> float:
        """Jobs per second."""
        return self.jobs / self.seconds

    def per_thousand(self, role: str) -> float | None:
        """CPU seconds of ``role`` per 1,000 jobs."""
        return 1000 * self.cpu[role] / self.jobs if role in self.cpu else None

    @property
    def total_cpu(self) -> float:
        """CPU seconds of every role together."""
        return sum(self.cpu.values())


def _timeout(jobs: int) -> float:
    return 60 + jobs / 300


def run_voe(tmp: Path, jobs: int, prefetch: int | None, profile_dir: Path | None = None
            ) -> Outcome:
    """N jobs through voe's master, two workers and sink; verify the ledger and the store."""
    cluster = VoeCluster(tmp)
    plan = tmp / "plan.toml"
    write_plan(plan, jobs, "null")
    try:
        sink = cluster.sink()
        workers = [cluster.worker(f"worker-{i}", prefetch=prefetch) for i in range(1, WORKERS + 1)]
        cluster.wait_log("sink", "sink listening", 1)
        cluster.wait_log("worker", ": concurrency", WORKERS)
        for proc in (sink, *workers):
            proc.mark()
        master = cluster.master(plan)
        profilers = []
        if profile_dir is not None:
            profilers = [start_profiler(proc, profile_dir / f"{proc.name}.txt")
                         for proc in (master, workers[0], sink)]
        master.wait(_timeout(jobs))
        assert master.exited_monotonic is not None
        seconds = master.exited_monotonic - master.started_monotonic
        cpu = {"master": master.cpu()}
        for proc in workers:
            cpu[proc.name] = proc.cpu_since_mark()
        cpu["sink"] = sink.cpu_since_mark()
        for profiler in profilers:
            stop_profiler(profiler)
        if master.returncode != 0:
            raise RuntimeError(f"voe master exited {master.returncode}:\n{master.log_tail()}")
        states = cluster.ledger_states()
        results, fares = cluster.store_counts()
        last = cluster.last_stored_at() - master.started
        ok = states == {"done": jobs} and results == jobs and fares == 5 * jobs
        check = (f"ledger {states}, {results:,} results, {fares:,} fares stored "
                 f"({'all done, 5 x N' if ok else 'WRONG'})")
        if not ok:
            raise RuntimeError(f"voe did not store every job once: {check}")
        name = f"voe (prefetch {prefetch})" if prefetch is not None else "voe"
        curve = "CURVE encryption on (voe's default)" if cluster.curve else "no CURVE"
        return Outcome(name, jobs, seconds, cpu, check,
                       f"last fare stored {last:.2f}s after the master started; {curve}")
    finally:
        cluster.stop()


def run_raw(tmp: Path, jobs: int) -> Outcome:
    """N jobs through the raw pyzmq ventilator, two workers and sink."""
    plan = tmp / "plan.toml"
    write_plan(plan, jobs, "null")
    env = clean_env(PYTHONPATH=str(BENCH))
    script = str(BENCH / "raw_zmq.py")
    vent_port, sink_port = free_port(), free_port()
    procs: list[Proc] = []
    try:
        sink = Proc("sink", [sys.executable, script, "sink", "--port", str(sink_port),
                             "--jobs", str(jobs), "--db", str(tmp / "raw.db")],
                    env, tmp, tmp / "sink.out")
        procs.append(sink)
        workers = [Proc(f"worker-{i}", [sys.executable, script, "worker", "--ventilator",
                                        str(vent_port), "--sink", str(sink_port)],
                        env, tmp, tmp / f"worker-{i}.out") for i in range(1, WORKERS + 1)]
        procs += workers
        time.sleep(1.0)  # let them import and connect (they retry until the ventilator binds)
        for proc in (sink, *workers):
            proc.mark()
        ventilator = Proc("ventilator", [sys.executable, script, "ventilator", "--port",
                                         str(vent_port), "--plan", str(plan), "--workers",
                                         str(WORKERS)], env, tmp, tmp / "ventilator.out")
        procs.append(ventilator)
        sink.wait(_timeout(jobs))
        assert sink.exited_monotonic is not None
        seconds = sink.exited_monotonic - ventilator.started_monotonic
        ventilator.wait(30)
        cpu = {"ventilator": ventilator.cpu()}
        for proc in workers:
            cpu[proc.name] = proc.cpu_since_mark()
        cpu["sink"] = sink.cpu_since_mark()
        summary = json.loads(sink.log_path.read_text().strip().splitlines()[-1])
        ok = sink.returncode == 0 and summary["fares"] == 5 * jobs
        check = f"{summary['received']:,} results, {summary['fares']:,} fares stored"
        if not ok:
            raise RuntimeError(f"raw pyzmq did not store every job: {check}")
        return Outcome("raw pyzmq", jobs, seconds, cpu, check + " (5 x N)")
    finally:
        stop_all(procs)


def rabbitmq_pid() -> int | None:
    """PID of the process listening on the RabbitMQ port (needs psutil), or None."""
    try:
        import psutil
    except ImportError:
        return None
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == RABBIT_PORT and conn.pid:
            return conn.pid
    return None


def ensure_rabbitmq(start: bool) -> str:
    """Make sure RabbitMQ answers on loopback; start it detached if allowed. Say what we did."""
    if port_answers(RABBIT_PORT):
        return "RabbitMQ was already running on 127.0.0.1:5672"
    if not start:
        raise RuntimeError("RabbitMQ does not answer on 127.0.0.1:5672")
    env = clean_env(RABBITMQ_NODE_IP_ADDRESS="127.0.0.1")
    os.spawnvpe(os.P_WAIT, "rabbitmq-server", ["rabbitmq-server", "-detached"], env)
    wait_for(lambda: port_answers(RABBIT_PORT), 90, "RabbitMQ to answer", 0.5)
    return ("RabbitMQ did not answer, so this benchmark started it with "
            "`rabbitmq-server -detached` (left running)")


def run_celery(tmp: Path, jobs: int) -> Outcome:
    """N jobs through Celery over RabbitMQ: caller -> prefork worker (2 processes) -> caller."""
    plan = tmp / "plan.toml"
    write_plan(plan, jobs, "null")
    queue = f"voe-bench-{os.getpid()}-{int(time.time())}"
    ready = tmp / "celery.ready"
    env = clean_env(PYTHONPATH=str(BENCH), BENCH_QUEUE=queue, BENCH_READY_FILE=str(ready))
    procs: list[Proc] = []
    try:
        worker = Proc("celery-worker",
                      [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                       "-c", str(WORKERS), "-P", "prefork", "-Q", queue, "-l", "WARNING",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"],
                      env, BENCH, tmp / "celery-worker.out", tree=True)
        procs.append(worker)
        wait_for(ready.exists, 60, "the Celery worker to be ready")
        time.sleep(0.5)
        worker.mark()
        broker_pid = rabbitmq_pid()
        broker = None
        if broker_pid is not None:
            broker = cpu_seconds(broker_pid)
        caller = Proc("caller", [sys.executable, str(BENCH / "celery_caller.py"), "--plan",
                                 str(plan), "--db", str(tmp / "celery.db")],
                      env, BENCH, tmp / "caller.out")
        procs.append(caller)
        caller.wait(_timeout(jobs) * 4)
        assert caller.exited_monotonic is not None
        seconds = caller.exited_monotonic - caller.started_monotonic
        cpu = {"caller": caller.cpu(), "worker (3 processes)": worker.cpu_since_mark()}
        if broker_pid is not None and broker is not None:
            cpu["broker (RabbitMQ)"] = (cpu_seconds(broker_pid) or broker) - broker
        summary = json.loads(caller.log_path.read_text().strip().splitlines()[-1])
        ok = caller.returncode == 0 and summary["fares"] == 5 * jobs
        check = f"{summary['published']:,} tasks, {summary['fares']:,} fares stored"
        if not ok:
            raise RuntimeError(f"Celery did not store every job: {check}\n{caller.log_tail()}")
        return Outcome("Celery", jobs, seconds, cpu, check + " (5 x N)")
    finally:
        stop_all(procs)
        cleanup = Proc("celery-cleanup", [sys.executable, str(BENCH / "celery_caller.py"),
                                          "--delete-queue"],
                       env, BENCH, tmp / "cleanup.out")
        cleanup.wait(60)


def report(rounds: dict[str, list[Outcome]], notes: list[str]) -> str:
    """The Markdown section of this run: each system's median run, every round, the targets."""
    outcomes = [median_run(runs, lambda run: run.rate) for runs in rounds.values()]
    voe = next((o for o in outcomes if o.system == "voe"), None)
    celery = next((o for o in outcomes if o.system == "Celery"), None)
    count = max(len(runs) for runs in rounds.values())
    rows = []
    for o in outcomes:
        rows.append((o.system, f"{o.jobs:,}", f"{o.seconds:.2f}", fmt(o.rate),
                     ratio(voe.rate, o.rate) if voe and o is not voe else "-",
                     f"{o.background:.1f}"))
    lines = [f"Throughput (jobs/s; voe's default credit is the headline; voe's and raw "
             f"pyzmq's median run of {count} round(s)). Background CPU s: what other work on "
             "the machine used meanwhile (0 on a quiet machine):", "",
             table(("system", "jobs", "seconds", "jobs/s", "voe / this", "background CPU s"),
                   rows), ""]
    cpu_rows = []
    for o in outcomes:
        roles = ", ".join(f"{role} {1000 * sec / o.jobs:.3f}" for role, sec in o.cpu.items())
        total = 1000 * o.total_cpu / o.jobs
        cpu_rows.append((o.system, roles, f"{total:.3f}",
                         ratio(1000 * voe.total_cpu / voe.jobs, total)
                         if voe and o is not voe else "-"))
    lines += ["CPU seconds per 1,000 jobs, by role (Celery's caller publishes and stores):", "",
              table(("system", "by role", "total", "voe CPU / this CPU"), cpu_rows), ""]
    raw_ratios = _raw_ratios(rounds)
    if len(raw_ratios) > 1:
        lines += ["Jobs per second, round by round (voe and raw pyzmq in turn):", "",
                  table(("round", "voe", "raw pyzmq", "voe / raw pyzmq"),
                        [(str(number), fmt(voe_run.rate), fmt(raw_run.rate), f"{value:.2f}x")
                         for number, (voe_run, raw_run, value) in enumerate(
                             zip(rounds["voe"], rounds["raw pyzmq"], raw_ratios, strict=True),
                             start=1)]), ""]
    lines += ["Checks:", ""] + [
        f"- {o.system}" + (f", round {number}" if len(runs) > 1 else "") + f": {o.check}"
        + (f"; {o.note}" if o.note else "") + f"; machine: {o.quiet}"
        for runs in rounds.values() for number, o in enumerate(runs, start=1)]
    lines += ["", "Targets (voe at its default credit):", ""]
    if raw_ratios:
        value = statistics.median(raw_ratios)
        spread = (f" (the median round; rounds: {', '.join(f'{v:.2f}x' for v in raw_ratios)})"
                  if len(raw_ratios) > 1 else "")
        lines.append(f"- voe >= {RAW_TARGET} x raw pyzmq: {value:.2f}x{spread}, "
                     f"{verdict(value >= RAW_TARGET)}")
    if voe and celery:
        lines.append(f"- voe >= {CELERY_TARGET} x Celery: {voe.rate / celery.rate:.2f}x, "
                     f"{verdict(voe.rate >= CELERY_TARGET * celery.rate)}")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def _raw_ratios(rounds: dict[str, list[Outcome]]) -> list[float]:
    """voe's jobs per second over raw pyzmq's, round by round."""
    if "voe" not in rounds or "raw pyzmq" not in rounds:
        return []
    return paired_ratios(rounds["voe"], rounds["raw pyzmq"], lambda run: run.rate)


def main() -> int:
    """Run the benchmark and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="jobs (100,000)")
    parser.add_argument("--celery-n", type=int, default=None,
                        help=f"jobs for Celery (min(N, {CELERY_DEFAULT_MAX:,}))")
    parser.add_argument("--tuned-prefetch", type=int, default=500,
                        help="also run voe with this prefetch (500; 0 to skip)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("voe", "raw", "celery"), help="leave a system out")
    parser.add_argument("--no-start-rabbitmq", action="store_true",
                        help="skip Celery instead of starting RabbitMQ when it does not answer")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run voe and raw pyzmq in turn this many times; judge the median "
                             "round (3)")
    parser.add_argument("--profile", action="store_true",
                        help="afterwards, run voe once more under py-spy and add its profile")
    common_args(parser)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    celery_n = args.celery_n or min(args.n, CELERY_DEFAULT_MAX)
    notes = [
        f"{WORKERS} workers everywhere: 2 `voe worker` processes (null backend, voe's defaults: "
        "concurrency 16, prefetch 2 and VOE_PREFETCH_SECONDS 0.01: a credit of 18 each that "
        "grows with the worker's pace, to 16 + 128 at most, voe/worker/credit.py); "
        "2 raw pyzmq worker processes; 1 Celery prefork worker with 2 pool processes.",
        "Every system computes the same 5 fares per job (voe's null backend code) and stores "
        "5 x N rows in SQLite (WAL, synchronous=NORMAL) in batches of up to 2,000 results; "
        "voe's sink also records results and outcomes and checks for duplicates.",
        "Celery stores through the caller: results come back over RabbitMQ (rpc:// backend) "
        "and the caller batches them into SQLite, the same shape as voe's sink. Celery keeps "
        "its defaults (JSON, persistent messages, durable queue, early acks, prefetch "
        "multiplier 4); the queue is private to the run and deleted afterwards. "
        f"Celery runs {celery_n:,} jobs (--celery-n) to stay within minutes: compare rates.",
        plugins_note(),
        BYTE_COMPILED_NOTE,
    ]
    rounds: dict[str, list[Outcome]] = {}
    quiet = Quiet(args.quiet_wait)
    with workdir("pipeline", args.keep) as tmp:
        for number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {number} of {args.rounds}", flush=True)
            if "voe" not in args.skip:
                _add(rounds, _step(f"voe-r{number}", lambda d: run_voe(d, args.n, None), tmp,
                                   quiet))
            if "raw" not in args.skip:
                _add(rounds, _step(f"raw-r{number}", lambda d: run_raw(d, args.n), tmp, quiet))
        if "voe" not in args.skip and args.tuned_prefetch:
            _add(rounds, _step("voe-tuned", lambda d: run_voe(d, args.n, args.tuned_prefetch),
                               tmp, quiet))
        if "celery" not in args.skip:
            try:
                notes.append(ensure_rabbitmq(not args.no_start_rabbitmq))
            except RuntimeError as error:
                notes.append(f"Celery skipped: {error}")
            else:
                _add(rounds, _step("celery", lambda d: run_celery(d, celery_n), tmp, quiet))
        profile = _profile(tmp, args.n) if args.profile and "voe" not in args.skip else ""
    record(f"pipeline: {args.n:,} null jobs, voe vs raw pyzmq vs Celery",
           report(rounds, notes) + profile, args.no_record)
    return 0


def _add(rounds: dict[str, list[Outcome]], outcome: Outcome) -> None:
    """File one run under its system."""
    rounds.setdefault(outcome.system, []).append(outcome)


def _profile(tmp: Path, jobs: int) -> str:
    """Run voe once more under py-spy; the profile of its roles for the report."""
    profile_dir = tmp / "profile"
    profile_dir.mkdir()
    _step("voe-profiled", lambda d: run_voe(d, jobs, None, profile_dir), tmp, Quiet(0))
    profile = "\n\nProfile of voe at its default credit (py-spy, a separate run; " \
              "self = samples in the function itself):\n"
    for role in ("master", "worker-1", "sink"):
        profile += f"\n{role}: " + profile_summary(profile_dir / f"{role}.txt") + "\n"
    return profile


def _step(name: str, run, tmp: Path, quiet: Quiet) -> Outcome:
    """Run one system in its own subdirectory (once the machine is quiet); print its figures."""
    print(f"running {name}...", flush=True)

    def attempt(number: int) -> Outcome:
        where = tmp / f"{name}-{number}"
        where.mkdir()
        return run(where)

    outcome, background, calm = measured(
        attempt, quiet, lambda result: result.cpu.get("broker (RabbitMQ)", 0.0))
    outcome.background, outcome.quiet = background, calm
    print(f"  {outcome.system}: {outcome.jobs:,} jobs in {outcome.seconds:.2f}s = "
          f"{outcome.rate:,.0f} jobs/s; CPU {outcome.cpu}; background "
          f"{outcome.background:.1f} CPU s; machine {outcome.quiet}", flush=True)
    return outcome


if __name__ == "__main__":
    sys.exit(main())
