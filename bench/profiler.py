"""Profiles of a benchmark child with py-spy, and their summary for the report."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from procs import Proc
from report import table


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
