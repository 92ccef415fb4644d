"""Shared helpers of the benchmarks: machine facts, child processes, CPU and RSS, plans, report.

Everything here talks to loopback only and stops what it starts by PID. CPU seconds
and RSS come from ``/proc`` (and ``os.wait4`` for a child that has exited), so the
voe parts of the benchmarks run without extra packages; psutil is used only to find
the RabbitMQ broker's PID.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Seconds a child gets after SIGTERM before SIGKILL.
STOP_TIMEOUT = 15.0
# Longest date window a plan accepts (plan.py: dates.days_ahead).
MAX_DAYS = 3650

_HEADER = """# Benchmarks

Each section below was appended by one benchmark command (`python bench/NAME.py`),
with the machine, the date, the exact command and every figure next to its peer.
Smoke runs (`tests/test_bench_smoke.py`) pass `--no-record` and leave nothing here.
"""


# Machine ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python and kernel of this machine."""
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                ram_kib = int(line.split()[1])
                break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram": f"{ram_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def machine_line() -> str:
    """One line describing the machine, for reports."""
    info = machine()
    return (f"{info['cpu']}, {info['cores']} cores, {info['ram']} RAM; "
            f"Python {info['python']}, Linux {info['kernel']}")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05) -> object:
    """Poll ``predicate`` until truthy, at most ``timeout`` seconds; raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


# /proc -------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rfind(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (None once it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process in bytes (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="utf-8") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (FileNotFoundError, ProcessLookupError):
        return None


def descendants(pid: int) -> list[int]:
    """PIDs of every live descendant of ``pid`` (read from /proc, one pass)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants."""
    return sum(cpu_seconds(p) or 0.0 for p in [pid, *descendants(pid)])


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, every process) since boot."""
    with open("/proc/stat", encoding="utf-8") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def our_cpu_seconds() -> float:
    """CPU seconds of this benchmark: itself, its reaped children and its live descendants."""
    times = os.times()
    live = sum(cpu_seconds(pid) or 0.0 for pid in descendants(os.getpid()))
    return times.user + times.system + times.children_user + times.children_system + live


class Background:
    """Measures the CPU that processes other than this benchmark's used meanwhile.

    Other people's builds and tests on the same machine steal cores and lower every
    figure; this puts a number on it (machine busy time minus ours).
    """

    def __init__(self) -> None:
        self.start_busy = machine_busy_seconds()
        self.start_ours = our_cpu_seconds()
        self.start_wall = time.monotonic()

    def seconds(self, also_ours: float = 0.0) -> float:
        """CPU seconds of other processes since the start (``also_ours``: CPU to exclude too)."""
        busy = machine_busy_seconds() - self.start_busy
        ours = our_cpu_seconds() - self.start_ours + also_ours
        return max(0.0, busy - ours)

    def cores(self, also_ours: float = 0.0) -> float:
        """Average cores other processes kept busy since the start."""
        return self.seconds(also_ours) / max(time.monotonic() - self.start_wall, 1e-6)


class Quiet:
    """Waits, before each measurement, for other processes on the machine to calm down.

    The waits of one benchmark share ``budget`` seconds, so a machine that stays busy
    delays a benchmark by that much at most. Each wait returns a sentence for the report.
    """

    def __init__(self, budget: float, threshold: float = 0.3, quiet_seconds: int = 3) -> None:
        self.budget = self.left = budget
        self.threshold = threshold
        self.quiet_seconds = quiet_seconds

    def wait(self) -> str:
        """Wait until others use under ``threshold`` cores for a few seconds, or the budget ends."""
        if self.budget <= 0:
            return "not checked (--quiet-wait 0)"
        if self.left <= 0:
            return "not checked (the --quiet-wait budget was spent)"
        quiet = 0
        busy = 0.0
        while self.left > 0:
            before = machine_busy_seconds()
            time.sleep(1.0)
            self.left -= 1.0
            busy = machine_busy_seconds() - before
            quiet = quiet + 1 if busy < self.threshold else 0
            if quiet >= self.quiet_seconds:
                return f"quiet at the start ({busy:.2f} cores busy)"
        return f"busy at the start ({busy:.2f} cores busy when the --quiet-wait budget ran out)"


