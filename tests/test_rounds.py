"""A continuous scheduler's rounds on fake clocks: searches chosen within the budget, never
twice at once, each observation kept once, and estimates resumed after a restart."""

from __future__ import annotations

import pytest
from masterparts import Parts, tiny_plan

from voe.master import rounds
from voe.master.plan import PlanError
from voe.master.rounds import RoundBook


def continuous(tmp_path, scheduler: str = "freshness", rate: float = 1.0):
    """The tiny plan (six searches) under ``scheduler``, ``rate`` searches a second."""
    return tiny_plan(tmp_path, extra_plan=f'scheduler = "{scheduler}"', cycle=None,
                     extra_routes=f"requests_per_second = {rate}")


def observations(parts: Parts) -> list[tuple]:
    parts.state.flush()
    return parts.ledger.db.execute(
        "SELECT cycle, search, answer FROM observations ORDER BY cycle, search").fetchall()


@pytest.mark.parametrize("scheduler", ["ttl", "adaptive", "freshness"])
def test_searches_are_chosen_a_budgets_worth_at_a_time(tmp_path, scheduler):
    parts = Parts(tmp_path, continuous(tmp_path, scheduler, rate=1.0)).start()
    assert isinstance(parts.book, RoundBook) and not parts.book.cycles and not parts.plan.once
    peer = parts.join(concurrency=100)
    # One search a second, chosen two seconds' worth at a time (the pace is the pacing
    # middleware's): never more pending than that, every search once, all in round 1.
    seen = []
    for _ in range(5):
        batch = parts.lease(peer, 100)
        assert len(batch) <= 2
        seen.extend(batch)
        parts.clock.advance(1)
    assert len(seen) == 6 == len({job.id for job in seen}) and {job.cycle for job in seen} == {1}
    assert parts.ledger.latest_cycle().total == 6


def test_a_search_out_on_a_lease_is_never_chosen_again(tmp_path):
    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    assert len(out) == 6  # every search once, though the budget would allow more
    parts.clock.advance(1)
    assert parts.lease(peer, 100) == []
    parts.ack(out[0], answer=1)
    parts.clock.advance(1)
    again = parts.lease(peer, 100)
    # Only the search that came back; a search already in round 1 opens round 2.
    assert [(job.id, job.cycle) for job in again] == [(out[0].id, 2)]


def test_each_observation_is_kept_once_however_often_it_is_acknowledged(tmp_path):
    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    parts.ack(out[0], answer=11)
    parts.ack(out[0], answer=12)  # the same attempt again (a resent ack)
    parts.state.flush()
    parts.ack(out[0], answer=13)
    assert observations(parts) == [(1, out[0].id, 11)]
    search = parts.book.schedulers["demo"].searches[out[0].id]
    assert search.observations == 1 and search.last_answer == 11


def test_a_search_failed_for_good_can_be_chosen_again_without_an_observation(tmp_path):
    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    parts.ack(out[0], status="permanent", error="no such route")
    assert observations(parts) == []
    parts.clock.advance(1)
    assert [job.id for job in parts.lease(peer, 100)] == [out[0].id]


def test_a_restarted_master_resumes_estimates_and_searches_in_flight(tmp_path):
    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    for index, job in enumerate(out[:4]):
        parts.ack(job, answer=index)
    parts.wall.advance(3600)
    parts.clock.advance(1)
    again = parts.lease(peer, 100)
    for job in again:
        parts.ack(job, answer=99)  # every one of them changed
    before = {key: (search.observations, search.changes, search.last_answer)
              for key, search in parts.book.schedulers["demo"].searches.items()}
    restarted = parts.restart()
    after = {key: (search.observations, search.changes, search.last_answer)
             for key, search in restarted.book.schedulers["demo"].searches.items()}
    assert after == before and sum(count for count, _, _ in after.values()) == 8
    # The two searches still out are not chosen again after the restart.
    assert set(restarted.book.busy) == {job.id for job in out[4:]}
    peer = restarted.join(concurrency=100)
    assert not {job.id for job in restarted.lease(peer, 100)} & {job.id for job in out[4:]}


def test_a_round_finishes_once_it_is_old_and_drained(tmp_path, monkeypatch):
    monkeypatch.setattr(rounds, "ROUND_SECONDS", 60.0)
    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    peer = parts.join(concurrency=100)
    for job in parts.lease(peer, 100):
        parts.ack(job, answer=1)
    parts.state.flush()
    parts.book.close_finished(parts.state.leased_in)
    assert list(parts.book.cycles) == [1]  # still taking searches
    parts.wall.advance(61)
    parts.book.close_finished(parts.state.leased_in)
    assert parts.book.cycles == {} and parts.ledger.counts(1)["done"] == 6


@pytest.mark.parametrize(("plan", "routes", "message"), [
    ('scheduler = "sometimes"', "", "plan.scheduler: must be one of cycle, ttl"),
    ('scheduler = "ttl"', "", "routes.requests_per_second: the \"ttl\" scheduler spends"),
    ('scheduler = "freshness"\ncycle = "6h"', "requests_per_second = 1",
     "plan.cycle: the \"freshness\" scheduler runs searches as they fall due"),
])
def test_a_plan_names_a_scheduler_it_can_run(tmp_path, plan, routes, message):
    with pytest.raises(PlanError, match=message):
        tiny_plan(tmp_path, extra_plan=plan, cycle=None, extra_routes=routes)


