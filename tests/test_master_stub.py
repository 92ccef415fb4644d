"""A whole master driven in the test process: stub transport, fake clocks, real ledger.

Workers and the sink are played by frames put into the stub's inbox; what the master
sends is read from the stub. Nothing binds a port and nothing sleeps.
"""

from __future__ import annotations

import logging

import pytest
from masterparts import WALL_START, FakeClock, tiny_plan

from voe import protocol
from voe.master.loop import Master
from voe.master.middleware import Middleware, Middlewares, build_middlewares
from voe.master.middlewares import ControlPlane, Cycles, Metrics, Pacing, WorkersSnapshot
from voe.master.transport import CONTROL, JOBS, StubTransport


class Recorder(Middleware):
    """Notes the hooks it hears."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def after_lease(self, master, peer, jobs):
        self.heard.append(f"lease {peer.name} {len(jobs)}")

    def after_ack(self, master, key, lease):
        self.heard.append(f"ack {key[1]}")

    def after_expire(self, master, job, why):
        self.heard.append(f"expire {job.id}")

    def after_failure(self, master, job, status, error, wait):
        self.heard.append(f"failure {job.id} {status}")


class Broken(Middleware):
    """Fails in every hook it has."""

    def tick(self, master):
        raise RuntimeError("broken tick")

    def can_lease(self, master):
        raise RuntimeError("broken can_lease")

    def after_lease(self, master, peer, jobs):
        raise RuntimeError("broken after_lease")


class Driver:
    """A master on a stub transport with fake clocks, and the worker and sink it talks to."""

    def __init__(self, tmp_path, make_settings, extra=(), cycle='"once"') -> None:
        self.clock, self.wall = FakeClock(50.0), FakeClock(WALL_START)
        self.transport = StubTransport()
        settings = make_settings(voe_data_dir=tmp_path, voe_http_port=0)
        self.master = Master(settings, tiny_plan(tmp_path, cycle=cycle), transport=self.transport,
                             clock=self.clock, wall=self.wall, middlewares=Middlewares([]))
        self.recorder = Recorder()
        defaults = [Pacing.from_master(self.master), Metrics(), WorkersSnapshot(), Cycles(),
                    ControlPlane()]
        self.master.middlewares = Middlewares([*defaults, *extra, self.recorder])
        self.master.start()

    def hello(self, name: str = "w1", concurrency: int = 2, prefetch: int = 0) -> None:
        self.transport.deliver(JOBS, name.encode(), protocol.encode_hello(name, concurrency,
                                                                          prefetch))

    def step(self, seconds: float = 0.0) -> bool:
        self.clock.advance(seconds)
        return self.master.step()

    def jobs_sent(self, name: str = "w1") -> list:
        """The jobs sent to worker ``name`` since the last look."""
        jobs = []
        for identity, frame in self.transport.sent:
            message = protocol.decode(frame)
            if identity == name.encode() and isinstance(message, protocol.Jobs):
                jobs.extend(message.jobs)
        self.transport.sent.clear()
        return jobs

    def ack(self, jobs, status: str = "done", error: str | None = None) -> None:
        acks = [protocol.Ack(job.cycle, job.id, job.attempt, status, error) for job in jobs]
        self.transport.deliver(CONTROL, b"sink", protocol.encode_acks(acks))

    def beat(self, name: str = "w1") -> None:
        self.transport.deliver(JOBS, name.encode(), protocol.encode_heartbeat())

    def state_of(self, job) -> str:
        self.master.state.flush()
        return self.master.ledger.job(job.cycle, job.id)["state"]


@pytest.fixture
def driver(tmp_path, make_settings):
    made = Driver(tmp_path, make_settings)
    yield made
    made.master.close()


def test_the_stub_master_leases_by_credit_and_ends_done(driver):
    driver.hello(concurrency=2)
    driver.step()
    first = driver.jobs_sent()
    assert len(first) == 2 and all(job.attempt == 1 for job in first)
    driver.step(0.01)
    assert driver.jobs_sent() == []  # no credit left
    driver.transport.deliver(JOBS, b"w1", protocol.encode_finished(
        [(job.cycle, job.id) for job in first]))
    driver.ack(first)
    driver.step(0.01)
    assert [driver.state_of(job) for job in first] == ["done", "done"]
    assert len(driver.jobs_sent()) == 2
    assert driver.recorder.heard[:3] == ["lease w1 2", f"ack {first[0].id}", f"ack {first[1].id}"]


def test_the_stub_master_takes_back_an_expired_lease_and_leases_it_again(driver):
    driver.hello("w1", concurrency=1)
    driver.step()
    (lost,) = driver.jobs_sent("w1")
    driver.hello("w2", concurrency=1)
    driver.step(0.01)
    driver.jobs_sent("w2")
    for _ in range(31):  # both workers beat; w1's job gets no result
        driver.beat("w1")
        driver.beat("w2")
        driver.step(1.0)
    assert f"expire {lost.id}" in driver.recorder.heard
    # Back to pending; w1 keeps its credit spent until it says it finished with the job.
    assert driver.state_of(lost) == "pending" and driver.jobs_sent("w1") == []
    driver.hello("w3", concurrency=10)
    driver.step(0.3)
    driver.step(0.3)  # the fresh jobs in hand go first, then the ledger's due ones
    again = {job.id: job.attempt for job in driver.jobs_sent("w3")}
    assert len(again) == 6 and again[lost.id] == 2


def test_the_stub_master_backs_off_a_failed_attempt_and_finishes(driver):
    driver.hello(concurrency=10)
    driver.step()
    jobs = driver.jobs_sent()
    assert len(jobs) == 6
    driver.ack(jobs[:5])
    driver.ack(jobs[5:], "transient", "HTTP 503")
    driver.step(0.01)
    row = driver.master.ledger.job(jobs[5].cycle, jobs[5].id)
    assert row["state"] == "pending" and row["not_before"] > WALL_START + 7
    assert f"failure {jobs[5].id} transient" in driver.recorder.heard
    driver.beat()
    driver.step(1.0)
    assert driver.jobs_sent() == []  # its backoff has not passed
    driver.wall.advance(13)
    driver.beat()
    driver.step(1.0)
    (again,) = driver.jobs_sent()
    assert again.id == jobs[5].id and again.attempt == 2
    driver.ack([again])
    finished = False
    for _ in range(3):
        driver.beat()
        finished = finished or driver.step(1.0)
    assert finished and driver.master.finished
    assert any(isinstance(protocol.decode(frame), protocol.Bye)
               for _, frame in driver.transport.sent)


def test_a_failing_middleware_is_logged_and_contained(tmp_path, make_settings, caplog):
    made = Driver(tmp_path, make_settings, extra=[Broken()])
    caplog.set_level(logging.CRITICAL, logger="voe.master")
    made.hello(concurrency=3)
    made.step()
    assert len(made.jobs_sent()) == 3  # a can_lease that fails does not stop leasing
    assert "lease w1 3" in made.recorder.heard  # the next middleware still heard the hook
    failures = {record.getMessage() for record in caplog.records if record.levelname == "CRITICAL"}
    assert any("after_lease" in text for text in failures)
    assert any("tick" in text for text in failures)
    made.master.close()


def test_a_middleware_that_cannot_start_stops_the_master(driver):
    class NoPort(Middleware):
        def before_start(self, master):
            raise OSError("port busy")

    with pytest.raises(OSError, match="port busy"):
        Middlewares([NoPort()]).emit(driver.master, "before_start")


def test_pausing_through_the_control_plane_stops_leasing(driver):
    control = next(m for m in driver.master.middlewares if isinstance(m, ControlPlane))
    future = control.control.submit("pause")
    driver.hello(concurrency=3)
    driver.step()
    assert future.result(timeout=1) == {"paused": True} and driver.jobs_sent() == []
    control.control.submit("resume")
    driver.step(0.01)
    assert len(driver.jobs_sent()) == 3


def test_the_default_list_is_built_in_order(tmp_path, make_settings):
    made = Driver(tmp_path, make_settings)
    names = [type(m).__name__ for m in
             build_middlewares(made.master, "voe.master.middlewares:Metrics=none")]
    assert names[:4] == ["Pacing", "WorkersSnapshot", "Cycles", "ControlPlane"]
    made.master.close()


def test_a_bad_envelope_or_frame_is_rejected_and_counted(driver):
    driver.transport.inbox.append((JOBS, [b"w1"]))
    driver.transport.deliver(JOBS, b"w1", b"\x00not msgpack")
    driver.step()
    assert driver.master.rejects.total == 2


def test_an_unreachable_worker_is_dropped_and_its_jobs_taken_back(driver):
    driver.transport.unreachable.add(b"w1")
    driver.hello(concurrency=2)
    driver.step()
    assert len(driver.master.state.peers) == 0 and not driver.master.state.leases
    assert driver.transport.sent == []


def test_the_stub_master_resumes_its_leases_after_a_restart(tmp_path, make_settings):
    made = Driver(tmp_path, make_settings)
    made.hello(concurrency=2)
    made.step()
    out = made.jobs_sent()
    made.master.close()
    again = Driver(tmp_path, make_settings)
    assert set(again.master.state.leases) == {(job.cycle, job.id) for job in out}
    again.transport.deliver(JOBS, b"w1", protocol.encode_hello(
        "w1", 2, 0, [(job.cycle, job.id) for job in out]))
    again.step()
    assert again.jobs_sent() == []  # it holds what it had: no credit, nothing re-issued
    again.master.close()


def test_fake_clock_starts_cycles_of_an_interval_plan(tmp_path, make_settings):
    made = Driver(tmp_path, make_settings, cycle='"1h"')
    made.step()
    made.clock.advance(3601)
    made.step()
    assert sorted(made.master.book.cycles) == [1, 2]
    made.master.close()


def test_a_ledger_written_behind_its_back_is_read_when_the_master_is_told(
        tmp_path, make_settings):
    driver = Driver(tmp_path, make_settings, cycle='"1d"')
    try:
        driver.hello(concurrency=10)
        driver.step()
        jobs = driver.jobs_sent()
        driver.ack(jobs[:5])
        driver.ack(jobs[5:], "permanent", "no such airport")
        for _ in range(3):
            driver.beat()
            driver.step(1.0)
        assert driver.state_of(jobs[5]) == "failed" and not driver.master.book.cycles
        # `voe failed retry` with the HTTP port off writes the ledger itself...
        assert driver.master.ledger.retry_failed() == 1
        for _ in range(3):  # ...and the master never polls the ledger for reopened cycles
            driver.beat()
            driver.step(1.0)
        assert not driver.master.book.cycles
        driver.master.ledger_changed = True  # what SIGUSR1 from `voe failed retry` sets
        driver.beat()
        driver.step(1.0)
        assert list(driver.master.book.cycles) == [1]
        (again,) = [job for job in driver.jobs_sent() if job.id == jobs[5].id]
        driver.ack([again])
        for _ in range(2):
            driver.beat()
            driver.step(1.0)
        assert not driver.master.book.cycles  # the reopened cycle is finished again
        assert driver.master.ledger.latest_cycle().finished_at is not None
    finally:
        driver.master.close()
