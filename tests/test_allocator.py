"""The worker's allocator: a worker restarts itself once on jemalloc (same PID), its
children keep the allocator they had, and VOE_WORKER_MALLOC=system or a preload of the
user's own keeps glibc's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster import Airline, Cluster, wait_for

from voe.worker import allocator

needs_jemalloc = pytest.mark.skipif(
    allocator.jemalloc_path() is None or not sys.platform.startswith("linux"),
    reason="jemalloc is not installed (Debian: apt install libjemalloc2; .ci/run installs it)")

# Starts, asks for ``sys.argv[1]``, then says what it runs on and what a child runs on.
SCRIPT = """
import os, subprocess, sys
print("start", os.getpid(), flush=True)
from voe.worker import allocator
allocator.use(sys.argv[1])
child = subprocess.run([sys.executable, "-c", "import os; from voe.worker import allocator; "
                        "print(allocator.running_on_jemalloc(), os.environ.get('LD_PRELOAD'))"],
                       capture_output=True, text=True, check=True).stdout.split()
print("self", allocator.running_on_jemalloc(), os.environ.get("LD_PRELOAD"))
print("child", *child)
"""


def run_script(choice: str, preload: str | None) -> list[list[str]]:
    env = {key: value for key, value in os.environ.items()
           if key not in {"LD_PRELOAD", "VOE_RESTARTED_ON_JEMALLOC"}}
    if preload is not None:
        env["LD_PRELOAD"] = preload
    done = subprocess.run([sys.executable, "-c", SCRIPT, choice], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split() for line in done.stdout.splitlines()]


@needs_jemalloc
def test_a_process_restarts_itself_once_on_jemalloc_and_its_children_do_not_inherit_it():
    lines = run_script("jemalloc", None)
    starts = [line for line in lines if line[0] == "start"]
    assert len(starts) == 2 and starts[0] == starts[1]  # executed again, as the same process
    assert ["self", "True", "None"] in lines  # on jemalloc, LD_PRELOAD back to unset
    assert ["child", "False", "None"] in lines


@needs_jemalloc
def test_a_preload_of_the_users_own_is_left_alone():
    own = "libm.so.6"  # harmless to preload: every Python links it already
    lines = run_script("jemalloc", own)  # (libfaketime and jemalloc together hang at start)
    assert len([line for line in lines if line[0] == "start"]) == 1
    assert ["self", "False", own] in lines
    assert ["child", "False", own] in lines


def test_the_system_allocator_is_kept_when_asked():
    lines = run_script("system", None)
    assert len([line for line in lines if line[0] == "start"]) == 1  # no second start
    assert ["self", "False", "None"] in lines


@needs_jemalloc
def test_a_real_worker_runs_its_jobs_on_jemalloc(tmp_path):
    airline = Airline(tmp_path)
    cluster = Cluster(tmp_path, airline.url, days=1, airports='["GRU", "REC"]')
    try:
        worker = cluster.worker("w1")
        wait_for(lambda: "concurrency 4" in cluster.log("worker"), 30, "the worker to start")
        maps = Path(f"/proc/{worker.pid}/maps").read_text()
        cluster.sink()
        assert cluster.wait_master(cluster.master(), timeout=60) == 0
        assert worker.poll() is None
        log = cluster.log("worker")
        states = {row["state"] for row in cluster.ledger_rows()}
    finally:
        cluster.stop()
        airline.stop()
    assert "libjemalloc" in maps  # the PID the test started is the worker on jemalloc
    assert "allocator: jemalloc" in log
    assert states == {"done"}


def test_a_worker_refuses_an_unknown_allocator(tmp_path):
    env = {**os.environ, "VOE_WORKER_MALLOC": "tcmalloc", "VOE_DATA_DIR": str(tmp_path),
           "VOE_CURVE": "off"}
    done = subprocess.run([sys.executable, "-m", "voe", "worker"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "VOE_WORKER_MALLOC" in done.stderr and "Traceback" not in done.stderr