def test_audits_re_search_stored_searches_at_random_and_measure_staleness(tmp_path):
    parts = Parts(tmp_path, continuous(tmp_path, "ttl", rate=2.0)).start()
    parts.book.random.seed(3)
    peer = parts.join(concurrency=100)
    for _ in range(3):  # every search observed once
        for job in parts.lease(peer, 100):
            parts.ack(job, answer=1)
        parts.clock.advance(1)
    parts.book.audit_share = 0.5
    parts.wall.advance(600)  # nothing is due for ttl now: only audits go out
    audited, last, changed = [], dict.fromkeys(parts.book.jobs, 1), 0
    for _ in range(4):
        for job in parts.lease(peer, 100):
            audited.append(job)
            answer = 1 + len(audited) % 2  # the airline changes its answers now and then
            changed += answer != last[job.id]
            last[job.id] = answer
            parts.ack(job, answer=answer)
        # Both clocks move: a search audited twice is observed at two instants (one
        # observed twice at the same instant keeps the first, as out of order).
        parts.clock.advance(1)
        parts.wall.advance(1)
    assert audited and len(audited) <= 8
    summary = parts.book.audits.summary()
    assert summary["audits"] == len(audited) and 0 < changed < len(audited)
    assert summary["estimated_stale"] == pytest.approx(changed / len(audited))
    assert summary["by_age"][0]["age"] == "under 1 h"
    assert summary["by_age"][0]["audits"] == len(audited)  # answers about ten minutes old
    kept = [row for row in observations(parts) if row[0] > 1]
    assert len(kept) == len(audited)
    assert parts.restart().book.audits.summary() == summary  # resumed from the ledger


def test_a_done_whose_search_left_the_plan_or_failed_before_still_has_its_observation(tmp_path):
    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    first = min(out, key=lambda job: job.date)
    parts.wall.advance(86_400)  # a day later the first date is out of the plan's window
    parts.clock.advance(1)
    parts.lease(peer, 100)  # the scheduler takes the plan's searches of the new day
    assert first.id not in parts.book.jobs
    parts.ack(first, answer=5)
    failed = next(job for job in out if job.date != first.date)
    parts.ack(failed, status="permanent", error="gone")
    parts.ack(failed, answer=6)  # a late done of the same attempt after it failed for good
    kept = {(cycle, search): answer for cycle, search, answer in observations(parts)}
    assert kept == {(first.cycle, first.id): 5, (failed.cycle, failed.id): 6}
    assert parts.ledger.job(failed.cycle, failed.id)["state"] == "done"


def test_voe_status_and_metrics_show_the_measured_staleness(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from voe import metrics
    from voe.master.middlewares import Metrics

    parts = Parts(tmp_path, continuous(tmp_path, rate=50.0)).start()
    parts.book.random.seed(1)
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    for job in out:
        parts.ack(job, answer=1)
    parts.book.audit_share = 0.5
    parts.wall.advance(7200)
    audited = []
    for _ in range(10):
        parts.clock.advance(1)
        for job in parts.lease(peer, 100):
            if job.id in parts.book.auditing:
                audited.append(job)
            parts.ack(job, answer=1 if len(audited) % 4 else 2)
    parts.state.flush()
    summary = parts.book.audits.summary()
    assert summary["audits"] >= 2 and summary["by_age"][1]["audits"] >= 1  # 1-6 h old

    class FakeMaster:
        book = parts.book

    Metrics().tick(FakeMaster())
    assert metrics.MASTER_AUDITS._value.get() == summary["audits"]
    assert metrics.MASTER_STALE._value.get() == pytest.approx(summary["estimated_stale"])

    env = dict(os.environ, VOE_DATA_DIR=str(tmp_path))
    shown = subprocess.run([sys.executable, "-m", "voe", "status", "--json"], env=env,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert json.loads(shown.stdout)["freshness"] == summary
    text = subprocess.run([sys.executable, "-m", "voe", "status"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout
    assert f"of {summary['audits']} audits still correct" in text
    assert "freshness by age: " in text and "% of " in text.split("freshness by age: ")[1]


def test_after_a_restart_searches_done_in_the_open_round_go_to_a_new_one(tmp_path, monkeypatch):
    monkeypatch.setattr(rounds, "ROUND_SECONDS", 10 * 3600.0)
    parts = Parts(tmp_path, continuous(tmp_path, "ttl", rate=50.0)).start()
    peer = parts.join(concurrency=100)
    out = parts.lease(peer, 100)
    for job in out[:4]:
        parts.ack(job, answer=1)
    restarted = parts.restart()
    restarted.wall.advance(5 * 3600)  # past ttl's 4 h lifetime, within the round's 10 h
    peer = restarted.join(concurrency=100, held=tuple((job.cycle, job.id) for job in out[4:]))
    again = restarted.lease(peer, 100)
    assert sorted(job.id for job in again) == sorted(job.id for job in out[:4])
    assert {job.cycle for job in again} == {2}
