"""What every benchmark shares around its measurement: options, a work directory, the
report's tables and figures, and its record in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from machine import machine_line
from procs import REPO, byte_compile_voe

BENCHMARKS_MD = REPO / "BENCHMARKS.md"

_HEADER = """# Benchmarks

Each section below was appended by one benchmark command (`python bench/NAME.py`),
with the machine, the date, the exact command and every figure next to its peer.
Smoke runs (`tests/test_bench_smoke.py`) pass `--no-record` and leave nothing here.
"""


@contextlib.contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary directory for one benchmark run, removed afterwards unless ``keep``;
    voe's modules are byte-compiled first (``procs.byte_compile_voe``)."""
    byte_compile_voe()
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


def verdict(ok: bool) -> str:
    """``met`` or ``MISSED``."""
    return "met" if ok else "MISSED"


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

