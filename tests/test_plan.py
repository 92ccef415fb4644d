"""The plan expands lazily and exactly: counts, order, skipping, round trips, budgets."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from voe.master.plan import PlanError, load_plan
from voe.master.retrying import RetryPolicy

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


RETRY_PLAN = """
[plan]
{head}

[dates]
days_ahead = 1

[[routes]]
backend = "demo"
airports = ["GRU", "REC"]
{first}

[[routes]]
backend = "demo"
airports = ["SSA", "POA"]
"""


def test_retry_policy_defaults_plan_keys_and_route_overrides(tmp_path):
    default = load_plan(write(tmp_path, RETRY_PLAN.format(head="", first="")))
    assert default.retry_policy("demo", "GRU", "REC") == RetryPolicy(5, 10.0, 600.0)
    plan = load_plan(write(tmp_path, RETRY_PLAN.format(
        head='max_attempts = 4\nretry_delay = "2s"\nretry_delay_max = "1m"',
        first='max_attempts = 9\nretry_delay = 0.5\nretry_delay_max = "3h"')))
    assert plan.retry_policy("demo", "GRU", "REC") == RetryPolicy(9, 0.5, 3 * 3600.0)
    assert plan.retry_policy("demo", "SSA", "POA") == RetryPolicy(4, 2.0, 60.0)
    # A cycle keeps the max_attempts it started with; a route's own value still wins.
    assert plan.retry_policy("demo", "POA", "SSA", max_attempts=2).max_attempts == 2
    assert plan.retry_policy("demo", "REC", "GRU", max_attempts=2).max_attempts == 9
    assert plan.longest_retry_wait() == 3 * 3600.0


@pytest.mark.parametrize(("head", "first", "message"), [
    ('retry_delay = "soon"', "", "plan.retry_delay: must be a pause"),
    ("retry_delay = -1", "", "plan.retry_delay: must be a pause"),
    ('retry_delay_max = "2d"', "", "plan.retry_delay_max: must be a pause"),
    ("", "max_attempts = 0", "routes[0].max_attempts: must be a whole number"),
    ("", 'retry_delay = "x"', "routes[0].retry_delay: must be a pause"),
])
def test_bad_retry_keys_are_one_line_errors(tmp_path, head, first, message):
    with pytest.raises(PlanError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_plan(write(tmp_path, RETRY_PLAN.format(head=head, first=first)))


def test_retry_waits_double_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_attempts=6, delay=10.0, delay_max=45.0)
    rng = random.Random(7)
    for attempt, nominal in ((1, 10.0), (2, 20.0), (3, 40.0)):
        waits = [policy.wait(attempt, rng) for _ in range(200)]
        assert nominal * 0.8 <= min(waits) < max(waits) <= min(nominal * 1.2, 45.0)
    assert all(policy.wait(attempt, rng) <= 45.0 for attempt in range(4, 80))
    assert RetryPolicy(3, 0.0, 10.0).wait(2, rng) == 0.0
    assert not policy.gives_up(5) and policy.gives_up(6)


SEARCH = """
[plan]
name = "p"
[dates]
days_ahead = 2
{search}
[[routes]]
backend = "demo-api"
airports = ["GRU", "REC"]
"""


def test_search_options_multiply_the_searches_and_name_their_jobs(tmp_path):
    plain = load_plan(write(tmp_path, SEARCH.format(search="")))
    assert plain.options == ("",)
    assert [job.id for job in plain.jobs(1, START)][:1] == ["demo-api:GRU-REC:2026-12-02"]
    plan = load_plan(write(tmp_path, SEARCH.format(search="""[search]
