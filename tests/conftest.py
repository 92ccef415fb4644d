"""Shared test fixtures: a real demo airline in a subprocess, free ports and settings.

Fixtures: ``demo_airline`` (factory: start an airline with options, get its base
URL), ``airline_url`` (one default airline for the whole session),
``make_settings`` (factory: ``Settings`` from the defaults plus overrides, ignoring
the environment and ``.env``) and ``store`` (each store, empty: a SQLite file and a
fresh PostgreSQL schema). Helpers importable with ``from conftest import ...``:
``free_port``, ``http_get``, ``launch_airline`` and ``AirlineProcess``.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.postgres import fresh_schema
from voe.settings import SETTINGS, Settings
from voe.store import SqliteStore, open_store

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
LAUNCH_ATTEMPTS = 3


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (nothing listens on it),
    never one handed out lately (``tests.cluster.free_port``)."""
    from tests.cluster import free_port as distinct

    return distinct()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` on loopback with plain http.client (no proxies, no retries)."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1":
        raise ValueError(f"tests only talk to 127.0.0.1, not {url}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path or "/")
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@dataclass
class AirlineProcess:
    """A demo airline running in a subprocess; ``stop`` ends it by its PID."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stats(self) -> dict[str, Any]:
        """Return the airline's ``/stats`` counters."""
        status, _, body = http_get(f"{self.url}/stats")
        assert status == 200, body
        return json.loads(body)

    def output(self) -> str:
        """Return what the airline has logged so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """Send SIGTERM, wait (bounded), kill if it hangs; return the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode


def _airline_command(port: int, latency_ms: int, fail_routes: Iterable[str],
                     flights: int | None, faults: dict[str, Any]) -> list[str]:
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr,"
        " format='%(levelname)s %(name)s %(message)s')\n"
        "from voe.demo.airline.server import serve\n"
        f"serve(port={port!r}, latency_ms={latency_ms!r}, fail_routes={list(fail_routes)!r},"
        f" flights={flights!r}, **{faults!r})\n"
    )
    return [sys.executable, "-c", code]


def _wait_until_ready(airline: AirlineProcess) -> bool:
    """Poll ``/stats`` until it answers (True) or the process dies (False); bounded in time."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if airline.process.poll() is not None:
            return False
        try:
            status, _, _ = http_get(f"{airline.url}/stats", timeout=1.0)
        except OSError:
            time.sleep(0.05)
            continue
        if status == 200:
            return True
    airline.stop()
    raise TimeoutError(f"demo airline not ready in {START_TIMEOUT}s:\n{airline.output()}")


def launch_airline(log_dir: Path, latency_ms: int = 0, fail_routes: Iterable[str] = (),
                   flights: int | None = None, **faults: Any) -> AirlineProcess:
    """Start a demo airline subprocess on a free loopback port and wait until it answers.

    ``faults`` are ``Faults`` fields by keyword (``error_rate=0.2, seed=7``).
    """
    fail_routes = list(fail_routes)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for attempt in range(1, LAUNCH_ATTEMPTS + 1):
        port = free_port()
        log = log_dir / f"airline-{port}.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                _airline_command(port, latency_ms, fail_routes, flights, faults),
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )
        airline = AirlineProcess(process, f"http://127.0.0.1:{port}", log)
        if _wait_until_ready(airline):
            return airline
        if attempt == LAUNCH_ATTEMPTS:  # the port may have been taken meanwhile: retry
            raise RuntimeError(f"demo airline exited early:\n{airline.output()}")
    raise AssertionError("unreachable")


@pytest.fixture
def demo_airline(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Factory: ``demo_airline(latency_ms=0, fail_routes=(), flights=None, **faults)`` -> URL.

    Every airline it starts is stopped (by PID) when the test ends.
    """
    started: list[AirlineProcess] = []

    def start(latency_ms: int = 0, fail_routes: Iterable[str] = (),
              flights: int | None = None, **faults: Any) -> str:
        airline = launch_airline(tmp_path, latency_ms, fail_routes, flights, **faults)
        started.append(airline)
        return airline.url

    yield start
    for airline in started:
        airline.stop()


@pytest.fixture
def airlines(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``airlines(latency_ms=0)`` -> a running ``tests.cluster.Airline`` process,
    stopped (by PID) after the test."""
    from tests.cluster import Airline

    started: list[Airline] = []

    def start(latency_ms: int = 0) -> Airline:
        airline = Airline(tmp_path, latency_ms=latency_ms)
        started.append(airline)
        return airline

    yield start
    for airline in started:
        airline.stop()


@pytest.fixture(scope="session")
def airline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one default demo airline shared by the whole session (its stats add up)."""
    airline = launch_airline(tmp_path_factory.mktemp("airline"))
    yield airline.url
    airline.stop()


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Factory: ``make_settings(voe_demo_airline_url=url, ...)`` -> Settings.

    Starts from the documented defaults (not the environment or ``.env``); each
    override is given by attribute name and parsed like the text in ``.env``.
    """
    def build(**overrides: Any) -> Settings:
        by_name = {setting.name: setting for setting in SETTINGS}
        raw = {setting.name: setting.default for setting in SETTINGS}
        given = {name.upper(): str(value) for name, value in overrides.items()}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise KeyError(f"no such setting: {', '.join(unknown)}")
        raw.update(given)
        values = {name: by_name[name].cast(text) for name, text in raw.items()}
        sources = {name: "test" if name in given else "default" for name in raw}
        return Settings(values, sources)

    return build


PLUGIN = REPO / "tests" / "plugins" / "voe_example_backend"


def _plugin_installed() -> bool:
    """Whether the example plugin is installed from here, with the entry points it declares."""
    try:
        found = importlib.metadata.distribution("voe-example-backend")
    except importlib.metadata.PackageNotFoundError:
        return False
    direct = found.read_text("direct_url.json")
    if not direct or json.loads(direct).get("url") != PLUGIN.as_uri():
        return False
    declared = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]["entry-points"]
    wanted = {(group, name, value) for group, names in declared.items()
              for name, value in names.items()}
    return wanted == {(entry.group, entry.name, entry.value) for entry in found.entry_points}


@pytest.fixture(scope="session")
def example_backend() -> str:
    """Install tests/plugins/voe_example_backend in editable mode (once) and return its name.

    It holds the third-party backends ``example`` and ``example-picky``, a fetch
    middleware and a fare pipeline stage, each through its entry point.
    """
    if not _plugin_installed():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                        "--no-deps", "-e", str(PLUGIN)], check=True, timeout=300,
                       capture_output=True)
    return "example"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """Each store the sink can use, empty: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        with SqliteStore(tmp_path / "fares.db") as opened:
            yield opened
        return
    with fresh_schema() as url, open_store(url) as opened:
        yield opened


# Seconds the session's end waits for its child processes to exit before calling them leaked.
LEAK_GRACE = 5.0


def _descendants(root: int) -> dict[int, str]:
    """Live (non-zombie) processes under ``root``, as PID -> command line, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
                except OSError:
                    command = b""
                found[pid] = command.replace(b"\0", b" ").decode(errors="replace").strip()
                frontier.append(pid)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left a process behind (each is then stopped by its PID)."""
    if hasattr(session.config, "workerinput"):
        return
    deadline = time.monotonic() + LEAK_GRACE
    leaked = _descendants(os.getpid())
    while leaked and time.monotonic() < deadline:
        time.sleep(0.1)
        leaked = _descendants(os.getpid())
    if not leaked:
        return
    lines = "\n".join(f"  pid {pid}: {command[:200]}" for pid, command in sorted(leaked.items()))
    message = f"FAILED: {len(leaked)} process(es) left running by the tests:\n{lines}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        print(message, file=sys.stderr)
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # already gone
            continue
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
