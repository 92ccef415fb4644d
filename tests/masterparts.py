"""Helpers for the master's unit tests: a fake clock, a tiny plan, leasing state on a ledger."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from voe import protocol
from voe.master.cycles import CycleBook
from voe.master.leasing import Leasing
from voe.master.ledger import Ledger
from voe.master.plan import Plan, load_plan
from voe.master.rounds import RoundBook
from voe.master.scheduling.clock import ScheduleClock

# A wall time the fake clocks start from (2027-01-15).
WALL_START = 1_800_000_000.0
# Seconds a silent worker keeps its jobs in these tests (heartbeat 1 s x liveness 5).
LIVENESS = 5.0


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on."""
        self.now += seconds


def tiny_plan(tmp_path: Path, extra_plan: str = "", extra_routes: str = "",
              cycle: str | None = '"once"', airports: str = '["GRU", "GIG"]') -> Plan:
    """Two airports, three dates: six jobs a cycle (by default), 30 s leases, 3 attempts;
    ``cycle`` None leaves the key out."""
    path = tmp_path / "tiny.toml"
    cycle_line = "" if cycle is None else f"cycle = {cycle}"
    path.write_text(f"""
[plan]
name = "tiny"
trip = "oneway"
{cycle_line}
max_attempts = 3
retry_delay = "10s"
retry_delay_max = "1m"
lease_seconds = 30
{extra_plan}

[dates]
start_in_days = 1
days_ahead = 3
step_days = 1

[[routes]]
backend = "demo"
airports = {airports}
{extra_routes}
""")
    return load_plan(path)


class Parts:
    """A ledger, a cycle book and leasing state on fake clocks, with the hooks they emit."""

    def __init__(self, tmp_path: Path, plan: Plan, max_unstored: int = 5000,
                 clock: FakeClock | None = None, wall: FakeClock | None = None) -> None:
        self.tmp_path, self.plan = tmp_path, plan
        self.clock = clock or FakeClock(100.0)
        self.wall = wall or FakeClock(WALL_START)
        self.hooks: list[tuple] = []
        self.ledger = Ledger(tmp_path / "ledger.db")
        if plan.scheduler == "cycle":
            self.book = CycleBook(plan, self.ledger, plan.once, self.clock, self.wall,
                                  today=lambda: dt.date(2027, 1, 15))
        else:
            self.book = RoundBook(plan, self.ledger, self.clock, self.wall,
                                  ScheduleClock(wall=self.wall))
        self.state = Leasing(plan, self.ledger, self.book, LIVENESS, max_unstored, self.clock,
                             self.wall, lambda *hook: self.hooks.append(hook),
                             random.Random(7))

    def start(self) -> Parts:
        """Resume like a master at start-up."""
        self.state.resume()
        self.book.resume()
        return self

    def restart(self) -> Parts:
        """Close this ledger and start anew on it, clocks moved on by a new process."""
        self.state.flush()
        self.ledger.close()
        return Parts(self.tmp_path, self.plan, self.state.max_unstored,
                     FakeClock(7.0), self.wall).start()

    def join(self, name: str = "w1", concurrency: int = 2, prefetch: int = 1,
             held: tuple = ()):
        """A worker says hello."""
        return self.state.hello(name.encode(), protocol.Hello(name, concurrency, prefetch, held))

    def lease(self, peer, count: int | None = None):
        """Lease up to ``count`` jobs (the worker's free credit by default) to ``peer``."""
        jobs = self.state.next_jobs(peer.free if count is None else count)
        return self.state.lease(peer, jobs)

    def lease_again(self, peer, job):
        """Lease until ``job`` comes out again (others first, in ledger order); its new attempt."""
        for _ in range(10):
            self.clock.advance(1)  # past the idle pause between two looks at the ledger
            found = [leased for leased in self.lease(peer, 100) if leased.id == job.id]
            if found:
                return found[0]
        raise AssertionError(f"{job.id} was not leased again")

    def ack(self, job, status: str = "done", error: str | None = None,
            answer: int | None = None) -> None:
        """The sink acknowledges ``job``'s attempt (``answer``: the digest of a done's)."""
        self.state.acknowledge(protocol.Ack(job.cycle, job.id, job.attempt, status, error,
                                            answer=answer))

    def row(self, job) -> dict:
        """The ledger's row of ``job``, after a flush."""
        self.state.flush()
        found = self.ledger.job(job.cycle, job.id)
        assert found is not None
        return found
