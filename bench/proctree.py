"""CPU seconds and peak memory of a whole process tree (a peer and every browser process it starts).

A browser peer is many processes: the Python process, Playwright's Node driver,
Chromium's browser, zygotes, GPU, network and renderer processes, some of which
come and go during a crawl. ``TreeMeter`` accounts for all of them with psutil:

- CPU, exact: each process's own user + system time plus its ``children_user`` +
  ``children_system``, which Linux adds to a process when it reaps (waits for) an
  exited child, that child's own reaped children included. Summed over the live tree,
  this counts every process that ever ran in the tree and was reaped inside it, however
  short-lived, and counts none twice (a live child is not yet in its parent's children
  times). The figure is the sum at the end of the window minus the sum at its start.
- CPU, sampled: a thread walks the tree every ``interval`` seconds and keeps the last
  own CPU seen of each process (by PID and start time). The sum is a lower bound that
  misses only a process's last ``interval``; it would expose processes the exact sum
  loses (an orphan reaped outside the tree). The larger of the two is the figure used.
- Memory: RSS summed over the tree at each sample, the peak kept. Shared pages (the
  browser's libraries) count once per process that maps them, the same rule for every
  peer. PSS (proportional set size: a shared page split between the processes that map
  it) is summed too, every ``pss_every`` samples only (reading ``smaps_rollup`` costs
  about 2 ms a process): it is what the tree adds to the machine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil

# Process names that are the browser (Debian's Chromium, Playwright's headless shell).
BROWSER_NAMES = ("chrom", "headless_shell")

Key = tuple[int, float]


@dataclass(frozen=True)
class TreeUsage:
    """What a process tree used over a window: CPU seconds (exact and sampled), peak RSS."""

    cpu: float
    cpu_exact: float
    cpu_sampled: float
    peak_rss: int
    peak_pss: int
    processes: int
    browser_processes: int
    samples: int
    by_kind: tuple[tuple[str, float], ...] = ()

    def describe(self) -> str:
        """One sentence on how the figures were taken, for the report's checks."""
        return (f"process tree: {self.processes} processes seen ({self.browser_processes} "
                f"Chromium), {self.samples:,} samples; CPU {self.cpu_exact:.2f} s from the "
                f"kernel's reaped-children accounting, {self.cpu_sampled:.2f} s summed from "
                f"samples" + (f" ({', '.join(f'{kind} {cpu:.1f}' for kind, cpu in self.by_kind)})"
                              if self.by_kind else ""))


def kind(pid: int) -> str:
    """What a process of the tree is, for the CPU by kind: Chromium's ``--type`` (the
    browser process has none), else its name, with the Python module it runs."""
    try:
        process = psutil.Process(pid)
        command = process.cmdline()
        name = process.name()
    except psutil.Error:
        return "gone"
    if any(part in name.lower() for part in BROWSER_NAMES):
        types = [arg.split("=", 1)[1] for arg in command if arg.startswith("--type=")]
        return f"chromium {types[0] if types else 'browser'}"
    if "-m" in command[:-1]:
        return f"{name} -m {command[command.index('-m') + 1]}"
    return name


@dataclass
class Seen:
    """One process as last sampled."""

    name: str
    own: float
    inclusive: float
    rss: int
    pss: int


def _read(process: psutil.Process, pss: bool) -> Seen | None:
    """Own CPU, CPU including reaped children, RSS (and PSS) of one process; None once gone."""
    try:
        with process.oneshot():
            times = process.cpu_times()
            name = process.name()
            try:
                rss = process.memory_info().rss
                proportional = process.memory_full_info().pss if pss else 0
            except psutil.ZombieProcess:
                rss = proportional = 0  # an exited child not yet reaped holds no memory
    except psutil.NoSuchProcess:
        return None  # gone between the listing and the read: its parent's children times have it
    own = times.user + times.system
    return Seen(name, own, own + times.children_user + times.children_system, rss,
                proportional)


def read_tree(root: psutil.Process, pss: bool = False) -> dict[Key, Seen]:
    """Every live process of the tree under ``root``, read now (``pss``: with its PSS),
    by (PID, start time); ``RuntimeError`` once ``root`` has exited."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        raise RuntimeError(f"pid {root.pid} exited before its tree was measured") from None
    found = {}
    for process in processes:
        seen = _read(process, pss)
        if seen is not None:
            found[(process.pid, process.create_time())] = seen
    return found


class TreeMeter:
    """Measures the process tree under ``root_pid`` between ``mark()`` and ``end()``."""

    def __init__(self, root_pid: int, interval: float = 0.05, pss_every: int = 10) -> None:
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.pss_every = pss_every
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-meter", daemon=True)
        self._baseline: dict[Key, float] | None = None
        self._exact_start = 0.0
        self._last: dict[Key, Seen] = {}
        self._peak_rss = 0
        self._peak_pss = 0
        self._samples = 0
        self._kinds: dict[Key, str] = {}
        self._error: RuntimeError | None = None

    def _sample(self, pss: bool = False) -> dict[Key, Seen]:
        """Read the tree and fold it into the window's figures (caller holds the lock)."""
        pss = pss or self._samples % self.pss_every == 0
        tree = read_tree(self.root, pss)
        self._last.update(tree)
        for key in tree.keys() - self._kinds.keys():
            self._kinds[key] = kind(key[0])
        self._peak_rss = max(self._peak_rss, sum(seen.rss for seen in tree.values()))
        if pss:
            self._peak_pss = max(self._peak_pss, sum(seen.pss for seen in tree.values()))
        self._samples += 1
        return tree

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                try:
                    self._sample()
                except RuntimeError as error:  # the root exited: end() reports it
                    self._error = error
                    return
            self._stop.wait(self.interval)

    def mark(self) -> None:
        """Start the window: take the baseline and start sampling."""
        with self._lock:
            tree = self._sample(pss=True)
            self._baseline = {key: seen.own for key, seen in tree.items()}
            self._exact_start = sum(seen.inclusive for seen in tree.values())
        self._thread.start()

    def end(self) -> TreeUsage:
        """End the window (the root must still run) and return what the tree used in it."""
        if self._baseline is None:
            raise RuntimeError("TreeMeter.end() before mark()")
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            if self._error is not None:
                raise self._error
            tree = self._sample(pss=True)
            exact = sum(seen.inclusive for seen in tree.values()) - self._exact_start
            sampled = sum(seen.own - self._baseline.get(key, 0.0)
                          for key, seen in self._last.items())
            browsers = sum(1 for seen in self._last.values()
                           if any(name in seen.name.lower() for name in BROWSER_NAMES))
            kinds: dict[str, float] = {}
            for key, seen in self._last.items():
                label = self._kinds.get(key, "gone")
                kinds[label] = kinds.get(label, 0.0) + seen.own - self._baseline.get(key, 0.0)
            by_kind = tuple(sorted(kinds.items(), key=lambda item: -item[1]))
            return TreeUsage(max(exact, sampled), exact, sampled, self._peak_rss,
                             self._peak_pss, len(self._last), browsers, self._samples, by_kind)

