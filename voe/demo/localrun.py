"""`voe run`: the whole pipeline on this machine, once, with a live progress display.

Starts the demo airline, the sink, the master and N workers as real processes on
loopback, shows jobs done, failed, fares stored, rate and ETA, stops everything it
started by PID, and prints a summary with the cheapest fares. Ctrl-C stops
cleanly; the ledger keeps the cycle, so the next `voe run` resumes it.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from voe import private
from voe.cli import fares, report
from voe.master.lock import MasterRunning
from voe.master.plan import Plan
from voe.model import parse_legs
from voe.processes import Child, child_env
from voe.settings import Settings

# Seconds to wait for the demo airline to answer after starting it.
AIRLINE_START_TIMEOUT = 20.0
# Seconds between progress lines when the output is not a terminal.
PLAIN_PROGRESS_INTERVAL = 5.0


class RunError(Exception):
    """`voe run` cannot go on; the message says why and what to do."""


class LocalRun:
    """One local run of the pipeline."""

    def __init__(self, settings: Settings, plan: Plan, args: argparse.Namespace) -> None:
        self.settings = settings
        self.plan = plan
        self.args = args
        self.data_dir = settings.data_dir.resolve()
        # Without a terminal (a log file, CI) lines are not wrapped at 80 columns.
        self.console = Console(stderr=False, soft_wrap=not sys.stdout.isatty())
        self.children: list[Child] = []
        self.airline: Child | None = None
        self.master: Child | None = None
        # This run's cycle once known; the last cycle before it started; what its cycle had
        # stored and finished when the run began (a resumed cycle's earlier work is not ours).
        self.cycle: int | None = None
        self.after = 0
        self.fares_before = 0
        self.finished_before: int | None = None

    def run(self) -> int:
        """Run until the plan's cycle is done; return the exit status."""
        started = time.monotonic()
        try:
            self._check_master()
            self._check_ports()
            self._before()
            self._start()
            self._watch(started)
        except RunError as error:
            self.console.print(f"[red]voe run: {error}[/red]")
            self._stop_all()
            return 1
        except KeyboardInterrupt:
            self.console.print("\ninterrupted: stopping every process started by this run...")
            self._stop_all()
            self.console.print("stopped. The ledger keeps the cycle: `voe run` again resumes it.")
            return 130
        self._stop_all()
        self._summary(time.monotonic() - started)
        return 0

    # Start ------------------------------------------------------------------

    def _check_master(self) -> None:
        """Refuse to start workers for a master that already runs on this data dir."""
        pid = report.master_pid(self.settings)
        if pid is not None:
            raise RunError(str(MasterRunning(self.data_dir, pid)))

    def _check_ports(self) -> None:
        wanted = [(self.settings.voe_bind_ip, self.settings.voe_jobs_port, "VOE_JOBS_PORT"),
                  (self.settings.voe_bind_ip, self.settings.voe_control_port, "VOE_CONTROL_PORT"),
                  (self.settings.voe_bind_ip, self.settings.voe_results_port, "VOE_RESULTS_PORT")]
        if self.settings.voe_http_port:
            wanted.append((self.settings.voe_http_host, self.settings.voe_http_port,
                           "VOE_HTTP_PORT"))
        if self.settings.voe_sink_http_port:
            wanted.append((self.settings.voe_http_host, self.settings.voe_sink_http_port,
                           "VOE_SINK_HTTP_PORT"))
        if not self.args.no_airline:
            url = urlsplit(self.settings.voe_demo_airline_url)
            wanted.append((url.hostname or "127.0.0.1", url.port or 80, "VOE_DEMO_AIRLINE_URL"))
        for host, port, name in wanted:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError as error:
                    why = "in use" if error.errno == errno.EADDRINUSE else error.strerror
                    raise RunError(f"{host}:{port} ({name}) is {why}: is another voe running? "
                                   f"Stop it or choose another port with {name}.") from None

    def _spawn(self, name: str, *args: str) -> Child:
        env = child_env(self.settings.as_env(), args[0], VOE_DATA_DIR=str(self.data_dir))
        child = Child(name, args, env, Path.cwd(), self.data_dir / "run.err")
        self.children.append(child)
        return child

    def _start(self) -> None:
        private.make_dir(self.data_dir)
        self._ensure_keys()
        if not self.args.no_airline:
            url = urlsplit(self.settings.voe_demo_airline_url)
            self.airline = self._spawn("demo airline", "demo-airline",
                                       "--host", url.hostname or "127.0.0.1",
                                       "--port", str(url.port or 80),
                                       "--latency-ms", str(self.args.latency_ms),
                                       *getattr(self.args, "airline_arguments", ()))
        self._wait_for_airline()
        plan_args = ["--plan", str(Path(self.args.plan).resolve())] if self.args.plan else []
        self._spawn("sink", "sink", "--no-console")
        self.master = self._spawn("master", "master", "--once", "--no-console", *plan_args)
        concurrency = ["--concurrency", str(self.args.concurrency)] if self.args.concurrency else []
        for number in range(1, self.args.workers + 1):
            self._spawn(f"worker {number}", "worker", "--no-console",
                        "--name", f"worker-{number}", *concurrency)
        self.console.print(
            f"voe run: plan [bold]{self.plan.name}[/bold] ({self.plan.job_count()} jobs a cycle), "
            f"{self.args.workers} workers, demo airline at {self.settings.voe_demo_airline_url}, "
            f"data in {self.data_dir}")
        if self.settings.voe_http_port:
            self.console.print(f"dashboard: http://{self.settings.voe_http_host}:"
                               f"{self.settings.voe_http_port}/ (while the run lasts)")

    def _ensure_keys(self) -> None:
        """Make the CURVE keys on first use, so the local pipeline is encrypted."""
        if not self.settings.voe_curve:
            return
        from voe.keys import init, keys_dir

        directory = keys_dir(self.settings)
        if not directory.is_absolute():
            directory = Path.cwd() / directory
        try:
            created = init(directory)
        except OSError as error:
            raise RunError(f"cannot make CURVE keys in {directory}: {error.strerror}") from None
        if created:
            self.console.print(f"voe run: made CURVE keys in {directory} (first use)")

    def _wait_for_airline(self) -> None:
        url = self.settings.voe_demo_airline_url + "/stats"
        deadline = time.monotonic() + AIRLINE_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.airline is not None and self.airline.poll() is not None:
                raise RunError(f"the demo airline exited at start; see {self.data_dir}/run.err")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RunError(f"the demo airline did not answer at {url} within "
                       f"{AIRLINE_START_TIMEOUT:.0f}s")

    # Watch ------------------------------------------------------------------

    def _before(self) -> None:
        """Note the cycle the ledger holds before the master starts: resumed, or a new one next."""
        state = report.status(self.settings, self.plan)
        cycle = state["cycle"]
        if cycle is not None and cycle["finished_at"] is None:
            self.cycle = cycle["number"]
            self.fares_before = cycle["fares"]
            self.console.print(f"voe run: resuming cycle {self.cycle} "
                               f"({sum(state['jobs'].values())} jobs, "
                               f"{state['jobs']['done'] + state['jobs']['failed']} finished)")
            changed = cycle["plan_changed"]
            if changed is not None:
                self.console.print(
                    f"[yellow]voe run: the plan changed since cycle {self.cycle} started: it "
                    f"finishes with the {changed['jobs_kept']} jobs it holds, and the next "
                    f"`voe run` starts a cycle of plan {changed['plan']} "
                    f"({changed['plan_jobs']} jobs).[/yellow]" if changed["jobs_kept"] else
                    f"[yellow]voe run: the plan changed before cycle {self.cycle} held any job: "
                    f"it ends empty and a cycle of plan {changed['plan']} starts now.[/yellow]")
                if not changed["jobs_kept"]:
                    self.cycle, self.fares_before = None, 0
                    self.after = cycle["number"]
            return
        self.after = cycle["number"] if cycle is not None else 0

    def _current(self) -> dict | None:
        """The status of this run's cycle, or None while the master has not started it yet."""
        state = report.status(self.settings, self.plan)
        cycle = state["cycle"]
        if cycle is None:
            return None
        if self.cycle is None:
            if cycle["number"] <= self.after:
                return None
            self.cycle = cycle["number"]
            self.fares_before = 0
            self.console.print(f"voe run: cycle {self.cycle} started "
                               f"({sum(state['jobs'].values())} jobs)")
        return state

    def _watch(self, started: float) -> None:
        columns = (TextColumn("[bold]{task.description}[/bold]"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                   TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("starting", total=None, detail="")
            next_plain = time.monotonic()
            while True:
                self._check_children()
                state = self._current()
                if state is not None:
                    self._show(progress, task, state, started)
                    if not self.console.is_terminal and time.monotonic() >= next_plain:
                        jobs = state["jobs"]
                        print(f"progress: cycle {self.cycle}: {jobs['done'] + jobs['failed']}/"
                              f"{sum(jobs.values())} jobs, {self._detail(state, started)}",
                              flush=True)
                        next_plain = time.monotonic() + PLAIN_PROGRESS_INTERVAL
                assert self.master is not None
                code = self.master.poll()
                if code is not None:
                    if code != 0:
                        raise RunError(f"the master exited with status {code}; "
                                       f"see {self.data_dir}/master.log and run.err")
                    state = self._current()
                    if state is not None:
                        self._show(progress, task, state, started)
                    return
                time.sleep(0.25)

    def _run_fares(self, state: dict) -> int:
        """Fares this run stored: the cycle's, less what it held when the run began."""
        return max(state["cycle"]["fares"] - self.fares_before, 0)

    def _detail(self, state: dict, started: float) -> str:
        jobs = state["jobs"]
        elapsed = max(time.monotonic() - started, 1e-6)
        return (f"{jobs['failed']} failed, {self._run_fares(state)} fares, "
                f"{(jobs['done'] + jobs['failed'] - self.finished_before) / elapsed:.0f} jobs/s")

    def _show(self, progress: Progress, task: TaskID, state: dict, started: float) -> None:
        jobs = state["jobs"]
        finished = jobs["done"] + jobs["failed"]
        if self.finished_before is None:
            self.finished_before = finished
        progress.update(task, description=f"cycle {self.cycle}", total=sum(jobs.values()) or None,
                        completed=finished, detail=self._detail(state, started))

    def _check_children(self) -> None:
        for child in self.children:
            if child is not self.master and child.poll() is not None:
                raise RunError(f"the {child.name} (pid {child.pid}) exited with status "
                               f"{child.poll()}; see the logs in {self.data_dir} and run.err")

    def _stop_all(self) -> None:
        """Stop workers first, then the master, the sink and the airline, each by PID."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    # Summary ----------------------------------------------------------------

    def _summary(self, elapsed: float) -> None:
        state = self._current()
        if state is None:
            self.console.print(f"\n[bold]done[/bold] in {elapsed:.1f}s: the master started no "
                               "cycle; see master.log")
            return
        jobs = state["jobs"]
        stored = self._run_fares(state)
        self.console.print(
            f"\n[bold]cycle {self.cycle} done[/bold] in {elapsed:.1f}s: {jobs['done']} jobs "
            f"done, {jobs['failed']} failed, {stored} fares stored by this run "
            f"({stored / max(elapsed, 1e-6):.0f} fares/s)"
            + (f"; {state['cycle']['fares']} in the cycle" if self.fares_before else ""))
        # Prices of different currencies are not compared: the cheapest of each, in turn.
        rows = sorted(fares.cheapest(self.settings),
                      key=lambda row: (row["currency"], Decimal(row["price"])))[:10]
        if rows:
            table = Table(title="Cheapest fares found", show_lines=False)
            searched = any(row.get("options") for row in rows)
            for column in ("route", "date", "flight", "departure", "price",
                           *(("search",) if searched else ())):
                table.add_column(column, justify="right" if column == "price" else "left",
                                 overflow="fold")
            for row in rows:
                shown = _cheapest_row(row)
                table.add_row(*shown, *((row.get("options") or "",) if searched else ()))
            self.console.print(table)
        if jobs["failed"]:
            self.console.print("failed jobs: `voe failed` lists them, `voe failed retry` "
                               "re-queues them")
        self.console.print(f"data: {self.data_dir} (ledger.db, fares.db, master.log, sink.log, "
                           "worker.log). Next: `voe status`, `voe cheapest`, "
                           "`voe export --format csv --out fares.csv`")
        sys.stdout.flush()


def _cheapest_row(row: dict) -> tuple[str, str, str, str, str]:
    """A stored fare in the run's table: route, date, flight, departure, price (a round trip
    or multi-city trip: every date, flight and departure; a calendar's day: no flight; its
    search options go in a column of their own)."""
    route = f"{row['origin']}-{row['destination']}"
    legs = [(row["date"], row["flight"] or "calendar", row["departure"])]
    if row.get("return_flight"):
        legs.append((row["return_date"], row["return_flight"], row["return_departure"]))
    if row.get("legs"):
        trip = parse_legs(row["legs"])
        route = "-".join([row["origin"], *(leg.destination for leg in trip)])
        later = json.loads(row["leg_flights"] or "[]")
        legs += [(leg.date, flight, departure) for leg, (flight, departure, _)
                 in zip(trip[1:], later, strict=False)]
    return (route, *(" / ".join(column) for column in zip(*legs, strict=True)),
            f"{row['price']} {row['currency']}")
