"""Cycle scheduling on fake clocks: expansion in batches, finishing, the next cycle's time,
and what a restart (or a step of the wall clock) does to them."""

from __future__ import annotations

from masterparts import Parts, tiny_plan

from voe.master import cycles


def settle(parts: Parts, peer) -> None:
    """Lease and acknowledge every job there is."""
    while jobs := parts.lease(peer, 100):
        for job in jobs:
            parts.ack(job)
        parts.clock.advance(1)


def test_a_once_plan_runs_one_cycle_and_finishes(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path)).start()
    assert list(parts.book.cycles) == [1] and not parts.book.due()
    settle(parts, parts.join(concurrency=100))
    parts.state.flush()
    parts.book.close_finished(parts.state.leased_in)
    assert parts.book.cycles == {} and not parts.book.due()
    assert parts.ledger.counts(1)["done"] == 6


def test_an_open_lease_keeps_its_cycle_open(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path)).start()
    peer = parts.join(concurrency=100)
    jobs = parts.lease(peer, 100)
    for job in jobs[1:]:
        parts.ack(job)
    parts.state.flush()
    parts.book.close_finished(parts.state.leased_in)
    assert list(parts.book.cycles) == [1]


def test_the_plan_is_expanded_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(cycles, "EXPAND_BATCH", 4)
    parts = Parts(tmp_path, tiny_plan(tmp_path)).start()
    peer = parts.join(concurrency=100)
    assert len(parts.lease(peer, 100)) == 4
    assert parts.ledger.latest_cycle().expanded == 4
    parts.clock.advance(1)
    assert len(parts.lease(peer, 100)) == 2 and 1 not in parts.book.expanders


def test_an_interval_plan_starts_the_next_cycle_on_time(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path, cycle='"1h"')).start()
    assert list(parts.book.cycles) == [1] and not parts.book.due()
    parts.clock.advance(3599)
    assert not parts.book.due()
    parts.clock.advance(1)
    assert parts.book.due()
    assert parts.book.start().cycle == 2 and not parts.book.due()


def test_a_restart_keeps_the_schedule_and_resumes_expansion(tmp_path, monkeypatch):
    monkeypatch.setattr(cycles, "EXPAND_BATCH", 4)
    parts = Parts(tmp_path, tiny_plan(tmp_path, cycle='"1h"')).start()
    parts.lease(parts.join(concurrency=100), 100)
    parts.wall.advance(600)
    again = parts.restart()
    assert list(again.book.cycles) == [1] and again.book.expanders[1][1] == 4
    assert again.book.next_cycle_at == again.clock() + 3000  # due an hour after its start
    peer = again.join(concurrency=100)
    fresh = again.lease(peer, 100)
    assert len(fresh) == 2 and all(job.attempt == 1 for job in fresh)


def test_a_wall_clock_stepped_back_never_postpones_the_next_cycle(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path, cycle='"1h"')).start()
    parts.wall.advance(-86_400)
    again = parts.restart()
    assert again.book.next_cycle_at <= again.clock() + 3600


def test_a_restart_long_after_starts_a_due_cycle_at_once(tmp_path):
    parts = Parts(tmp_path, tiny_plan(tmp_path, cycle='"1h"')).start()
    settle(parts, parts.join(concurrency=100))
    parts.state.flush()
    parts.book.close_finished(parts.state.leased_in)
    parts.wall.advance(7200)
    again = parts.restart()
    assert again.book.cycles == {} and again.book.due()


def test_a_changed_plan_lets_the_open_cycle_finish_with_what_it_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(cycles, "EXPAND_BATCH", 4)
    parts = Parts(tmp_path, tiny_plan(tmp_path)).start()
    parts.lease(parts.join(concurrency=100), 100)
    parts.state.flush()
    parts.ledger.close()
    changed = Parts(tmp_path, tiny_plan(tmp_path, airports='["GRU", "GIG", "BSB"]')).start()
    assert changed.book.cycles[1].total == 4 and 1 not in changed.book.expanders
