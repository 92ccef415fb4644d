"""The benchmarks in bench/ still run: each one at a tiny size, recording nothing.

The real runs are long and stay out of the test suite; these only check that every
benchmark command works end to end (processes start, figures print, checks pass).
A peer that is not installed here (Celery, Scrapy) or whose broker does not answer
(RabbitMQ, PostgreSQL) is skipped with the reason; voe's part runs regardless. The browser
benchmark, whose figures are ratios of voe to scrapy-playwright in one run, is
skipped whole without Chromium, scrapy-playwright or psutil. Every benchmark measures
its processes with psutil (in the `test` extra as in the `bench` one).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RUN_TIMEOUT = 120


def _answers(port: int) -> bool:
    """Whether a server listens on 127.0.0.1:``port`` (RabbitMQ, PostgreSQL)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_bench(script: str, *args: str) -> str:
    """Run ``python bench/SCRIPT ARGS`` without recording or waiting; return its output.

    BENCHMARKS.md must be left as it was.
    """
    before = BENCHMARKS_MD.read_bytes() if BENCHMARKS_MD.exists() else None
    command = [sys.executable, f"bench/{script}", "--no-record", "--quiet-wait", "0", *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = BENCHMARKS_MD.read_bytes() if BENCHMARKS_MD.exists() else None
    assert before == after, "--no-record must leave BENCHMARKS.md alone"
    assert "- Command: `python bench/" in result.stdout
    return result.stdout


def test_pipeline_voe_and_raw_pyzmq():
    out = run_bench("pipeline.py", "--n", "200", "--skip", "celery", "--tuned-prefetch", "0")
    assert "| voe | 200 |" in out
    assert "| raw pyzmq | 200 |" in out
    assert "voe >= 0.6 x raw pyzmq" in out


def test_pipeline_celery():
    if not _installed("celery"):
        pytest.skip("Celery is not installed (pip install -e '.[bench]')")
    if not _answers(5672):
        pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672")
    out = run_bench("pipeline.py", "--n", "200", "--skip", "voe", "--skip", "raw",
                    "--no-start-rabbitmq")
    assert "| Celery | 200 |" in out


def test_scrape_voe_and_bare_loop():
    out = run_bench("scrape.py", "--pages", "50", "--skip", "scrapy", "--rounds", "2")
    assert "| voe worker | 50 |" in out
    assert "| bare loop | 50 |" in out
    assert "sampled pages equal /api/search" in out
    # Two rounds: each peer's runs side by side, and the targets judged on the rounds' ratios.
    assert "round by round" in out and "| 2 |" in out
    assert "voe worker, round 2:" in out and "bare loop (pages per CPU-s):" in out
    assert "(rounds: " in out


def test_scrape_scrapy():
    if not _installed("scrapy"):
        pytest.skip("Scrapy is not installed (pip install -e '.[bench]')")
    out = run_bench("scrape.py", "--pages", "50", "--skip", "voe", "--skip", "bare",
                    "--rounds", "1")
    assert "| Scrapy | 50 |" in out


def test_proctree_counts_a_child_that_exits_unseen(tmp_path, monkeypatch):
    """The tree meter counts a child that burned CPU and exited between two samples."""
    if not _installed("psutil"):
        pytest.skip("psutil is not installed (pip install -e '.[bench]')")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    proctree = importlib.import_module("proctree")
    done = tmp_path / "done"
    burn = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    script = ("import pathlib, subprocess, sys, time\n"
              "time.sleep(1.0)\n"
              f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
              f"pathlib.Path({str(done)!r}).touch()\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        meter = proctree.TreeMeter(parent.pid, interval=600)  # one sample, before the child
        meter.mark()
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        usage = meter.end()
    finally:
        parent.kill()
        parent.wait()
    assert done.exists()
    assert usage.processes == 1  # the child was never sampled...
    assert usage.cpu_sampled < 0.5
    assert usage.cpu_exact >= 0.5  # ...but its CPU reached the parent when it was reaped
    assert usage.cpu == usage.cpu_exact
    assert usage.peak_rss > 0 and usage.peak_pss > 0


def test_browser():
    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    for module, package in (("scrapy_playwright", "scrapy-playwright"), ("psutil", "psutil")):
        if not _installed(module):
            pytest.skip(f"{package} is not installed (pip install -e '.[bench]')")
    out = run_bench("browser.py", "--pages", "8", "--concurrency", "2")
    assert "| voe worker | 8 |" in out
    assert "| scrapy-playwright | 8 |" in out
    assert out.count("8 sampled pages equal /api/search") == 2
    assert out.count("Chromium), ") == 2
    assert ">= 2 x scrapy-playwright (pages per CPU-s):" in out
    assert "less peak memory than scrapy-playwright:" in out


def test_scale():
    out = run_bench("scale.py", "--jobs", "2000", "--window", "1", "--n", "300",
                    "--workers", "1,2")
    assert "time to first job received by a worker" in out
    assert "master peak RSS" in out
    assert "Bend:" in out


def test_e2e():
    out = run_bench("e2e.py")
    assert "time to first stored fare" in out
    assert "fares stored per second" in out


def test_freshness(tmp_path):
    """The schedulers' benchmark at a toy size: 36 searches, two simulated days in 12 s."""
    out = run_bench("freshness.py", "--dates", "6", "--days", "2", "--budget", "20",
                    "--speed", "14400", "--plot", str(tmp_path / "chart.svg"))
    for scheduler in ("cycle", "ttl", "adaptive", "freshness"):
        assert f"| {scheduler} | " in out
    assert "freshness vs cycle:" in out and "searches spent" in out
    assert (tmp_path / "chart.svg").read_text().count("<polyline") == 4


def test_scrape_inprocess():
    """The in-process harness (a worker's search path, no master or sink) runs and reports."""
    command = [sys.executable, "bench/scrape_inprocess.py", "--pages", "20", "--warmup", "10",
               "--concurrency", "10", "--latency-ms", "0", "--flights", "5"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "median:" in result.stdout and "CPU per page" in result.stdout


def test_export_sqlite():
    out = run_bench("export.py", "--fares", "2000", "--skip", "postgres")
    assert "| SQLite | 2,000 |" in out
    assert "2,000 data lines + header" in out
    assert "from SQLite under 150 MB RSS:" in out


def test_export_postgres():
    if not _installed("psycopg"):
        pytest.skip("psycopg is not installed (voe[postgres])")
    if not _answers(5432):
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432")
    out = run_bench("export.py", "--fares", "2000", "--skip", "sqlite", "--format", "jsonl")
    assert "| PostgreSQL | 2,000 |" in out
    assert "PostgreSQL.jsonl: 2,000 data lines," in out
    assert "from PostgreSQL under 150 MB RSS:" in out


def test_proc_tree_keeps_the_cpu_of_a_descendant_reparented_away(tmp_path):
    """A tree ``Proc`` (bench/procs.py) still counts a grandchild that burned CPU once it
    was seen, after its parent exited and left it to another reaper."""
    if not _installed("psutil"):
        pytest.skip("psutil is not installed (pip install -e '.[bench]')")
    burn = ("import os, pathlib, time\n"
            f"pathlib.Path({str(tmp_path / 'grandchild')!r}).write_text(str(os.getpid()))\n"
            "end = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"
            f"pathlib.Path({str(tmp_path / 'burned')!r}).touch()\ntime.sleep(60)\n")
    child = ("import pathlib, subprocess, sys, time\n"
             f"subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
             f"while not pathlib.Path({str(tmp_path / 'go')!r}).exists(): time.sleep(0.01)\n")
    script = ("import pathlib, sys, time\n"
              f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
              "from procs import Proc\n"
              f"tmp = pathlib.Path({str(tmp_path)!r})\n"
              f"proc = Proc('child', [sys.executable, '-c', {child!r}], {{}}, tmp, "
              "tmp / 'child.out', tree=True)\n"
              "while not (tmp / 'burned').exists(): time.sleep(0.01)\n"
              "seen = proc.cpu()\n"
              "(tmp / 'go').touch()\n"
              "proc.wait(30)\n"
              "print(seen, proc.exit_cpu, proc.cpu())\n")
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
    finally:
        grandchild = tmp_path / "grandchild"
        if grandchild.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(grandchild.read_text()), signal.SIGKILL)
    assert result.returncode == 0, result.stderr[-3000:]
    seen, exit_cpu, total = (float(value) for value in result.stdout.split())
    assert seen >= 0.5
    assert exit_cpu < 0.5  # the kernel's total of the child leaves the grandchild out...
    assert total >= 0.5  # ...but the tree's CPU keeps what it was seen to use
