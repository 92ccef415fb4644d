"""The worker's C allocator: jemalloc where it is installed, glibc's malloc otherwise.

A worker parses hundreds of pages a second, and libxml2 builds each page's tree out of
thousands of small ``malloc`` blocks that it frees all at once. glibc's malloc sorts
such a heap of freed blocks on a later call (whichever code calls next pays: a regular
expression took 50 µs instead of 0.6 right after a page was freed), and in all costs
about a tenth of the worker's CPU per page more than jemalloc (measured with
``bench/scrape_inprocess.py``: 1,830 -> 1,640 µs per demo-airline page). The master and
the sink allocate mostly through Python's own allocator and gain nothing from it.

An allocator is chosen when the process starts (``LD_PRELOAD``), so a worker started
without jemalloc executes itself again, once, with it preloaded: same PID, same
arguments, same open standard streams. The re-executed worker unsets ``LD_PRELOAD``
again, so the processes it starts (a browser host, Chromium) keep their own allocator.
Linux only; elsewhere, with ``VOE_WORKER_MALLOC=system``, or when ``LD_PRELOAD`` already
names libraries of the user's (preloads can clash: jemalloc and libfaketime call each
other at start and hang), nothing changes.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("voe.worker")

JEMALLOC = "libjemalloc.so.2"
# Set in the re-executed worker's environment, beside the LD_PRELOAD it added.
_RESTARTED = "VOE_RESTARTED_ON_JEMALLOC"


def jemalloc_path() -> Path | None:
    """Where jemalloc's shared library is installed (Debian's libjemalloc2), or None."""
    multiarch = getattr(sys.implementation, "_multiarch", "")
    folders = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    folders += ["/usr/lib64", "/usr/lib", "/usr/local/lib"]
    for folder in folders:
        path = Path(folder) / JEMALLOC
        if path.is_file():
            return path
    return None


def running_on_jemalloc() -> bool:
    """Whether jemalloc is mapped into this process (Linux's /proc; False elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libjemalloc" in maps


def use(choice: str) -> None:
    """Run on ``choice`` ("jemalloc" or "system"): re-execute this process with jemalloc
    preloaded when it is wanted, installed and not loaded yet; in the re-executed process,
    unset ``LD_PRELOAD`` again for the children. Returns when no re-execution happens."""
    if os.environ.pop(_RESTARTED, None) is not None:  # the second start
        os.environ.pop("LD_PRELOAD", None)
        return
    if (choice != "jemalloc" or not sys.platform.startswith("linux")
            or os.environ.get("LD_PRELOAD", "").strip() or running_on_jemalloc()):
        return
    path = jemalloc_path()
    if path is None:
        return
    env = {**os.environ, _RESTARTED: "1", "LD_PRELOAD": str(path)}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as error:
        log.warning("could not restart the worker on jemalloc (%s); staying on the system "
                    "allocator", error)


def describe(choice: str) -> str:
    """A line for the worker's log: the allocator it runs on, and why."""
    if running_on_jemalloc():
        return "allocator: jemalloc"
    if choice != "jemalloc":
        return "allocator: the system's (VOE_WORKER_MALLOC=system)"
    if os.environ.get("LD_PRELOAD", "").strip():
        return "allocator: the system's (LD_PRELOAD is set: the preloads are left as they are)"
    if jemalloc_path() is None:
        return ("allocator: the system's; installing jemalloc (Debian: apt install "
                "libjemalloc2) saves about a tenth of the CPU per parsed page")
    return "allocator: the system's (jemalloc could not be preloaded)"
