"""The leasing state's rules on a fake clock: credit, acks, expiry, silent workers, backoff,
backpressure and restarts, without a socket."""

from __future__ import annotations

import json
import re

import pytest
from masterparts import LIVENESS, WALL_START, Parts, tiny_plan

from voe import protocol
from voe.master.plan import load_plan
from voe.model import BLOCKED


@pytest.fixture
def parts(tmp_path):
    return Parts(tmp_path, tiny_plan(tmp_path)).start()


def test_a_worker_gets_its_credit_and_no_more(parts):
    busy, idle = parts.join("busy", concurrency=2, prefetch=1), parts.join("idle", 1, 0)
    assert [peer.name for peer in parts.state.peers.with_credit()] == ["busy", "idle"]
    leased = parts.lease(busy)
    assert len(leased) == 3 and busy.free == 0 and busy.max_held == 3
    assert [peer.name for peer in parts.state.peers.with_credit()] == ["idle"]
    assert len(parts.lease(idle)) == 1 and parts.state.peers.with_credit() == []


def test_credit_comes_back_when_the_worker_finishes(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path)).start()
    peer = parts.join(concurrency=2, prefetch=1)
    first = parts.lease(peer)
    assert [job.attempt for job in first] == [1, 1, 1] and peer.free == 0
    assert parts.lease(peer) == []
    parts.state.finished(peer, ((first[0].cycle, first[0].id),))
    assert peer.free == 1 and peer.finished == 1
    assert len(parts.lease(peer)) == 1
    assert parts.row(first[1])["state"] == "leased"
    assert parts.row(first[1])["worker"] == "w1"


def test_a_done_ack_ends_the_job_once(parts):
    peer = parts.join()
    job = parts.lease(peer, 1)[0]
    parts.ack(job)
    parts.ack(job)  # the sink may acknowledge twice: still one job done
    assert parts.row(job)["state"] == "done" and job.id not in {j.id for j in parts.state.ready}
    assert (job.cycle, job.id) not in parts.state.leases
    while parts.lease(peer, 1):
        pass
    assert all(key != (job.cycle, job.id) for key in parts.state.leases)
    assert ("after_ack", (job.cycle, job.id), None) in parts.hooks


def test_a_stale_failure_ack_changes_nothing(parts):
    peer = parts.join()
    job = parts.lease(peer, 1)[0]
    parts.ack(job._replace(attempt=job.attempt + 5), "transient", "old news")
    assert (job.cycle, job.id) in parts.state.leases


def test_an_expired_lease_goes_back_to_pending_at_once_then_fails(parts):
    peer = parts.join(concurrency=10, prefetch=0)
    job = parts.lease(peer, 1)[0]
    parts.clock.advance(29)
    parts.state.peers.get(peer.identity)  # the worker is alive
    parts.state.sweep()
    assert (job.cycle, job.id) in parts.state.leases
    for attempt in (1, 2, 3):
        parts.clock.advance(31)
        parts.state.peers.get(peer.identity)
        parts.state.sweep()
        row = parts.row(job)
        assert row["attempt"] == attempt
        if attempt < 3:
            assert row["state"] == "pending" and row["not_before"] is None  # no backoff
            job = parts.lease_again(peer, job)
    assert row["state"] == "failed" and row["last_error"] == "no result before the lease expired"
    expired = [hook for hook in parts.hooks if hook[0] == "after_expire" and hook[1].id == job.id]
    assert [hook[1].attempt for hook in expired] == [1, 2, 3]
    assert parts.state.stats["expired"] == peer.errors >= 3


def test_a_finished_result_is_held_while_the_sink_is_silent(parts):
    peer = parts.join()
    job = parts.lease(peer, 1)[0]
    parts.state.finished(peer, ((job.cycle, job.id),))
    assert parts.state.room() == 5000 - 1
    parts.clock.advance(31)
    parts.state.peers.get(peer.identity)
    parts.state.sweep()
    assert (job.cycle, job.id) in parts.state.leases and parts.state.held_for_sink == 1
    parts.clock.advance(LIVENESS + 1)
    parts.state.sink.acknowledged(parts.clock())  # it stored newer results: ours was lost
    parts.state.peers.get(peer.identity)
    parts.state.sweep()
    assert (job.cycle, job.id) not in parts.state.leases
    assert parts.row(job)["state"] == "pending"


