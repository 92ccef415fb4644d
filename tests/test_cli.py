"""User mistakes get one line and exit status 2, never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import ROOT, free_port, wait_for

SCRIPTS = ["master.py", "worker.py", "sink.py", "voe/queue.py", "setup_instances.py",
           "terminate.py"]


def voe(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "voe", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("text, fragments", [
    ("[plan\nname='x'", ["not valid TOML"]),
    ("[dates]\ndays_ahead = 3\n[[routes]]\nbackend='demo'\nairports=['GRU','REC']",
     ["[plan]", "missing table"]),
    ("[plan]\n[dates]\ndays_ahead = 'soon'\n[[routes]]\nbackend='demo'\nairports=['GRU','REC']",
     ["dates.days_ahead", "whole number", "'soon'"]),
    ("[plan]\ncycle='sometimes'\n[dates]\ndays_ahead=3\n[[routes]]\nbackend='demo'\n"
     "airports=['GRU','REC']", ["plan.cycle"]),
    ("[plan]\n[dates]\ndays_ahead=3\n[[routes]]\nbackend='demo'\nairports=['GRU','rec!']",
     ["routes[0].airports", "rec!"]),
    ("[plan]\n[dates]\ndays_ahead=3\n[[routes]]\nbackend='demo'\nairports=['GRU','REC']\n"
     "blocked=['GRU']", ["routes[0].blocked"]),
    ("[plan]\n[dates]\ndays_ahead=3", ["[[routes]]"]),
])
def test_malformed_plan_is_one_line_naming_file_and_key(tmp_path, text, fragments):
    plan = tmp_path / "broken.toml"
    plan.write_text(text)
    assert_one_line_error(voe(tmp_path, "master", "--once", "--plan", str(plan)),
                          "broken.toml", *fragments)


def test_missing_plan_file(tmp_path):
    assert_one_line_error(voe(tmp_path, "run", "--plan", "nowhere.toml"),
                          "nowhere.toml", "cannot read")


@pytest.mark.parametrize("line, fragments", [
    ("VOE_JOBS_PORT=thirteen", ["VOE_JOBS_PORT", "thirteen", "port number", ".env"]),
    ("VOE_CONCURRENCY=0", ["VOE_CONCURRENCY", "at least 1"]),
    ("VOE_DEMO_AIRLINE_URL=ftp://x", ["VOE_DEMO_AIRLINE_URL", "URL"]),
])
def test_malformed_env_value_is_one_line(tmp_path, line, fragments):
    (tmp_path / ".env").write_text(f"# settings\n{line}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOE_")}
    for command in (["status"], ["master", "--once"], ["worker"], ["sink"], ["run"]):
        assert_one_line_error(voe(tmp_path, *command, env=env), *fragments)


def test_environment_overrides_env_file(tmp_path):
    (tmp_path / ".env").write_text("VOE_JOBS_PORT=2000\nVOE_RESULTS_PORT=2002\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOE_")}
    env["VOE_JOBS_PORT"] = "3000"
    out = voe(tmp_path, "settings", env=env).stdout
    assert "VOE_JOBS_PORT=3000  [environment" in out
    assert "VOE_RESULTS_PORT=2002  [.env" in out
    assert "VOE_CONTROL_PORT=13131  [default" in out


def test_usage_errors_exit_2(tmp_path):
    result = voe(tmp_path, "run", "--workers", "0")
    assert result.returncode == 2 and "at least 1" in result.stderr
    assert voe(tmp_path, "no-such-command").returncode == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_original_commands_answer_help(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_status_before_anything_ran(tmp_path):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "empty"))
    result = voe(tmp_path, "status", "--json", env=env)
    assert result.returncode == 0
    assert '"pending": 0' in result.stdout and '"fares": 0' in result.stdout


def test_export_before_anything_ran_says_so(tmp_path):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "empty"))
    result = voe(tmp_path, "export", "--out", "x.jsonl", env=env)
    assert result.returncode == 0 and "voe run" in result.stderr, result
    assert not (tmp_path / "x.jsonl").exists()


def test_malformed_secret_setting_never_shows_its_value(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOE_")}
    env["VOE_AMQP_URL"] = "http://guest:hunter2@127.0.0.1:5672/"
    result = voe(tmp_path, "settings", env=env)
    assert_one_line_error(result, "VOE_AMQP_URL", "amqp://")
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("role, setting", [("master", "VOE_JOBS_PORT"),
                                           ("master", "VOE_CONTROL_PORT"),
                                           ("sink", "VOE_RESULTS_PORT")])
def test_a_busy_port_is_one_line_naming_its_setting(tmp_path, role, setting):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "data"), VOE_HTTP_PORT="0",
               VOE_SINK_HTTP_PORT="0", VOE_JOBS_PORT=str(free_port()),
               VOE_CONTROL_PORT=str(free_port()), VOE_RESULTS_PORT=str(free_port()))
    assert voe(tmp_path, "keys", "init", env=env).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env[setting])))
        taken.listen()
        result = voe(tmp_path, role, "--no-console", env=env)
    assert_one_line_error(result, f":{env[setting]} ({setting})", "in use")


MASTER_COMMANDS = [["pause"], ["resume"], ["cycle", "start"]]


@pytest.mark.parametrize("command", [*MASTER_COMMANDS, ["cycle"], ["failed"], ["failed", "retry"]],
                         ids=" ".join)
def test_the_master_commands_answer_help(tmp_path, command):
    result = voe(tmp_path, *command, "--help")
    assert result.returncode == 0, result.stderr
    named = " ".join(command) if command[0] == "cycle" else command[0]  # retry is an ACTION
    assert result.stdout.startswith(f"usage: voe {named} "), result.stdout


@pytest.mark.parametrize("command", [["cycle"], ["cycle", "stop"], ["pause", "now"],
                                     ["failed", "list", "--retry"], ["failed", "again"]],
                         ids=" ".join)
def test_a_wrong_master_command_is_a_usage_error(tmp_path, command):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "data"))
    result = voe(tmp_path, *command, env=env)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "error:" in result.stderr


def _assert_status_1(result, *fragments):
    """A one-line error with exit status 1: the master was not there or refused."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", MASTER_COMMANDS, ids=" ".join)
