"""A local voe cluster for tests: real processes on free loopback ports, stopped by PID.

``LocalCluster`` is the part the benchmarks share (bench/roles.py builds its cluster
on it): one data dir, free ports, the ledger and the logs; each user says how a role's
process starts.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import zmq

from voe.processes import Child

ROOT = Path(__file__).resolve().parent.parent

SMALL_PLAN = """
[plan]
name = "test"
cycle = "once"
max_attempts = {max_attempts}
retry_delay = "1s"  # quick retries keep the suite fast; tests/test_chaos.py keeps the default
lease_seconds = {lease_seconds}

[dates]
start_in_days = 1
days_ahead = {days}
step_days = 1

[[routes]]
backend = "{backend}"
airports = {airports}
"""


# Ports this process handed out lately: the kernel may give a port just probed and closed
# to the next probe, and two roles of one test must never be told the same port.
_HANDED: deque[int] = deque(maxlen=2000)


def free_port() -> int:
    """A TCP port free on loopback right now, none of the last 2,000 this process gave."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _HANDED:
            _HANDED.append(port)
            return port
    raise RuntimeError("no free loopback port that was not handed out lately")


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.1) -> object:
    """Poll ``predicate`` until it is truthy (bounded in time); fail with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Airline:
    """The demo airline as a real `voe demo-airline` process."""

    def __init__(self, tmp: Path, latency_ms: int = 0, fail_routes: tuple[str, ...] = (),
                 port: int | None = None, options: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["demo-airline", "--port", str(self.port), "--latency-ms", str(latency_ms),
                *options]
        for route in fail_routes:
            args += ["--fail-route", route]
        self.child = Child("airline", args, dict(os.environ), tmp, tmp / f"airline-{self.port}.err")
        wait_for(self._answers, 20, "the demo airline to answer")

    def _answers(self) -> bool:
        assert self.child.poll() is None, "the demo airline exited"
        try:
            with urllib.request.urlopen(self.url + "/stats", timeout=1):
                return True
        except OSError:
            return False

    def api_fares(self, origin: str, destination: str, date: str) -> list[dict]:
        """The fares the airline's JSON API gives for a search."""
        query = f"/api/search?origin={origin}&destination={destination}&date={date}"
        for _ in range(50):  # a rate-limited airline answers 429 for a while
            try:
                with urllib.request.urlopen(self.url + query, timeout=10) as answer:
                    return json.load(answer)["fares"]
            except urllib.error.HTTPError as error:
                if error.code != 429:
                    raise
                time.sleep(0.2)
        raise AssertionError(f"the airline kept answering 429 to {query}")

    def stop(self) -> None:
        self.child.stop()


class Role(Protocol):
    """A started role process as a cluster keeps it (``voe.processes.Child``, bench's ``Proc``)."""

    def poll(self) -> int | None: ...

    def stop(self, timeout: float) -> int: ...


R = TypeVar("R", bound=Role)