# A measurement during which other processes kept this many cores busy on average is
# disturbed: it is repeated once (see ``measured``).
DISTURBED_CORES = 0.25


def measured(run: Callable[[int], T], quiet: Quiet, exclude: Callable[[T], float] = lambda _: 0.0,
             attempts: int = 2) -> tuple[T, float, str]:
    """Run ``run(attempt)`` once the machine is quiet; if other processes disturbed it,
    run it again (at most ``attempts`` in all) and keep the least disturbed.

    Returns the result, the CPU seconds other processes used during it (``exclude``
    gives CPU of the result's that is not ours but belongs to it, e.g. a broker's),
    and a sentence about the machine for the report.
    """
    best: tuple[T, float, str] | None = None
    for attempt in range(1, attempts + 1):
        calm = quiet.wait()
        background = Background()
        result = run(attempt)
        seconds = background.seconds(exclude(result))
        cores = background.cores(exclude(result))
        said = calm if attempt == 1 else f"{calm}; attempt {attempt}, the first was disturbed"
        if best is None or seconds < best[1]:
            best = (result, seconds, said)
        if cores < DISTURBED_CORES:
            break
        print(f"  (other work kept {cores:.2f} cores busy meanwhile: disturbed)", flush=True)
    assert best is not None
    return best


class RssSampler:
    """Samples the RSS of some PIDs every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.05,
                 max_seconds: float = 900.0) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.max_seconds = max_seconds
        self.peak: dict[str, int] = dict.fromkeys(self.pids, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            for name, pid in self.pids.items():
                rss = rss_bytes(pid)
                if rss is not None and rss > self.peak[name]:
                    self.peak[name] = rss
            self.samples += 1
            self._stop.wait(self.interval)


# Child processes ----------------------------------------------------------------------

_STARTED: list[Proc] = []


class Proc:
    """A child process of a benchmark: started in its own session, stopped by its PID.

    ``cpu()`` is the CPU seconds of the process (and its descendants with ``tree``)
    while it lives, and its exact total from ``os.wait4`` once it has exited;
    ``exit_maxrss`` is then the kernel's peak RSS of it (or of its largest reaped
    descendant) in bytes.
    ``mark()`` takes a baseline that ``cpu_since_mark()`` subtracts.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path,
                 log_path: Path, tree: bool = False) -> None:
        self.name = name
        self.argv = list(argv)
        self.tree = tree
        self.log_path = log_path
        self.started = time.time()
        self.started_monotonic = time.monotonic()
        self.returncode: int | None = None
        self.exit_cpu: float | None = None
        self.exit_maxrss: int | None = None
        self.exited_monotonic: float | None = None
        self.baseline = 0.0
        self.last_cpu = 0.0
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        _STARTED.append(self)

    @property
    def pid(self) -> int:
        """The child's PID."""
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit status once the child has ended (reaped with ``wait4``), else None."""
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.returncode = self.popen.returncode if self.popen.returncode is not None else -1
            self.exited_monotonic = time.monotonic()
            return self.returncode
        if pid == 0:
            return None
        self.exited_monotonic = time.monotonic()
        self.exit_cpu = usage.ru_utime + usage.ru_stime
        self.exit_maxrss = usage.ru_maxrss * 1024  # Linux gives KiB
        self.returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode
        return self.returncode

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the child to exit; raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                return code
            time.sleep(0.01)
        raise TimeoutError(f"{self.name} (pid {self.pid}) still running after {timeout:g}s")

    def cpu(self) -> float:
        """CPU seconds used so far (the exact total once exited and reaped)."""
        if self.poll() is not None:
            if self.exit_cpu is not None:
                return self.exit_cpu
            return self.last_cpu
        value = tree_cpu_seconds(self.pid) if self.tree else cpu_seconds(self.pid)
        if value is not None:
            self.last_cpu = value
        return self.last_cpu

    def mark(self) -> None:
        """Take the CPU baseline that ``cpu_since_mark`` subtracts."""
        self.baseline = self.cpu()

    def cpu_since_mark(self) -> float:
        """CPU seconds since ``mark()`` (since start if never marked)."""
        return self.cpu() - self.baseline

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``, wait up to ``timeout``, then SIGKILL (its descendants too, by PID)."""
        if self.poll() is not None:
            if self in _STARTED:
                _STARTED.remove(self)
            return self.returncode or 0
        family = descendants(self.pid)
        self.cpu()
        try:
            os.kill(self.pid, sig)
            return self.wait(timeout)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            return self.wait(10)
        finally:
            for pid in family:
                if cpu_seconds(pid) is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # it exited between the check and the kill
            if self in _STARTED:
                _STARTED.remove(self)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the child's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"


