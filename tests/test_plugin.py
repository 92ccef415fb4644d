"""An out-of-tree backend, installed with `pip install -e`, found through the entry point and
collected by `voe run`; plus `voe run`'s airline options."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import free_port
from voe.demoairline.fares import fares_for

PLUGIN = Path(__file__).resolve().parent / "plugins" / "voe_example_backend"

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


def _installed_here() -> bool:
    try:
        direct = importlib.metadata.distribution("voe-example-backend").read_text(
            "direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return False
    return bool(direct) and json.loads(direct).get("url") == PLUGIN.as_uri()


@pytest.fixture(scope="session")
def example_backend() -> str:
    """Install tests/plugins/voe_example_backend in editable mode (once) and return its name."""
    if not _installed_here():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                        "--no-deps", "-e", str(PLUGIN)], check=True, timeout=300,
                       capture_output=True)
    return "example"


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
