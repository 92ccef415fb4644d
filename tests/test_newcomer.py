"""A newcomer's first hour: every number on screen is true, every mistake one clear line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cluster import SMALL_PLAN, Airline, Cluster, free_port, wait_for
from tests.test_cli import assert_one_line_error
from tests.test_run import run_env
from voe.master.ledger import Ledger
from voe.model import Fare, Result, SearchJob
from voe.settings import SETTINGS
from voe.store import SqliteStore


def voe(cwd: Path, env: dict[str, str], *args: str, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_plan(tmp_path: Path, name: str = "small", attempts: int = 3, days: int = 2,
               backend: str = "demo") -> Path:
    """A plan of 6 routes x ``days`` dates, named ``name`` (the test clusters' plan)."""
    plan = tmp_path / f"{name}.toml"
    plan.write_text(SMALL_PLAN.format(max_attempts=attempts, lease_seconds=20, days=days,
                                      backend=backend, airports='["GRU", "REC", "SSA"]')
                    .replace('name = "test"', f'name = "{name}"'))
    return plan


def summary_fares(output: str) -> int:
    """The fares `voe run`'s summary says the run stored."""
    match = re.search(r"(\d+) fares stored by this run", output)
    assert match, output
    return int(match[1])


def cycle_fares(tmp_path: Path, env: dict[str, str]) -> tuple[int, int]:
    status = json.loads(voe(tmp_path, env, "status", "--json").stdout)
    return status["cycle"]["number"], status["cycle"]["fares"]


def test_a_second_run_counts_its_own_cycle(tmp_path):
    env = run_env(tmp_path)
    plan = write_plan(tmp_path)
    first = voe(tmp_path, env, "run", "--plan", str(plan))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "cycle 1 started" in first.stdout
    assert summary_fares(first.stdout) == cycle_fares(tmp_path, env)[1] > 0
    second = voe(tmp_path, env, "run", "--plan", str(plan))
    assert second.returncode == 0, second.stdout + second.stderr
    number, fares = cycle_fares(tmp_path, env)
    assert number == 2 and "cycle 2 started" in second.stdout
    assert "cycle 2 done" in second.stdout and summary_fares(second.stdout) == fares
    status = json.loads(voe(tmp_path, env, "status", "--json").stdout)
    assert status["fares"] == 2 * fares  # every cycle's, apart from this cycle's
    # Without a terminal: no progress line before the cycle is known, no line wrapped.
    assert "0/0 jobs" not in second.stdout
    assert any(line.startswith("voe run: plan small") and line.rstrip().endswith(
        str(tmp_path / "data")) for line in second.stdout.splitlines()), second.stdout
    text = voe(tmp_path, env, "status").stdout
    assert f"fares stored: {fares} in cycle 2, {2 * fares} in every cycle" in text
    # The demo airline's prices did not move between the cycles: no "was" for an equal price.
    prices = voe(tmp_path, env, "prices", "GRU-REC").stdout.splitlines()
    second_cycle = [line for line in prices if " cycle 2: " in line]
    assert second_cycle and all(line.endswith("(unchanged)") for line in second_cycle), prices
    assert not any("(was" in line for line in prices)


def test_a_run_that_retries_dead_letters_counts_only_what_it_stored(tmp_path):
    env = run_env(tmp_path)
    plan = write_plan(tmp_path, attempts=1)
    first = voe(tmp_path, env, "run", "--plan", str(plan), "--airline-option", "error-rate=0.5",
                "--airline-option", "seed=3")
    assert first.returncode == 0, first.stdout + first.stderr
    _, before = cycle_fares(tmp_path, env)
    failed = json.loads(voe(tmp_path, env, "failed", "--json").stdout)
    assert failed, "the airline's errors should have left dead letters"
    retried = voe(tmp_path, env, "failed", "--retry")
    assert f"{len(failed)} failed job(s) sent back" in retried.stdout
    second = voe(tmp_path, env, "run", "--plan", str(plan))
    assert second.returncode == 0, second.stdout + second.stderr
    number, after = cycle_fares(tmp_path, env)
    assert number == 1 and "resuming cycle 1" in second.stdout
    assert summary_fares(second.stdout) == after - before > 0
    assert f"{after} in the cycle" in second.stdout
    nothing = voe(tmp_path, env, "failed", "--retry")
    assert nothing.stdout.strip() == "no failed jobs to retry"


def test_a_changed_plan_is_explained_and_an_empty_cycle_gives_way(tmp_path):
    env = run_env(tmp_path)
    plan = write_plan(tmp_path, name="new")
    data_dir = Path(env["VOE_DATA_DIR"])
    data_dir.mkdir()
    ledger = Ledger(data_dir / "ledger.db")
    try:  # a master that died before it expanded any job of a plan since edited
        ledger.start_cycle("old", "0" * 64, "2026-01-01", 99, 3)
    finally:
        ledger.close()
    env["VOE_PLAN"] = str(plan)
    status = voe(tmp_path, env, "status").stdout
    assert "the plan changed since cycle 1 started" in status and "plan new" in status
    result = voe(tmp_path, env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the plan changed before cycle 1 held any job" in result.stdout
    report = json.loads(voe(tmp_path, env, "status", "--json").stdout)
    assert report["cycle"]["number"] == 2 and report["cycle"]["plan"] == "new"
    assert report["jobs"]["done"] == 12 and report["cycle"]["plan_changed"] is None


def test_a_plan_naming_an_unknown_backend_is_refused_at_load(tmp_path):
    plan = write_plan(tmp_path, name="typo", backend="demoo")
    for command in ("run", "master"):
        result = voe(tmp_path, run_env(tmp_path), command, "--plan", str(plan), timeout=60)
        assert_one_line_error(result, "typo.toml", "routes[0].backend", "'demoo'", "demo-api")


def test_commands_in_an_empty_directory_agree(tmp_path):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "empty"))
    for command in (["status"], ["cheapest"], ["failed"], ["prices", "GRU-REC"], ["check"],
                    ["export", "--out", "x.csv"]):
        result = voe(tmp_path, env, *command, timeout=60)
        assert result.returncode == 0, (command, result)
        assert "Traceback" not in result.stderr
    assert "run `voe run` first" in voe(tmp_path, env, "check", timeout=60).stdout
    assert "run `voe run` first" in voe(tmp_path, env, "export", timeout=60).stderr