def test_backpressure_stops_leasing_at_the_unstored_limit(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path), max_unstored=2).start()
    peer = parts.join(concurrency=10)
    jobs = parts.lease(peer, 3)
    parts.state.finished(peer, tuple((job.cycle, job.id) for job in jobs[:2]))
    assert parts.state.room() == 0
    parts.ack(jobs[0])
    assert parts.state.room() == 1


def test_a_silent_worker_loses_its_jobs_and_a_beating_one_keeps_them(parts):
    silent, beating = parts.join("silent"), parts.join("beating")
    lost = parts.lease(silent)
    kept = parts.lease(beating)
    for _ in range(int(LIVENESS) + 1):
        parts.clock.advance(1)
        parts.state.peers.get(beating.identity)
        parts.state.sweep()
    assert list(parts.state.peers.by_identity) == [b"beating"]
    assert all((job.cycle, job.id) not in parts.state.leases for job in lost)
    assert all((job.cycle, job.id) in parts.state.leases for job in kept)
    assert parts.row(lost[0])["last_error"] == "worker silent stopped sending heartbeats"
    assert ("after_worker_left", silent, "stopped sending heartbeats") in parts.hooks


def test_a_failed_attempt_waits_out_its_backoff(parts):
    peer = parts.join(concurrency=10, prefetch=0)
    job = next(leased for leased in parts.lease(peer) if leased.origin == "GRU")
    parts.ack(job, "transient", "HTTP 503")
    row = parts.row(job)
    wait = row["not_before"] - WALL_START
    assert row["state"] == "pending" and 8 <= wait <= 12  # 10 s +/- 20%
    assert parts.lease(peer) == []  # not due yet, and the others are out
    parts.wall.advance(wait + 0.1)
    again = parts.lease_again(peer, job)
    assert again.attempt == 2
    parts.ack(again, "transient", "HTTP 503")
    second = parts.row(job)["not_before"] - parts.wall()
    assert 16 <= second <= 24  # doubled
    failure = [hook for hook in parts.hooks if hook[0] == "after_failure"]
    assert failure[0][1:4] == (job, "transient", "HTTP 503")


def test_a_permanent_error_fails_at_once_and_a_block_is_retried(parts):
    peer = parts.join(concurrency=10, prefetch=0)
    first, second = parts.lease(peer, 2)
    parts.ack(first, "permanent", "no such route")
    parts.ack(second, BLOCKED, None)
    assert parts.row(first)["state"] == "failed" and parts.row(first)["attempt"] == 1
    assert parts.row(second)["state"] == "pending"
    assert parts.row(second)["last_error"] == BLOCKED
    statuses = [(hook[2], hook[4] is None) for hook in parts.hooks if hook[0] == "after_failure"]
    assert statuses == [("permanent", True), (BLOCKED, False)]


def test_the_last_attempt_ends_failed_with_its_error(parts):
    peer = parts.join(concurrency=10, prefetch=0)
    job = parts.lease(peer, 1)[0]
    for _ in range(3):
        parts.ack(job, "parse", "no fares table")
        parts.wall.advance(120)
        if parts.row(job)["state"] == "pending":
            job = parts.lease_again(peer, job)
    row = parts.row(job)
    assert row["state"] == "failed" and row["attempt"] == 3
    assert row["last_error"] == "no fares table" and parts.state.stats["failed"] == 1


def test_a_restart_rebuilds_leases_from_the_ledger(parts):
    peer = parts.join(concurrency=3, prefetch=0)
    out = parts.lease(peer)
    parts.ack(out[0])
    again = parts.restart()
    keys = {(job.cycle, job.id) for job in out[1:]}
    assert set(again.state.leases) == keys  # the done one is not out again
    # A lease ends no later than one lease length from the new process's start.
    assert all(lease.deadline <= again.clock() + 30 for lease in again.state.leases.values())
    assert again.book.cycles and not again.book.due()
    # The worker re-announces what it holds: those jobs are its again, not re-issued.
    back = again.join(concurrency=3, prefetch=0, held=tuple(keys))
    assert back.held == keys and back.free == 1
    fresh = again.lease(back)
    assert len(fresh) == 1 and (fresh[0].cycle, fresh[0].id) not in keys
    assert fresh[0].id != out[0].id