def stop_all(procs: Iterable[Proc] | None = None) -> None:
    """Stop the given children (default: every child still tracked), last started first."""
    for proc in reversed(list(_STARTED if procs is None else procs)):
        proc.stop()


def _stop_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _stop_on_signal)


def plugins_off() -> dict[str, str]:
    """Settings that leave out every third-party fetch middleware and fare pipeline stage
    installed here (the test suite's example plugin, say), so voe is measured as released."""
    off = {}
    for group, setting in (("voe.fetch_middlewares", "VOE_FETCH_MIDDLEWARES"),
                           ("voe.fare_pipelines", "VOE_FARE_PIPELINES")):
        paths = sorted(entry.value for entry in entry_points(group=group))
        if paths:
            off[setting] = ",".join(f"{path}=none" for path in paths)
    return off


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any VOE_* (or .env-style) voe setting, with third-party
    voe plugins left out (``plugins_off``), plus ``extra``."""
    names = {"MASTER_IP", "SINK_IP"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOE_") and k not in names}
    env.update(plugins_off())
    env.update(extra)
    return env


# voe roles -----------------------------------------------------------------------------


class VoeCluster:
    """voe's roles as real processes in one data dir, on free loopback ports."""

    def __init__(self, tmp: Path, airline_url: str = "http://127.0.0.1:9",
                 **settings: str) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = clean_env(
            VOE_DATA_DIR=str(self.data_dir),
            VOE_JOBS_PORT=str(free_port()),
            VOE_CONTROL_PORT=str(free_port()),
            VOE_RESULTS_PORT=str(free_port()),
            VOE_HTTP_PORT=str(free_port()),  # the master's, so two runs never collide
            VOE_SINK_HTTP_PORT=str(free_port()),
            VOE_DEMO_AIRLINE_URL=airline_url,
            **settings,
        )
        self.procs: list[Proc] = []
        self.curve = self._init_keys()

    def _init_keys(self) -> bool:
        """Make the cluster's CURVE keys (``voe keys init``) when this voe has them.

        voe encrypts every socket by default once it has the ``keys`` command; the
        benchmarks measure it as shipped. An older voe without the command needs none.
        """
        done = subprocess.run([sys.executable, "-m", "voe", "keys", "init"], env=self.env,
                              cwd=self.tmp, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return True
        if "invalid choice" in done.stderr:
            return False
        raise RuntimeError(f"voe keys init failed ({done.returncode}): {done.stderr.strip()}")

    def spawn(self, name: str, argv: Sequence[str]) -> Proc:
        """Start one process with this cluster's environment."""
        proc = Proc(name, argv, self.env, self.tmp, self.tmp / f"{name}.out")
        self.procs.append(proc)
        return proc

    def voe(self, name: str, *args: str) -> Proc:
        """Start ``python -m voe ARGS``."""
        return self.spawn(name, [sys.executable, "-m", "voe", *args])

    def sink(self) -> Proc:
        """Start the sink."""
        return self.voe("sink", "sink", "--no-console")

    def worker(self, name: str, concurrency: int | None = None, prefetch: int | None = None,
               probe: bool = False) -> Proc:
        """Start a worker (``probe``: one that notes when it receives its first job)."""
        args = ["worker", "--no-console", "--name", name]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        if probe:
            return self.spawn(name, [sys.executable, str(BENCH / "probe_worker.py"),
                                     str(self.first_job_file(name)), *args])
        return self.voe(name, *args)

    def first_job_file(self, name: str) -> Path:
        """Where a probe worker writes the time (epoch seconds) of its first job."""
        return self.tmp / f"{name}.first-job"

    def master(self, plan: Path, once: bool = True) -> Proc:
        """Start the master on ``plan``."""
        return self.voe("master", "master", "--no-console", "--plan", str(plan),
                        *(["--once"] if once else []))

    def wait_log(self, role: str, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``<role>.log`` in the data dir holds ``needle`` ``count`` times."""
        log = self.data_dir / f"{role}.log"

        def found() -> bool:
            text = log.read_text(errors="replace") if log.exists() else ""
            return text.count(needle) >= count

        wait_until(found, timeout, f"{count} x {needle!r} in {log.name}")

    def ledger_states(self) -> dict[str, int]:
        """Jobs by state in the ledger."""
        with sqlite3.connect(self.data_dir / "ledger.db") as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def store_counts(self) -> tuple[int, int]:
        """(results stored, fares stored) in fares.db."""
        with sqlite3.connect(self.data_dir / "fares.db") as db:
            results = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
        return results, fares

    def last_stored_at(self) -> float:
        """Epoch time of the last result the sink stored."""
        with sqlite3.connect(self.data_dir / "fares.db") as db:
            return float(db.execute("SELECT MAX(stored_at) FROM results").fetchone()[0] or 0)

    def stop(self) -> None:
        """Stop every process of this cluster, workers first."""
        stop_all(self.procs)
        self.procs.clear()


def start_airline(tmp: Path, latency_ms: int, flights: int | None = None) -> tuple[Proc, str]:
    """Start ``voe demo-airline`` on a free port; return it and its base URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "voe", "demo-airline", "--port", str(port),
            "--latency-ms", str(latency_ms)]
    if flights is not None:
        args += ["--flights", str(flights)]
    proc = Proc("airline", args, clean_env(), tmp, tmp / "airline.out")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo airline exited:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url + "/stats", timeout=1):
                return True
        except OSError:
            return False

    wait_until(answers, 20, "the demo airline to answer")
    return proc, url