def test_settings_shows_every_setting_with_the_malformed_one_marked(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("VOE_")}
    env["VOE_JOBS_PORT"] = "thirteen"
    result = voe(tmp_path, env, "settings", timeout=60)
    assert_one_line_error(result, "VOE_JOBS_PORT")
    lines = result.stdout.splitlines()
    assert len(lines) == len(SETTINGS)
    marked = [line for line in lines if "MALFORMED" in line]
    assert len(marked) == 1 and marked[0].startswith("VOE_JOBS_PORT=thirteen")


def test_a_closed_pipe_is_no_traceback(tmp_path):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "voe", "settings"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head` that has read enough
    try:
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert b"Traceback" not in errors and b"BrokenPipe" not in errors, errors
    assert process.returncode == 141


def test_the_demo_airline_listens_where_its_setting_says(tmp_path):
    port = free_port()
    env = dict(os.environ, VOE_DEMO_AIRLINE_URL=f"http://127.0.0.1:{port}")
    airline = subprocess.Popen([sys.executable, "-m", "voe", "demo-airline"], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def answers() -> bool:
        assert airline.poll() is None, "the demo airline exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, 20, f"the demo airline on port {port}")
    finally:
        airline.terminate()
        airline.wait(10)


def _store_one_fare(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    job = SearchJob("demo:GRU-REC:2026-12-20", 1, 1, "demo", "GRU", "REC", "2026-12-20")
    with SqliteStore(data_dir / "fares.db") as store:
        store.save([Result(job, "ok", (Fare("G3 1234", "07:00", "09:30", "412.50", "BRL"),),
                           None, "w1", 0.1)])


def test_export_takes_its_format_from_the_file_name(tmp_path):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "data"))
    _store_one_fare(tmp_path / "data")
    assert voe(tmp_path, env, "export", "--out", "fares.csv", timeout=60).returncode == 0
    assert (tmp_path / "fares.csv").read_text().startswith("cycle,job_id,backend,")
    assert voe(tmp_path, env, "export", "--out", "fares.jsonl", timeout=60).returncode == 0
    assert json.loads((tmp_path / "fares.jsonl").read_text())["price"] == "412.50"
    explicit = voe(tmp_path, env, "export", "--format", "jsonl", "--out", "x.csv", timeout=60)
    assert explicit.returncode == 0 and (tmp_path / "x.csv").read_text().startswith("{")
    assert "from --out's extension" in voe(tmp_path, env, "export", "--help", timeout=60).stdout


def test_keys_init_keeps_secret_keys_out_of_git(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path))
    assert voe(tmp_path, env, "keys", "init", timeout=60).returncode == 0
    assert (tmp_path / "keys" / "master.key_secret").is_file()
    untracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=30).stdout
    assert "keys/" not in untracked, untracked


def test_workers_hear_that_a_once_master_finished(tmp_path):
    airline = Airline(tmp_path, latency_ms=1000)  # the cycle lasts while both workers join
    cluster = Cluster(tmp_path, airline.url, heartbeat=0.2)
    try:
        cluster.sink()
        master = cluster.master()
        waiting = cluster.worker("waiting")
        wait_for(lambda: "worker waiting joined" in cluster.log("master"), 30, "a first worker")
        leaving = cluster.spawn("leaving", "worker", "--name", "leaving", "--once")
        wait_for(lambda: "worker leaving joined" in cluster.log("master"), 30, "a second worker")
        assert cluster.wait_master(master) == 0
        wait_for(lambda: leaving.poll() is not None, 20, "the --once worker to leave")
        assert leaving.poll() == 0
        time.sleep(3)  # 15 heartbeats: the other worker waits quietly meanwhile
        assert waiting.poll() is None
    finally:
        cluster.stop()
        airline.stop()
    log = cluster.log("worker")
    assert "the master finished its collection; leaving (--once)" in log
    assert log.count("the master finished its collection and left") == 1
    assert "no word from the master" not in log
    sink_log = cluster.log("sink")
    assert "storing in SQLite " in sink_log and "object at 0x" not in sink_log
    received = re.findall(r"(\d+) results received, (\d+) acknowledged", sink_log)
    assert received and received[-1][0] == received[-1][1] == "12", received


def test_worker_once_is_documented(tmp_path):
    assert "--once" in voe(tmp_path, dict(os.environ), "worker", "--help", timeout=60).stdout