class LocalCluster(Generic[R]):
    """voe's roles as real processes sharing one data dir and free loopback ports.

    ``base_env`` is the environment the cluster's settings go on top of; ``settings``
    are more ``VOE_*`` values. A subclass says how a role starts (``launch``).
    """

    # Seconds each role gets to stop after SIGTERM (``stop``).
    stop_timeout = 10.0

    def __init__(self, tmp: Path, airline_url: str, base_env: Mapping[str, str],
                 **settings: str) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(base_env)
        self.env.update({
            "VOE_DATA_DIR": str(self.data_dir),
            "VOE_JOBS_PORT": str(free_port()),
            "VOE_CONTROL_PORT": str(free_port()),
            "VOE_RESULTS_PORT": str(free_port()),
            "VOE_HTTP_PORT": str(free_port()),  # the master's dashboard, API and /metrics
            "VOE_SINK_HTTP_PORT": str(free_port()),  # the sink's /metrics
            "VOE_DEMO_AIRLINE_URL": airline_url,
        })
        self.env.update(settings)
        self.children: list[R] = []

    def launch(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> R:
        """Start ``python -m voe ARGS`` as the role process ``name``."""
        raise NotImplementedError

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> R:
        """Start ``python -m voe ARGS`` with this cluster's environment (or ``env``)."""
        child = self.launch(name, args, env or self.env)
        self.children.append(child)
        return child

    def voe(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a `voe` command against this cluster's data dir."""
        return subprocess.run([sys.executable, "-m", "voe", *args], env=self.env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=60, check=check)

    def ledger_rows(self) -> list[dict]:
        with sqlite3.connect(self.data_dir / "ledger.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute("SELECT * FROM jobs ORDER BY seq")]

    def log(self, role: str) -> str:
        """What ``role`` logged in the data dir so far ("" before its log exists)."""
        path = self.data_dir / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, role: str, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the log of ``role`` holds ``needle`` ``count`` times."""
        wait_for(lambda: self.log(role).count(needle) >= count, timeout,
                 f"{count} x {needle!r} in {role}.log", interval=0.05)

    def stop(self) -> None:
        """Stop every role, the last started first."""
        for child in reversed(self.children):
            child.stop(timeout=self.stop_timeout)
        self.children.clear()


class Cluster(LocalCluster[Child]):
    """Master, sink and workers of one test, sharing a data dir and free ports."""

    def __init__(self, tmp: Path, airline_url: str, plan: str | None = None,
                 heartbeat: float = 0.2, **plan_values: object) -> None:
        super().__init__(
            tmp, airline_url, os.environ,
            VOE_HEARTBEAT_SECONDS=str(heartbeat),
            VOE_HEARTBEAT_LIVENESS="5",
            VOE_LOG_LEVEL="DEBUG",
            VOE_HTTP_BACKOFF="0.02",  # retries inside an attempt, quickly
        )
        self.plan_path = tmp / "plan.toml"
        values = {"max_attempts": 3, "lease_seconds": 20, "days": 2, "backend": "demo",
                  "airports": '["GRU", "REC", "SSA"]'} | plan_values
        self.plan_path.write_text(plan if plan is not None else SMALL_PLAN.format(**values))
        self.voe("keys", "init")  # every cluster of the tests runs with CURVE

    def launch(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Child:
        return Child(name, args, env, self.tmp, self.tmp / f"{name}.err")

    def curve_client(self, socket: zmq.Socket, server: str) -> zmq.Socket:
        """Give a raw test socket this cluster's client keys for ``server`` (master/sink)."""
        from voe.keys import client_keys

        server_public, public, secret = client_keys(self.data_dir / "keys", server)
        socket.curve_serverkey = server_public
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        return socket

    def master(self, *extra: str) -> Child:
        return self.spawn("master", "master", "--once", "--plan", str(self.plan_path), *extra)

    def sink(self) -> Child:
        return self.spawn("sink", "sink")

    def worker(self, name: str, concurrency: int = 4, prefetch: int = 1,
               airline_url: str | None = None) -> Child:
        env = dict(self.env)
        if airline_url:
            env["VOE_DEMO_AIRLINE_URL"] = airline_url
        return self.spawn(name, "worker", "--name", name, "--concurrency", str(concurrency),
                          "--prefetch", str(prefetch), env=env)

    def status(self) -> dict:
        """`voe status --json`, whatever its exit status (1 while a lease or cycle is stuck)."""
        return json.loads(self.voe("status", "--json", check=False).stdout)

    def jobs(self) -> dict:
        return self.status()["jobs"]

    def store_rows(self, table: str) -> list[dict]:
        """Every row of a store table: PostgreSQL if ``VOE_STORE_URL`` says so, else fares.db."""
        url = self.env.get("VOE_STORE_URL", "")
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(url, row_factory=dict_row) as pg:
                return list(pg.execute(f"SELECT * FROM {table}"))
        with sqlite3.connect(self.data_dir / "fares.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(f"SELECT * FROM {table}")]

    def wait_master(self, master: Child, timeout: float = 120) -> int:
        """Wait for a `--once` master to exit; return its status."""
        wait_for(lambda: master.poll() is not None, timeout, "the master to finish the cycle")
        return master.poll()


def assert_stored_exactly_once(cluster: Cluster, airline: Airline) -> None:
    """Every job is done, stored once, and its fares equal the airline's JSON API."""
    jobs = cluster.ledger_rows()
    assert jobs and all(job["state"] == "done" for job in jobs), [
        (job["id"], job["state"], job["last_error"]) for job in jobs if job["state"] != "done"]
    results = cluster.store_rows("results")
    keys = [(row["cycle"], row["job_id"]) for row in results]
    assert len(keys) == len(set(keys)) == len(jobs)
    fares = cluster.store_rows("fares")
    by_job: dict[tuple, list] = {}
    for fare in fares:
        by_job.setdefault((fare["cycle"], fare["job_id"]), []).append(
            (fare["flight"], fare["departure"], fare["arrival"], fare["price"], fare["currency"]))
    for job in jobs:
        expected = sorted((f["flight"], f["departure"], f["arrival"], f["price"], f["currency"])
                          for f in airline.api_fares(job["origin"], job["destination"],
                                                     job["date"]))
        assert sorted(by_job.get((job["cycle"], job["id"]), [])) == expected, job["id"]
