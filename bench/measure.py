"""CPU and memory of processes (psutil), and measurements on a quiet machine.

Other people's builds and tests on the same machine steal cores and lower every
figure: ``Quiet`` waits for the machine to calm down before a measurement,
``Background`` puts a number on what others used during it, and ``measured`` repeats
a disturbed measurement once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import psutil
from machine import machine_busy_seconds

T = TypeVar("T")

# A measurement during which other processes kept this many cores busy on average is
# disturbed: it is repeated once (see ``measured``).
DISTURBED_CORES = 0.25


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (None once it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return None
    return times.user + times.system


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process in bytes (None once it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.NoSuchProcess:
        return None


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (none once it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def our_cpu_seconds() -> float:
    """CPU seconds of this benchmark: itself, its reaped children and its live descendants."""
    times = os.times()
    live = sum(cpu_seconds(child.pid) or 0.0 for child in descendants(os.getpid()))
    return times.user + times.system + times.children_user + times.children_system + live


class Background:
    """Measures the CPU that processes other than this benchmark's used meanwhile
    (the machine's busy time minus ours)."""

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