adults = 2
infants = 1
cabin = ["economy", "first"]
pos = ["BR", "US"]
currency = "EUR"
""")))
    jobs = list(plan.jobs(1, START))
    assert len(jobs) == plan.job_count() == 2 * 2 * 2 * 2  # pairs, dates, cabins, places
    assert jobs[0].id == "demo-api:GRU-REC:2026-12-02/adults=2,infants=1,pos=BR,currency=EUR"
    assert jobs[0].options == "adults=2,infants=1,pos=BR,currency=EUR"
    assert [job.options for job in jobs[:4]] == [
        "adults=2,infants=1,pos=BR,currency=EUR", "adults=2,infants=1,pos=US,currency=EUR",
        "adults=2,infants=1,cabin=first,pos=BR,currency=EUR",
        "adults=2,infants=1,cabin=first,pos=US,currency=EUR"]
    assert [job.id for job in plan.jobs(1, START, skip=5)] == [job.id for job in jobs[5:]]


@pytest.mark.parametrize(("search", "message"), [
    ("adults = 0", "search.adults: adults must be 1 or more"),
    ("adults = 10", "search.adults: must be a whole number from 0 to 9"),
    ("children = 1.5", "search.children: must be a whole number"),
    ("adults = 2\ninfants = 3", "search.infants: infants must not outnumber adults"),
    ("adults = 5\nchildren = 5", "search.adults: adults, children and infants must add up"),
    ('cabin = "coach"', "search.cabin: cabin must be one of economy, premium, business, first"),
    ("cabin = []", "search.cabin: must be a cabin"),
    ('pos = "usa"', 'search.pos: pos must be a country code like "US"'),
    ('pos = ["US", "US"]', "search.pos: lists a value twice"),
    ('currency = "dollars"', 'search.currency: currency must be a currency code like "USD"'),
    ("currency = 5", 'search.currency: must be a currency code like "USD"'),
    ("pets = 1", "search.pets: unknown key"),
])
def test_bad_search_keys_are_one_line_errors(tmp_path, search, message):
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, SEARCH.format(search=f"[search]\n{search}")))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_search_key_that_is_no_table_is_a_one_line_error(tmp_path):
    with pytest.raises(PlanError, match=r"\[search\]: must be a table"):
        load_plan(write(tmp_path, 'search = "x"\n' + SEARCH.format(search="")))


def test_a_calendar_plan_searches_each_month_of_its_window_once(tmp_path):
    plan = load_plan(write(tmp_path, SEARCH.format(search="").replace(
        "days_ahead = 2", "start_in_days = 20\ndays_ahead = 45\ncalendar = true")))
    jobs = list(plan.jobs(1, START))  # 2026-12-21 to 2027-02-03: three months
    assert [job.id for job in jobs] == [
        f"demo-api:{route}:{month}" for route in ("GRU-REC", "REC-GRU")
        for month in ("2026-12", "2027-01", "2027-02")]
    assert all(job.calendar and job.return_date is None for job in jobs)
    assert plan.job_count(START) == 6 and plan.job_count(dt.date(2026, 12, 12)) == 4
    assert not next(load_plan(write(tmp_path, SEARCH.format(search=""))).jobs(1, START)).calendar


def test_a_calendar_key_that_is_no_boolean_is_a_one_line_error(tmp_path):
    with pytest.raises(PlanError, match=r"dates.calendar: must be true or false \(got 1\)"):
        load_plan(write(tmp_path, SEARCH.format(search="").replace(
            "days_ahead = 2", "days_ahead = 2\ncalendar = 1")))


def test_a_calendar_prices_one_way_trips(tmp_path):
    text = SEARCH.format(search="").replace("days_ahead = 2", "days_ahead = 2\ncalendar = true")
    with pytest.raises(PlanError, match="dates.calendar: a calendar prices one-way trips"):
        load_plan(write(tmp_path, text.replace('name = "p"', 'name = "p"\ntrip = "round"')))


MULTI = """
[plan]
name = "tour"
trip = "multi"
[dates]
days_ahead = 2
stay_days = [3, 5]
[[routes]]
backend = "demo-api"
{routes}
"""


def test_a_multi_city_plan_searches_each_itinerary_per_date_and_stay(tmp_path):
    plan = load_plan(write(tmp_path, MULTI.format(
        routes='itineraries = [["GRU", "REC", "SSA"], ["POA", "GIG", "BSB", "POA"]]')))
    jobs = list(plan.jobs(1, START))
    assert len(jobs) == plan.job_count(START) == 2 * 2 * 2  # itineraries, dates, stays
    assert [job.legs for job in jobs[:2]] == ["GRU-REC:2026-12-02,REC-SSA:2026-12-05",
                                              "GRU-REC:2026-12-02,REC-SSA:2026-12-07"]
    assert jobs[0].id == "demo-api:GRU-REC:2026-12-02,REC-SSA:2026-12-05"
    assert (jobs[0].origin, jobs[0].destination, jobs[0].date) == ("GRU", "SSA", "2026-12-02")
    assert jobs[4].legs == "POA-GIG:2026-12-02,GIG-BSB:2026-12-05,BSB-POA:2026-12-08"
    assert [job.id for job in plan.jobs(1, START, skip=3)] == [job.id for job in jobs[3:]]
    assert plan.retry_policy("demo-api", "POA", "POA").max_attempts == plan.max_attempts


@pytest.mark.parametrize(("routes", "message"), [
    ('airports = ["GRU", "REC"]', "routes[0].itineraries: a multi-city plan (trip = \"multi\") "
                                  "lists itineraries instead of airports"),
    ("itineraries = []", "routes[0].itineraries: a multi-city plan lists the airports"),
    ('itineraries = [["GRU", "REC"]]', "each trip lists 3 to 7 airport codes"),
    ('itineraries = [["GRU", "REC", "gig"]]', "each trip lists 3 to 7 airport codes"),
    ('itineraries = [["GRU", "REC", "REC"]]', "a leg flies from an airport to itself"),
    ('itineraries = [["GRU", "REC", "SSA"], ["GRU", "REC", "SSA"]]', "lists a trip twice"),
])
def test_bad_itineraries_are_one_line_errors(tmp_path, routes, message):
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, MULTI.format(routes=routes)))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_itineraries_belong_to_a_multi_city_plan(tmp_path):
    text = MULTI.format(routes='itineraries = [["GRU", "REC", "SSA"]]').replace(
        'trip = "multi"', 'trip = "oneway"')
    with pytest.raises(PlanError, match='only a multi-city plan .trip = "multi". lists'):
        load_plan(write(tmp_path, text))


def test_cheapest_days_are_a_calendar_plans(tmp_path):
    text = SEARCH.format(search="").replace("days_ahead = 2", "days_ahead = 2\ncheapest_days = 3")
    with pytest.raises(PlanError, match="dates.cheapest_days: searches in full the cheapest "
                                        "days of calendars: set calendar = true too"):
        load_plan(write(tmp_path, text))
    calendar = text.replace("cheapest_days", "calendar = true\ncheapest_days")
    assert load_plan(write(tmp_path, calendar)).cheapest_days == 3
    with pytest.raises(PlanError, match="dates.cheapest_days: must be a whole number from 0 "):
        load_plan(write(tmp_path, calendar.replace("= 3", "= 40")))


@pytest.mark.parametrize("name", ["demo", "weekends", "tour", "calendar", "freshness"])
def test_the_example_plans_load(name):
    from pathlib import Path

    from voe.backends import available_backends

    plan = load_plan(Path(__file__).parent.parent / "plans" / f"{name}.toml",
                     set(available_backends()))
    assert plan.name == name and plan.job_count(START) > 0
    assert len({job.id for job in plan.jobs(1, START)}) == plan.job_count(START)
