"""An out-of-tree backend, installed with `pip install -e`, found through the entry point and
collected by `voe run`; plus `voe run`'s airline options."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import free_port
from voe.demo.airline.fares import fares_for

PLAN = """
[plan]
name = "plugin"
cycle = "once"
max_attempts = 3

[dates]
start_in_days = 1
days_ahead = 2
step_days = 1

[[routes]]
backend = "example"
airports = ["GRU", "REC", "SSA"]
"""


def run_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VOE_JOBS_PORT": str(free_port()),
        "VOE_CONTROL_PORT": str(free_port()),
        "VOE_RESULTS_PORT": str(free_port()),
        "VOE_HTTP_PORT": str(free_port()),
        "VOE_SINK_HTTP_PORT": str(free_port()),
        "VOE_DEMO_AIRLINE_URL": f"http://127.0.0.1:{free_port()}",
        "VOE_DATA_DIR": str(tmp_path / "data"),
        "VOE_HTTP_BACKOFF": "0.02",
    })
    return env


def voe(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voe", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_voe_backends_lists_the_installed_plugin(tmp_path, example_backend):
    result = voe(tmp_path, dict(os.environ), "backends")
    assert result.returncode == 0, result.stderr
    assert f"{example_backend}\tvoe_example_backend:ExampleAirline" in result.stdout.splitlines()


def test_voe_run_collects_the_plugins_fares_through_a_faulty_airline(tmp_path, example_backend):
    env = run_env(tmp_path)
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    result = voe(tmp_path, env, "run", "--workers", "1", "--latency-ms", "0", "--plan", str(plan),
                 "--airline-option", "error-rate=0.3", "--airline-option", "seed=9")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 jobs done, 0 failed" in result.stdout
    airline_log = (tmp_path / "data" / "run.err").read_text()
    assert "demo airline faults: Faults(seed=9, error_rate=0.3," in airline_log
    with sqlite3.connect(tmp_path / "data" / "fares.db") as db:
        rows = db.execute("SELECT origin, destination, date, flight, departure, arrival, price,"
                          " currency, backend FROM fares").fetchall()
        routes = db.execute("SELECT DISTINCT origin, destination, date FROM results").fetchall()
    assert len(routes) == 12 and {row[-1] for row in rows} == {"example"}
    expected = sorted((o, d, day, *fare) for o, d, day in routes
                      for fare in fares_for(o, d, day))
    assert sorted(row[:-1] for row in rows) == expected


@pytest.mark.parametrize(("option", "message"), [
    ("bogus=1", "unknown airline option 'bogus'"),
    ("error-rate=2", "error-rate='2': must be between 0 and 1"),
    ("layout", "expected NAME=VALUE"),
])
def test_bad_airline_options_are_usage_errors(tmp_path, option, message):
    result = voe(tmp_path, run_env(tmp_path), "run", "--airline-option", option)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def _trace(tmp_path: Path, env: dict[str, str], name: str) -> list[str]:
    """Run the demo plan's small cousin with the plugin's tracers on; return what they saw."""
    trace = tmp_path / f"{name}.trace"
    env = dict(env, VOE_EXAMPLE_TRACE=str(trace), VOE_DATA_DIR=str(tmp_path / name))
    plan = tmp_path / "demo.toml"
    plan.write_text(PLAN.replace('backend = "example"', 'backend = "demo"'))
    result = voe(tmp_path, env, "run", "--workers", "1", "--latency-ms", "0", "--plan", str(plan),
                 "--airline-option", "field-format-rate=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 jobs done, 0 failed" in result.stdout
    return trace.read_text().splitlines()


def test_plugin_middleware_and_pipeline_stage_run_in_the_configured_order(tmp_path,
                                                                           example_backend):
    env = run_env(tmp_path)
    # Their own order: the middleware after voe's Deadline (100), the stage after voe's
    # flight normalisation (200).
    lines = _trace(tmp_path, env, "default")
    fetched = [line for line in lines if line.startswith("fetch ")]
    flights = [line.removeprefix("fares ") for line in lines if line.startswith("fares ")]
    assert len(fetched) >= 12 and set(fetched) == {"fetch with a deadline"}
    assert len(flights) == 12 and all(re.fullmatch(r"[A-Z0-9]{2} [0-9]{1,4}", flight)
                                      for flight in flights), flights
    # Moved by the settings before those: no deadline set yet, raw flight codes.
    env["VOE_FETCH_MIDDLEWARES"] = "voe_example_backend.trace:TraceFetch=50"
    env["VOE_FARE_PIPELINES"] = "voe_example_backend.trace:TraceFares=150"
    lines = _trace(tmp_path, env, "moved")
    fetched = [line for line in lines if line.startswith("fetch ")]
    flights = [line.removeprefix("fares ") for line in lines if line.startswith("fares ")]
    assert len(fetched) >= 12 and set(fetched) == {"fetch without a deadline"}
    assert len(flights) == 12 and not any(re.fullmatch(r"[A-Z0-9]{2} [0-9]{1,4}", flight)
                                          for flight in flights), flights


def test_plugin_master_middleware_runs_in_a_real_master(tmp_path, example_backend):
    lines = [line for line in _trace(tmp_path, run_env(tmp_path), "master")
             if line.startswith("master ")]
    assert lines[0] == "master start Pacing Metrics WorkersSnapshot Cycles ControlPlane TraceMaster"
    assert lines[-1] == "master stop"
    leased = sum(int(line.split()[-1]) for line in lines if line.startswith("master lease "))
    assert leased >= 12 and lines.count("master ack") == 12
