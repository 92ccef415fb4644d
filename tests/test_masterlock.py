"""One master per data dir: a second one is refused in one line, the first runs on untouched,
and the lock goes with its holder, even killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, free_port, wait_for
from voe.master.lock import MasterLock, MasterRunning, holder, lock_path
from voe.processes import Child

# Seconds a refused master or `voe run` may take: Python's start and voe's imports, no more.
REFUSAL_SECONDS = 15.0


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_master(cluster: Cluster) -> Child:
    """Start a `--once` master (with no worker it waits) and wait until it listens."""
    master = cluster.master()
    port = int(cluster.env["VOE_JOBS_PORT"])
    wait_for(lambda: master.poll() is None and listening(port)
             and (cluster.data_dir / "master.pid").exists(), 30, "the master to listen")
    assert master.poll() is None, (cluster.tmp / "master.err").read_text()
    return master


def other_ports(cluster: Cluster) -> dict[str, str]:
    """The cluster's environment with ports of its own: only the data dir is shared."""
    return cluster.env | {name: str(free_port()) for name in
                          ("VOE_JOBS_PORT", "VOE_CONTROL_PORT", "VOE_HTTP_PORT",
                           "VOE_RESULTS_PORT", "VOE_SINK_HTTP_PORT")}


def status(cluster: Cluster, *args: str) -> str:
    """What `voe status` prints (its status says whether a cycle is stuck: not asked here)."""
    return cluster.voe("status", *args, check=False).stdout


def status_pid(cluster: Cluster) -> int | None:
    return json.loads(status(cluster, "--json"))["master"]["pid"]


@pytest.fixture
def cluster(tmp_path: Path, airline_url: str):
    started = Cluster(tmp_path, airline_url)
    yield started
    started.stop()


def test_a_second_master_is_refused_in_one_line_and_the_first_runs_on(cluster) -> None:
    first = start_master(cluster)
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "voe", "master", "--once", "--plan",
                             str(cluster.plan_path)], env=other_ports(cluster), cwd=cluster.tmp,
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSAL_SECONDS
    assert second.returncode == 1, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0] and str(cluster.data_dir) in lines[0], lines
    assert "Traceback" not in second.stderr
    time.sleep(1)  # the first master goes on: its file, its lock, its ports
    assert first.poll() is None
    assert (cluster.data_dir / "master.pid").read_text().strip() == str(first.pid)
    assert status_pid(cluster) == first.pid
    assert listening(int(cluster.env["VOE_JOBS_PORT"]))


def test_the_lock_goes_with_its_master_stopped_or_killed(cluster) -> None:
    first = start_master(cluster)
    assert first.stop(timeout=20) == 0
    assert status_pid(cluster) is None
    second = start_master(cluster)
    assert status_pid(cluster) == second.pid
    os.kill(second.pid, signal.SIGKILL)
    second.popen.wait(10)
    # Killed, it left its master.pid behind; the kernel dropped its lock all the same.
    assert (cluster.data_dir / "master.pid").read_text().strip() == str(second.pid)
    assert status_pid(cluster) is None
    assert status(cluster).count("master: not running") == 1
    third = start_master(cluster)
    assert status_pid(cluster) == third.pid
    assert f"master: running (pid {third.pid})" in status(cluster)


def test_voe_run_refuses_a_data_dir_a_master_runs_on(cluster) -> None:
    first = start_master(cluster)
    env = other_ports(cluster) | {"VOE_DEMO_AIRLINE_URL": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "voe", "run", "--workers", "1"], env=env,
                         cwd=cluster.tmp, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < REFUSAL_SECONDS
    assert run.returncode == 1, run.stdout + run.stderr
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("voe run: another master") and f"pid {first.pid}" in lines[0]
    # Nothing was started: no airline, sink, master or worker wrote a line.
    assert not (cluster.data_dir / "run.err").exists()
    assert not (cluster.data_dir / "worker.log").exists()
    assert first.poll() is None


def test_the_lock_in_one_process(tmp_path: Path) -> None:
    assert holder(tmp_path) is None
    with MasterLock(tmp_path):
        assert holder(tmp_path) == os.getpid()
        assert lock_path(tmp_path).read_text() == f"{os.getpid()}\n"
        # Another open file of the same process is refused like another process.
        with pytest.raises(MasterRunning, match=f"pid {os.getpid()}") as refused:
            MasterLock(tmp_path).acquire()
        assert refused.value.pid == os.getpid() and refused.value.data_dir == tmp_path
    assert holder(tmp_path) is None
    assert lock_path(tmp_path).read_text() == ""
    with MasterLock(tmp_path):
        assert holder(tmp_path) == os.getpid()