def test_a_restart_after_a_clock_step_back_keeps_leases_bounded(parts):
    peer = parts.join()
    parts.lease(peer)
    parts.wall.advance(-3600)  # the wall clock stepped back an hour while it was down
    again = parts.restart()
    assert all(lease.deadline <= again.clock() + 30 for lease in again.state.leases.values())


def _rows_updated(statements: list[str]) -> list[str]:
    """What each row write of the jobs table set first, once per row: a grouped UPDATE
    names its rows' numbers as a JSON array, any other writes one row."""
    found = []
    for sql in statements:
        if sql.startswith("UPDATE jobs"):
            numbers = re.search(r"json_each\('(\[[^']*\])'\)", sql)
            found += [sql.split(" SET ")[1][:24]] * (len(json.loads(numbers[1])) if numbers else 1)
    return found


def test_a_lease_and_its_done_in_one_flush_are_one_ledger_write(parts):
    peer = parts.join(concurrency=3, prefetch=0)
    parts.state.flush()
    quick, slow, retried = parts.lease(peer, 3)
    statements: list[str] = []
    parts.state.ledger.db.set_trace_callback(statements.append)
    try:
        parts.ack(quick)  # done before the flush: written once, with its lease's fields
        parts.ack(retried, "transient", "HTTP 503")  # a failure keeps its lease write
        parts.state.flush()
    finally:
        parts.state.ledger.db.set_trace_callback(None)
    updates = _rows_updated(statements)
    assert updates == ["state = 'leased', deadli"] * 2 + ["state = 'done', deadline"] + [
        "state = 'pending', deadl"]
    row = parts.row(quick)
    assert (row["state"], row["worker"], row["attempt"], row["deadline"]) == ("done", "w1", 1,
                                                                              None)
    assert parts.row(slow)["state"] == "leased" and parts.row(slow)["worker"] == "w1"
    parts.ack(slow)  # its lease was written by an earlier flush: a plain done now
    assert parts.row(slow)["state"] == "done" and parts.row(retried)["state"] == "pending"


def test_a_calendars_cheapest_days_in_the_window_are_searched_in_full_once(tmp_path):
    tiny_plan(tmp_path)  # written to tiny.toml, then made a calendar plan
    path = tmp_path / "tiny.toml"
    path.write_text(path.read_text().replace(
        "days_ahead = 3", "days_ahead = 10\ncalendar = true\ncheapest_days = 2"))
    parts = Parts(tmp_path, load_plan(path)).start()  # the cycle starts 2027-01-15
    peer = parts.join(concurrency=10, prefetch=0)
    calendars = parts.lease(peer)
    assert [job.id for job in calendars] == ["demo:GRU-GIG:2027-01", "demo:GIG-GRU:2027-01"]
    days = (("2027-01-14", "10.00"),  # before the window (2027-01-16 to 2027-01-25)
            ("2027-01-16", "300.00"), ("2027-01-17", "90.50"), ("2027-01-20", "90.50"),
            ("2027-01-22", "120.00"), ("2027-01-30", "5.00"))  # after it
    ack = protocol.Ack(1, calendars[0].id, calendars[0].attempt, "done", None, days)
    parts.state.acknowledge(ack)
    parts.state.acknowledge(ack)  # acknowledged twice: the days are searched once
    parts.clock.advance(1)
    found = parts.lease(peer)
    assert [job.id for job in found] == ["demo:GRU-GIG:2027-01-17", "demo:GRU-GIG:2027-01-20"]
    assert not any(job.calendar for job in found)
    assert parts.row(calendars[0])["state"] == "done"
    assert parts.ledger.counts(1) == {"pending": 0, "leased": 3, "done": 1, "failed": 0}
    for job in (calendars[1], *found):
        parts.ack(job)
    parts.state.flush()
    parts.book.close_finished(parts.state.leased_in)
    assert parts.ledger.counts(1)["done"] == 4 and parts.ledger.open_cycles() == []