def test_a_master_command_without_a_master_is_one_line_status_1(tmp_path, command):
    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path / "data"))
    _assert_status_1(voe(tmp_path, *command, env=env), f"voe {' '.join(command)}: error:",
                     "no master is running", str(tmp_path / "data"))


def _ledger_with_a_dead_letter(data_dir) -> tuple[str, str]:
    """A ledger holding one failed job of cycle 1; its id and path."""
    from voe.master.ledger import Ledger
    from voe.model import SearchJob

    data_dir.mkdir()
    job = SearchJob("demo:GRU-REC:2026-01-01", 1, 0, "demo", "GRU", "REC", "2026-01-01", None)
    ledger = Ledger(data_dir / "ledger.db")
    try:
        ledger.start_cycle("p", "digest", "2026-01-01", 1, 1)
        ledger.add_jobs(1, [job], 1)
        with ledger.transaction():
            ledger.mark_failed([("503", 1, job.id)])
    finally:
        ledger.close()
    return job.id, str(data_dir / "ledger.db")


@contextlib.contextmanager
def _ledger(ledger_path: str) -> Iterator[Any]:
    """The ledger at ``ledger_path``, open for writing."""
    from voe.master.ledger import Ledger

    ledger = Ledger(ledger_path)
    try:
        yield ledger
    finally:
        ledger.close()


def _state(ledger_path: str, job_id: str) -> str:
    from voe.master.ledger import Ledger

    ledger = Ledger(ledger_path, readonly=True)
    try:
        return ledger.job(1, job_id)["state"]
    finally:
        ledger.close()


def test_failed_retry_goes_through_a_running_master_and_writes_the_ledger_only_without(
        tmp_path):
    from voe.master.lock import MasterLock

    data_dir = tmp_path / "data"
    job_id, ledger_path = _ledger_with_a_dead_letter(data_dir)
    unreachable = dict(os.environ, VOE_DATA_DIR=str(data_dir), VOE_HTTP_PORT=str(free_port()))
    port_off = dict(unreachable, VOE_HTTP_PORT="0")
    with MasterLock(data_dir):  # a master holds the data dir, but nothing answers its port
        for command in (["failed", "retry"], ["failed", "--retry"], *MASTER_COMMANDS):
            _assert_status_1(voe(tmp_path, *command, env=unreachable),
                             "cannot reach the running master's HTTP port", "VOE_HTTP_PORT")
        _assert_status_1(voe(tmp_path, "pause", env=port_off), "VOE_HTTP_PORT=0")
        assert _state(ledger_path, job_id) == "failed"  # never written behind its back
        # Its port is off: the ledger is the only way, and the master is told (SIGUSR1; the
        # lock's holder is this process here, so it hears the signal instead of a master).
        told: list[int] = []
        before = signal.signal(signal.SIGUSR1, lambda signum, frame: told.append(signum))
        try:
            written = voe(tmp_path, "failed", "retry", env=port_off)
            wait_for(lambda: told, 5, "the master to be told that its ledger changed")
        finally:
            signal.signal(signal.SIGUSR1, before)
        assert written.returncode == 0, written
        assert "written to the ledger (the running master's HTTP port is off)" in written.stdout
        assert f"the master (pid {os.getpid()}) was told and leases them now" in written.stdout
        assert _state(ledger_path, job_id) == "pending"
        with _ledger(ledger_path) as ledger, ledger.transaction():
            ledger.mark_failed([("503", 1, job_id)])

    retried = voe(tmp_path, "failed", "--retry", env=unreachable)  # the older spelling
    assert retried.returncode == 0, retried
    assert retried.stdout.strip() == ("1 failed job(s) sent back to pending; no master runs: "
                                      "start one to search them again (voe master --once)")
    assert _state(ledger_path, job_id) == "pending"
    again = voe(tmp_path, "failed", "retry", env=unreachable)
    assert (again.returncode, again.stdout.strip()) == (0, "no failed jobs to retry")
