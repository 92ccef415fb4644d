"""Child processes of the benchmarks: started in their own session, measured, stopped by PID.

CPU seconds and RSS of a live child come from psutil; once the child has exited,
``os.wait4`` gives its exact CPU total and the kernel's peak RSS of it.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import psutil
from measure import cpu_seconds, descendants
from proctree import Key, read_tree

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Seconds a child gets after SIGTERM before SIGKILL.
STOP_TIMEOUT = 15.0

_STARTED: list[Proc] = []


class Proc:
    """A child process of a benchmark: started in its own session, stopped by its PID.

    ``cpu()`` is the CPU seconds of the process while it lives, and its exact total
    from ``os.wait4`` once it has exited; ``exit_maxrss`` is then the kernel's peak
    RSS of it (or of its largest reaped descendant) in bytes. With ``tree`` the CPU
    is its whole process tree's, counted as bench/proctree.py does: each live
    process's own time plus its reaped children's, or, when larger, the last CPU seen
    of every process ever seen in the tree (so one reparented away still counts).
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
        self._seen: dict[Key, float] = {}
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
                return max(self.exit_cpu, self.last_cpu)
            return self.last_cpu
        value = self._tree_cpu() if self.tree else cpu_seconds(self.pid)
        if value is not None:
            self.last_cpu = value
        return self.last_cpu

    def _tree_cpu(self) -> float | None:
        """CPU seconds of the process tree now (None once the process is gone)."""
        try:
            tree = read_tree(psutil.Process(self.pid))
        except (RuntimeError, psutil.NoSuchProcess):
            return None
        self._seen.update((key, seen.own) for key, seen in tree.items())
        exact = sum(seen.inclusive for seen in tree.values())
        return max(exact, sum(self._seen.values()))

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
        except ProcessLookupError:  # it exited between the poll and the signal (py-spy
            return self.wait(timeout)  # stops by itself once its target has exited)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            return self.wait(10)
        finally:
            for process in family:
                try:
                    process.kill()  # psutil checks first that the PID is still this process
                except psutil.NoSuchProcess:
                    pass  # it exited meanwhile
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
    """Settings that leave out every third-party fetch middleware, fare pipeline stage and
    master middleware installed here (the test suite's example plugin, say), so voe is
    measured as released."""
    off = {}
    for group, setting in (("voe.fetch_middlewares", "VOE_FETCH_MIDDLEWARES"),
                           ("voe.fare_pipelines", "VOE_FARE_PIPELINES"),
                           ("voe.master_middlewares", "VOE_MASTER_MIDDLEWARES")):
        paths = sorted(entry.value for entry in entry_points(group=group))
        if paths:
            off[setting] = ",".join(f"{path}=none" for path in paths)
    return off


BYTE_COMPILED_NOTE = (
    "voe's modules and the benchmarks' were byte-compiled first, as installing a package does "
    "(each process loads them compiled, voe's and raw pyzmq's alike).")


def byte_compile_voe() -> None:
    """Byte-compile voe's modules (and the benchmarks'), as installing a package does, so
    every process started loads them instead of compiling them (with
    ``PYTHONDONTWRITEBYTECODE`` set, as here, an editable install never keeps its
    bytecode). ``report.workdir`` calls it: every benchmark measures compiled modules."""
    import compileall

    import voe

    for folder in (Path(voe.__file__).parent, BENCH):
        compileall.compile_dir(folder, quiet=1)


def plugins_note() -> str:
    """What a record says of the third-party plugins installed here (``plugins_off``)."""
    off = plugins_off()
    if not off:
        return "Third-party voe plugins installed: none."
    return ("Third-party voe plugins installed here were left out of voe's roles "
            "(bench/procs.py, plugins_off): " + "; ".join(f"{setting}={value}"
                                                         for setting, value in off.items()))


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any VOE_* (or .env-style) voe setting, with third-party
    voe plugins left out (``plugins_off``), plus ``extra``."""
    names = {"MASTER_IP", "SINK_IP"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOE_") and k not in names}
    env.update(plugins_off())
    env.update(extra)
    return env


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
