"""voe's roles and the demo airline as benchmark children.

``VoeCluster`` is the test suite's cluster (``LocalCluster`` in tests/cluster.py: data
dir, free ports, logs, ledger) with the benchmarks' own processes: each role is a
``Proc``, so its CPU and peak RSS are measured, in a clean environment, so voe is
measured as shipped.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from procs import BENCH, REPO, STOP_TIMEOUT, Proc, clean_env

if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after the installed packages: only to find tests/

from tests.cluster import LocalCluster, free_port, wait_for  # noqa: E402

__all__ = ["VoeCluster", "api_fares", "free_port", "start_airline", "wait_for"]


class VoeCluster(LocalCluster[Proc]):
    """voe's roles as real processes in one data dir, on free loopback ports."""

    stop_timeout = STOP_TIMEOUT

    def __init__(self, tmp: Path, airline_url: str = "http://127.0.0.1:9",
                 **settings: str) -> None:
        super().__init__(tmp, airline_url, clean_env(), **settings)
        self.curve = self._init_keys()

    def _init_keys(self) -> bool:
        """Make the cluster's CURVE keys (``voe keys init``) when this voe has them.

        voe encrypts every socket by default once it has the ``keys`` command; the
        benchmarks measure it as shipped. An older voe without the command needs none.
        """
        done = self.voe("keys", "init", check=False)
        if done.returncode == 0:
            return True
        if "invalid choice" in done.stderr:
            return False
        raise RuntimeError(f"voe keys init failed ({done.returncode}): {done.stderr.strip()}")

    def launch(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Proc:
        return Proc(name, [sys.executable, "-m", "voe", *args], env, self.tmp,
                    self.tmp / f"{name}.out")

    def sink(self) -> Proc:
        """Start the sink."""
        return self.spawn("sink", "sink", "--no-console")

    def worker(self, name: str, concurrency: int | None = None, prefetch: int | None = None,
               probe: bool = False) -> Proc:
        """Start a worker (``probe``: one that notes when it receives its first job)."""
        args = ["worker", "--no-console", "--name", name]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        if prefetch is not None:
            args += ["--prefetch", str(prefetch)]
        if not probe:
            return self.spawn(name, *args)
        proc = Proc(name, [sys.executable, str(BENCH / "probe_worker.py"),
                           str(self.first_job_file(name)), *args],
                    self.env, self.tmp, self.tmp / f"{name}.out")
        self.children.append(proc)
        return proc

    def first_job_file(self, name: str) -> Path:
        """Where a probe worker writes the time (epoch seconds) of its first job."""
        return self.tmp / f"{name}.first-job"

    def master(self, plan: Path, once: bool = True) -> Proc:
        """Start the master on ``plan``."""
        return self.spawn("master", "master", "--no-console", "--plan", str(plan),
                          *(["--once"] if once else []))

    def ledger_states(self) -> dict[str, int]:
        """Jobs by state in the ledger."""
        with sqlite3.connect(self.data_dir / "ledger.db") as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def store_counts(self) -> tuple[int, int]:
        """(results stored, fares stored) in fares.db."""
        with sqlite3.connect(self.data_dir / "fares.db") as db:
            results = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
        return results, fares

    def last_stored_at(self) -> float:
        """Epoch time of the last result the sink stored."""
        with sqlite3.connect(self.data_dir / "fares.db") as db:
            return float(db.execute("SELECT MAX(stored_at) FROM results").fetchone()[0] or 0)


def start_airline(tmp: Path, latency_ms: int, flights: int | None = None,
                  options: Sequence[str] = ()) -> tuple[Proc, str]:
    """Start ``voe demo-airline`` (with ``options``) on a free port; return it and its base
    URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "voe", "demo-airline", "--port", str(port),
            "--latency-ms", str(latency_ms), *options]
    if flights is not None:
        args += ["--flights", str(flights)]
    proc = Proc("airline", args, clean_env(), tmp, tmp / "airline.out")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo airline exited:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url + "/stats", timeout=1):
                return True
        except OSError:
            return False

    wait_for(answers, 20, "the demo airline to answer", interval=0.05)
    return proc, url


def api_fares(url: str, origin: str, destination: str, date: str) -> list[tuple[str, ...]]:
    """The demo airline's JSON fares of one search, as sorted tuples."""
    query = f"/api/search?origin={origin}&destination={destination}&date={date}"
    with urllib.request.urlopen(url + query, timeout=10) as answer:
        fares = json.load(answer)["fares"]
    return sorted((f["flight"], f["departure"], f["arrival"], f["price"], f["currency"])
                  for f in fares)
