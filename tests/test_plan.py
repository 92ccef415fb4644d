"""The plan expands lazily and exactly: counts, order, skipping, round trips, budgets."""

from __future__ import annotations

import datetime as dt

import pytest

from voe.plan import PlanError, load_plan

START = dt.date(2026, 12, 1)


def write(tmp_path, text):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_demo_plan_is_the_default_and_counts_without_expanding():
    plan = load_plan()
    jobs = list(plan.jobs(1, START))
    assert plan.name == "demo" and plan.once
    assert len(jobs) == plan.job_count() == 280
    assert len({job.id for job in jobs}) == 280
    assert not any(job.origin == "GRU" and job.destination == "GIG" for job in jobs)
    assert jobs[0].date == "2026-12-02"  # start_in_days = 1


def test_skip_resumes_exactly_where_expansion_stopped():
    plan = load_plan()
    everything = list(plan.jobs(4, START))
    for skip in (0, 1, 9, 10, 279, 280):
        assert list(plan.jobs(4, START, skip=skip)) == everything[skip:]


def test_round_trips_budgets_and_intervals(tmp_path):
    plan = load_plan(write(tmp_path, """
[plan]
trip = "round"
cycle = "6h"
[dates]
days_ahead = 4
step_days = 2
stay_days = [3, 7]
[[routes]]
backend = "demo"
airports = ["GRU", "REC"]
requests_per_second = 5
[[routes]]
backend = "demo"
airports = ["SSA", "POA"]
requests_per_second = 2.5
"""))
    jobs = list(plan.jobs(1, START))
    assert plan.interval == 6 * 3600 and not plan.once
    assert len(jobs) == plan.job_count() == 2 * 2 * 2 * 2  # routes x pairs x dates x stays
    assert {(job.date, job.return_date) for job in jobs} == {
        ("2026-12-02", "2026-12-05"), ("2026-12-02", "2026-12-09"),
        ("2026-12-04", "2026-12-07"), ("2026-12-04", "2026-12-11")}
    assert jobs[0].id == "demo:GRU-REC:2026-12-02:2026-12-05"
    assert plan.budgets() == {"demo": 2.5}


@pytest.mark.parametrize("cycle, seconds", [("once", None), ("90", 90), (90, 90), ("30m", 1800),
                                            ("1d", 86400), ("2.5h", 9000)])
def test_cycle_intervals(tmp_path, cycle, seconds):
    value = f'"{cycle}"' if isinstance(cycle, str) else cycle
    plan = load_plan(write(tmp_path, f"""
[plan]
cycle = {value}
[dates]
days_ahead = 1
[[routes]]
backend = "demo"
airports = ["GRU", "REC"]
"""))
    assert plan.interval == seconds


@pytest.mark.parametrize("fragment", ["requests_per_second = 0", 'requests_per_second = "x"',
                                      "colour = 1"])
def test_bad_route_keys(tmp_path, fragment):
    with pytest.raises(PlanError, match=r"routes\[0\]\."):
        load_plan(write(tmp_path, f"""
[plan]
[dates]
days_ahead = 1
[[routes]]
backend = "demo"
airports = ["GRU", "REC"]
{fragment}
"""))