def api_fares(url: str, origin: str, destination: str, date: str) -> list[tuple[str, ...]]:
    """The demo airline's JSON fares of one search, as sorted tuples."""
    query = f"/api/search?origin={origin}&destination={destination}&date={date}"
    with urllib.request.urlopen(url + query, timeout=10) as answer:
        fares = json.load(answer)["fares"]
    return sorted((f["flight"], f["departure"], f["arrival"], f["price"], f["currency"])
                  for f in fares)


# Profiles ------------------------------------------------------------------------------


def start_profiler(target: Proc, out: Path, rate: int = 200) -> Proc | None:
    """Attach ``py-spy record`` to ``target`` (raw collapsed stacks in ``out``); None if absent."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    out.with_suffix(".pid").write_text(str(target.pid), encoding="utf-8")
    return Proc(f"py-spy-{target.name}",
                [spy, "record", "--pid", str(target.pid), "--rate", str(rate), "--threads",
                 "--format", "raw", "-o", str(out)],
                dict(os.environ), out.parent, out.with_suffix(".log"))


def stop_profiler(profiler: Proc | None) -> None:
    """Make py-spy write its samples (SIGINT) and wait for it."""
    if profiler is not None:
        profiler.stop(timeout=30, sig=signal.SIGINT)


def profile_summary(path: Path, top: int = 8) -> str:
    """The functions with most samples in the main thread: self and inclusive shares.

    Only the main thread counts (voe's roles run there, greenlets included): helper
    threads such as gevent's resolver pool wait in ways py-spy may not see as idle.
    """
    if not path.exists():
        return "(no profile written)"
    main = f"thread ({path.with_suffix('.pid').read_text().strip()})"
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        thread, _, stack = stack.partition(";")
        if thread.partition(":")[0] != main or not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "(no samples)"
    ranked = sorted(own.items(), key=lambda item: item[1], reverse=True)[:top]
    rows = [(f"`{name}`", f"{100 * count / total:.1f}%", f"{100 * inclusive[name] / total:.1f}%")
            for name, count in ranked]
    return f"{total} samples\n\n" + table(("function (file)", "self", "inclusive"), rows)


def _function(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(where).name})" if where else name


# Plans ---------------------------------------------------------------------------------


def plan_shape(jobs: int, max_airports: int | None = None,
               most_dates: int = MAX_DAYS) -> tuple[int, int, int]:
    """(dates, airports, blocked pairs) of a plan with exactly ``jobs`` jobs.

    Jobs are dates x (airports x (airports - 1) - blocked), with at most
    ``most_dates`` dates. Prefers many dates and few airports. ``ValueError`` if
    no shape fits (only possible with ``max_airports``).
    """
    if jobs < 1:
        raise ValueError("a plan needs at least one job")
    most_pairs = max_airports * (max_airports - 1) if max_airports else jobs
    for dates in range(min(jobs, most_dates, MAX_DAYS), 0, -1):
        if jobs % dates:
            continue
        pairs = jobs // dates
        if pairs > most_pairs:
            break
        airports = max(2, math.ceil((1 + math.sqrt(1 + 4 * pairs)) / 2))
        while airports * (airports - 1) < pairs:
            airports += 1
        return dates, airports, airports * (airports - 1) - pairs
    raise ValueError(f"no plan with exactly {jobs} jobs fits {max_airports} airports "
                     f"and {MAX_DAYS} dates; try a round number")


def write_plan(path: Path, jobs: int, backend: str, airports: Sequence[str] | None = None,
               lease_seconds: int = 60, most_dates: int = MAX_DAYS) -> int:
    """Write a one-way plan of exactly ``jobs`` jobs for ``backend``; return ``jobs``.

    ``airports`` are the codes to use (the demo airline's, say); by default codes
    ``A000``, ``A001``... are made up (the null backend accepts any code).
    """
    dates, count, excess = plan_shape(jobs, len(airports) if airports else None, most_dates)
    codes = list(airports[:count]) if airports else [f"A{i:03d}" for i in range(count)]
    pairs = [(a, b) for a in codes for b in codes if a != b]
    blocked = pairs[len(pairs) - excess:] if excess else []
    path.write_text(
        "[plan]\n"
        f'name = "bench-{backend}-{jobs}"\n'
        'cycle = "once"\n'
        "max_attempts = 3\n"
        f"lease_seconds = {lease_seconds}\n\n"
        "[dates]\n"
        "start_in_days = 1\n"
        f"days_ahead = {dates}\n"
        "step_days = 1\n\n"
        "[[routes]]\n"
        f'backend = "{backend}"\n'
        f"airports = {json.dumps(codes)}\n"
        f"blocked = {json.dumps([list(pair) for pair in blocked])}\n",
        encoding="utf-8")
    return jobs


def plan_jobs(path: Path) -> list[tuple[str, str, str]]:
    """(origin, destination, date) of every job of a plan, in the master's order."""
    from voe.master.plan import load_plan

    plan = load_plan(path)
    return [(job.origin, job.destination, job.date)
            for job in plan.jobs(1, dt.date.today())]


# Report --------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary directory for one benchmark run, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=f"voe-bench-{prefix}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def common_args(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark takes."""
    parser.add_argument("--no-record", action="store_true",
                        help="print the figures but do not append them to BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (data dirs, logs) and print it")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="wait up to this many seconds for other processes on the machine "
                             "to calm down before measuring (60; 0 = do not wait)")


def ratio(value: float | None, peer: float | None) -> str:
    """``value / peer`` as ``1.23x``, or ``n/a``."""
    if value is None or peer is None or peer == 0:
        return "n/a"
    return f"{value / peer:.2f}x"


def fmt(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or ``n/a``."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The exact command that is running, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def revision() -> str:
    """The voe revision measured: commit, and whether voe/ had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "voe"], cwd=REPO,
                               text=True, capture_output=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"
    return f"commit {commit}" + (" plus uncommitted changes in voe/" if dirty else "")


def record(title: str, body: str, no_record: bool) -> str:
    """Print a report section and, unless ``no_record``, append it to BENCHMARKS.md."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## {title} ({now})\n\n"
               f"- Machine: {machine_line()}\n"
               f"- voe: {revision()}\n"
               f"- Command: `{command_line()}`\n\n"
               f"{body.strip()}\n")
    print(section)
    if not no_record:
        if not BENCHMARKS_MD.exists():
            BENCHMARKS_MD.write_text(_HEADER, encoding="utf-8")
        with open(BENCHMARKS_MD, "a", encoding="utf-8") as out:
            out.write(section)
        print(f"(appended to {BENCHMARKS_MD})")
    return section


def verdict(ok: bool) -> str:
    """``met`` or ``MISSED``."""
    return "met" if ok else "MISSED"
