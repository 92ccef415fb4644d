"""`voe run`, the README's main job: the demo plan end to end, interrupted and resumed."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from contextlib import closing
from decimal import Decimal

import pytest

from tests.cluster import free_port, wait_for


def run_env(tmp_path):
    env = dict(os.environ)
    env.update({
        "VOE_JOBS_PORT": str(free_port()),
        "VOE_CONTROL_PORT": str(free_port()),
        "VOE_RESULTS_PORT": str(free_port()),
        "VOE_HTTP_PORT": str(free_port()),
        "VOE_SINK_HTTP_PORT": str(free_port()),
        "VOE_DEMO_AIRLINE_URL": f"http://127.0.0.1:{free_port()}",
        "VOE_DATA_DIR": str(tmp_path / "data"),
    })
    return env


def voe(tmp_path, env, *args):
    return subprocess.run([sys.executable, "-m", "voe", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def stored_jobs(data_dir):
    with sqlite3.connect(data_dir / "fares.db") as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT cycle || job_id) FROM results"
                          ).fetchone()


def test_voe_run_collects_the_demo_plan(tmp_path):
    env = run_env(tmp_path)
    result = voe(tmp_path, env, "run", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "280 jobs done, 0 failed" in result.stdout
    assert "Cheapest fares found" in result.stdout
    status = json.loads(voe(tmp_path, env, "status", "--json").stdout)
    assert status["jobs"] == {"pending": 0, "leased": 0, "done": 280, "failed": 0}
    assert status["fares"] > 280
    assert voe(tmp_path, env, "export", "--format", "jsonl", "--out", "f.jsonl").returncode == 0
    lines = (tmp_path / "f.jsonl").read_text().splitlines()
    assert len(lines) == status["fares"]
    first = json.loads(lines[0])
    assert {"backend", "origin", "destination", "date", "flight", "price", "currency", "cycle",
            "job_id"} <= set(first)
    assert voe(tmp_path, env, "export", "--format", "csv", "--out", "f.csv").returncode == 0
    with open(tmp_path / "f.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == status["fares"]
    cheapest = voe(tmp_path, env, "cheapest").stdout.splitlines()
    assert len(cheapest) == 280 and all("BRL" in line for line in cheapest)
    for role in ("master", "sink", "worker"):
        assert (tmp_path / "data" / f"{role}.log").stat().st_size > 0


def test_ctrl_c_stops_everything_and_the_next_run_resumes(tmp_path):
    env = run_env(tmp_path)
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "voe", "run", "--workers", "1", "--concurrency", "2",
               "--latency-ms", "200"]
    # Ctrl-C as a terminal gives it, whatever this test inherited: a test run started in the
    # background of a shell ignores SIGINT, and so would its children.
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: (data_dir / "fares.db").exists() and stored_jobs(data_dir)[0] >= 10,
                 60, "some jobs stored")
        first.send_signal(signal.SIGINT)
        output, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)
    assert first.returncode == 130, output
    assert "resumes it" in output
    assert not (data_dir / "master.pid").exists()
    stored, _ = stored_jobs(data_dir)
    assert 10 <= stored < 280
    second = voe(tmp_path, env, "run", "--workers", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert stored_jobs(data_dir) == (280, 280)
    status = json.loads(voe(tmp_path, env, "status", "--json").stdout)
    assert status["jobs"]["done"] == 280 and status["cycle"]["number"] == 1


def test_each_child_of_voe_run_holds_only_the_secrets_of_its_role(tmp_path):
    import psutil

    from tests.test_newcomer import write_plan

    secrets = {"AWS_ACCESS_KEY": "AKIAVOECHILDENV01", "AWS_SECRET_KEY": "aws-secret-5d1c",
               "AWS_SECRET_ACCESS_KEY": "sdk-secret-77ab", "KEY_PASS": "key-pass-0e2f",
               "VOE_WEBHOOK_SECRET": "webhook-secret-9a4b", "VOE_HTTP_TOKEN": "http-token-3c8d"}
    env = run_env(tmp_path) | secrets
    plan = write_plan(tmp_path)
    run = subprocess.Popen([sys.executable, "-m", "voe", "run", "--plan", str(plan),
                            "--latency-ms", "3000"], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def children() -> dict[str, dict[str, str]]:
            """The environment of each child of the run by role (the word after -m voe)."""
            found = {}
            for child in psutil.Process(run.pid).children():
                try:
                    command = child.cmdline()
                    environ = child.environ()  # /proc/PID/environ
                except psutil.NoSuchProcess:
                    continue
                found[command[command.index("voe") + 1]] = environ
            return found

        wait_for(lambda: {"demo-airline", "master", "sink", "worker"} <= set(children()), 60,
                 "every child of the run to start")
        roles = children()
        for role in ("worker", "demo-airline"):
            environ = roles[role]
            leaked = [name for name, value in environ.items()
                      if any(secret in value for secret in secrets.values())]
            assert leaked == [], f"{role} holds {leaked}"
            assert environ["KEY_PASS"] == "" and environ["VOE_HTTP_TOKEN"] == ""  # not from .env
        assert roles["master"]["VOE_HTTP_TOKEN"] == secrets["VOE_HTTP_TOKEN"]
        assert "webhook-secret-9a4b" not in roles["master"].values()
        assert roles["sink"]["VOE_WEBHOOK_SECRET"] == secrets["VOE_WEBHOOK_SECRET"]
        for environ in roles.values():
            assert not {"aws-secret-5d1c", "sdk-secret-77ab", "key-pass-0e2f"} & set(
                environ.values())
        assert run.wait(timeout=120) == 0
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.wait(timeout=60)


ROUND_TRIP_PLAN = """
[plan]
name = "round"
trip = "round"
cycle = "once"
max_attempts = 3

[dates]
start_in_days = 1
days_ahead = 4
step_days = 2
stay_days = [7]

[[routes]]
backend = "demo"
airports = ["GRU", "REC"]
"""


def run_plan(tmp_path, name: str, text: str) -> tuple[dict, str]:
    """`voe run` of the plan ``text`` (written to NAME.toml): its environment and output."""
    env = run_env(tmp_path)
    (tmp_path / f"{name}.toml").write_text(text)
    result = voe(tmp_path, env, "run", "--workers", "1", "--plan", f"{name}.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    return env, result.stdout


def exported(tmp_path, env) -> list[dict]:
    """Every stored fare, as `voe export --format jsonl` writes it."""
    assert voe(tmp_path, env, "export", "--format", "jsonl", "--out", "f.jsonl").returncode == 0
    return [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]


def airline_json(airline: str, path: str) -> dict:
    """What the demo airline at ``airline`` answers for ``path`` (its JSON API)."""
    with urllib.request.urlopen(f"{airline}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def failed_lines(tmp_path, env) -> list[str]:
    """`voe failed`'s lines: one per dead letter."""
    return voe(tmp_path, env, "failed").stdout.splitlines()


def test_a_round_trip_plan_never_stores_one_way_prices_as_round_trips(tmp_path):
    # The null backend (five made-up one-way fares a job) declares no round_trips: each
    # round-trip job ends at once as a permanent error saying why.
    env, output = run_plan(tmp_path, "round", ROUND_TRIP_PLAN.replace('"demo"', '"null"'))
    assert "0 jobs done, 4 failed, 0 fares stored" in output
    status = json.loads(voe(tmp_path, env, "status", "--json").stdout)
    assert status["jobs"] == {"pending": 0, "leased": 0, "done": 0, "failed": 4}
    assert status["fares"] == 0
    failed = failed_lines(tmp_path, env)
    assert len(failed) == 4
    assert all("after 1 attempt(s): backend 'null' does not search round trips" in line
               and "would store one-way prices" in line for line in failed), failed


@pytest.mark.parametrize("backend", ["demo-api", "demo"])
def test_a_round_trip_plan_stores_the_airlines_round_trip_fares(tmp_path, demo_airline,
                                                                backend):
    # Both backends read the airline's round trips (its JSON API, its site's trip page):
    # each fare its two legs and one total, as the API sells it.
    env, output = run_plan(tmp_path, "round", ROUND_TRIP_PLAN.replace('"demo"', f'"{backend}"'))
    assert "4 jobs done, 0 failed" in output
    stored: dict[tuple[str, str, str, str], list[tuple[str, ...]]] = {}
    for fare in exported(tmp_path, env):
        key = (fare["origin"], fare["destination"], fare["date"], fare["return_date"])
        stored.setdefault(key, []).append(tuple(fare[name] for name in (
            "flight", "departure", "arrival", "return_flight", "return_departure",
            "return_arrival", "price", "currency")))
    assert len(stored) == 4
    airline = demo_airline()  # another process of the same airline: the same fares
    for (origin, destination, date, back), fares in stored.items():
        sold = airline_json(airline, f"/api/search?origin={origin}&destination={destination}"
                                     f"&date={date}&return={back}")["fares"]
        assert sorted(fares) == sorted(
            (f["outbound"]["flight"], f["outbound"]["departure"], f["outbound"]["arrival"],
             f["inbound"]["flight"], f["inbound"]["departure"], f["inbound"]["arrival"],
             f["price"], f["currency"]) for f in sold)
        assert all(fare[3] is not None for fare in fares)
    cheapest = voe(tmp_path, env, "cheapest").stdout.splitlines()
    assert len(cheapest) == 4 and all(", back " in line for line in cheapest), cheapest


SEARCH_PLAN = """
[plan]
name = "travellers"
max_attempts = 3

[dates]
start_in_days = 1
days_ahead = 2

[search]
adults = 2
children = 1
cabin = "business"
pos = ["BR", "US"]

[[routes]]
backend = "demo-api"
airports = ["GRU", "REC"]
"""


@pytest.mark.parametrize("backend", ["demo-api", "demo"])
def test_a_plan_with_two_points_of_sale_stores_each_fare_as_the_airline_priced_it(
        tmp_path, demo_airline, backend):
    # Each route and date is searched once per point of sale, for the party and cabin of the
    # plan; every fare is stored with its search options and the currency the airline
    # answered in, equal to the airline's API for the same search.
    env, output = run_plan(tmp_path, "travellers", SEARCH_PLAN.replace(
        '"demo-api"', f'"{backend}"'))
    assert "8 jobs done, 0 failed" in output
    stored: dict[tuple[str, str, str, str], list[tuple[str, ...]]] = {}
    for fare in exported(tmp_path, env):
        assert fare["job_id"].endswith(f"/{fare['options']}")
        key = (fare["origin"], fare["destination"], fare["date"], fare["options"])
        stored.setdefault(key, []).append(tuple(fare[name] for name in (
            "flight", "departure", "arrival", "price", "currency")))
    assert sorted({key[3] for key in stored}) == [
        "adults=2,children=1,cabin=business,pos=BR", "adults=2,children=1,cabin=business,pos=US"]
    assert len(stored) == 8
    airline = demo_airline()  # another process of the same airline: the same fares
    for (origin, destination, date, options), fares in stored.items():
        pos = options.rsplit("=", 1)[1]
        sold = airline_json(airline, f"/api/search?origin={origin}&destination={destination}"
                                     f"&date={date}&adults=2&children=1&cabin=business"
                                     f"&pos={pos}")["fares"]
        assert sorted(fares) == sorted(
            (f["flight"], f["departure"], f["arrival"], f["price"], f["currency"]) for f in sold)
        assert {fare[4] for fare in fares} == {"BR": {"BRL"}, "US": {"USD"}}[pos]
    cheapest = voe(tmp_path, env, "cheapest").stdout.splitlines()
    assert len(cheapest) == 8 and all(" [adults=2,children=1,cabin=business,pos=" in line
                                      for line in cheapest), cheapest
    assert sum(line.endswith(")") and " USD (" in line for line in cheapest) == 4


def test_a_plan_with_search_options_fails_on_a_backend_that_cannot_send_them(tmp_path):
    env, output = run_plan(tmp_path, "travellers", SEARCH_PLAN.replace('"demo-api"', '"null"'))
    assert "0 jobs done, 8 failed, 0 fares stored" in output
    failed = failed_lines(tmp_path, env)
    assert len(failed) == 8 and all(
        "does not send adults, children, cabin, pos to the airline" in line
        for line in failed), failed


CALENDAR_PLAN = """
[plan]
name = "calendar"

[dates]
start_in_days = 1
days_ahead = 40
calendar = true

[search]
adults = 2

[[routes]]
backend = "demo-api"
airports = ["GRU", "REC"]
"""


def _months(days: int) -> list[str]:
    """The months a window of ``days`` departure dates from tomorrow touches."""
    first = dt.date.today() + dt.timedelta(days=1)
    return sorted({(first + dt.timedelta(days=d)).isoformat()[:7] for d in range(days)})


@pytest.mark.parametrize("backend", ["demo-api", "demo"])
def test_a_calendar_plan_spends_one_search_per_month_and_route_and_stores_the_calendar(
        tmp_path, demo_airline, backend):
    # Forty days touch two or three months: one calendar search per month and route, each
    # storing the cheapest fare of every day the airline's calendar gives.
    env, output = run_plan(tmp_path, "calendar", CALENDAR_PLAN.replace(
        '"demo-api"', f'"{backend}"'))
    months = _months(40)
    jobs = len(months) * 2
    assert f"{jobs} jobs done, 0 failed" in output
    with closing(sqlite3.connect(tmp_path / "data" / "ledger.db")) as ledger:
        assert ledger.execute("SELECT COUNT(*), SUM(attempt) FROM jobs").fetchone() == (jobs, jobs)
        assert sorted(row[0] for row in ledger.execute("SELECT id FROM jobs")) == sorted(
            f"{backend}:{route}:{month}/adults=2" for route in ("GRU-REC", "REC-GRU")
            for month in months)
    stored: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {}
    for fare in exported(tmp_path, env):
        assert (fare["flight"], fare["departure"], fare["arrival"]) == ("", "", "")
        month = fare["job_id"].split(":")[2].split("/")[0]
        stored.setdefault((fare["origin"], fare["destination"], month), []).append(
            (fare["date"], fare["price"], fare["currency"]))
    airline = demo_airline()  # another process of the same airline: the same calendar
    for (origin, destination, month), days in stored.items():
        sold = airline_json(airline, f"/api/calendar?origin={origin}&destination={destination}"
                                     f"&month={month}&adults=2")["days"]
        assert sorted(days) == sorted((d["date"], d["price"], d["currency"]) for d in sold)
    assert len(stored) == jobs
    cheapest = voe(tmp_path, env, "cheapest").stdout.splitlines()
    assert cheapest and all("(calendar: the day's cheapest)" in line for line in cheapest)


def test_a_calendar_plan_fails_on_a_backend_that_reads_no_calendars(tmp_path):
    env, output = run_plan(tmp_path, "calendar", CALENDAR_PLAN.replace(
        '"demo-api"', '"null"').replace("[search]\nadults = 2\n", "").replace(
        "days_ahead = 40", "days_ahead = 1"))
    assert "0 jobs done, 2 failed, 0 fares stored" in output
    failed = failed_lines(tmp_path, env)
    assert len(failed) == 2 and all("does not read airline calendars" in line
                                    for line in failed), failed


def test_a_calendar_plan_searches_its_cheapest_days_in_full(tmp_path, demo_airline):
    # Each calendar (a month of a route) is followed by full searches of its two cheapest
    # days in the window: their fares are the airline's for those days.
    env, output = run_plan(tmp_path, "calendar", CALENDAR_PLAN.replace(
        "days_ahead = 40", "days_ahead = 10\ncheapest_days = 2"))
    calendars = len(_months(10)) * 2
    assert f"{calendars + calendars * 2} jobs done, 0 failed" in output
    first = dt.date.today() + dt.timedelta(days=1)
    window = {(first + dt.timedelta(days=d)).isoformat() for d in range(10)}
    days: dict[tuple[str, str, str], list[tuple[Decimal, str]]] = {}
    full: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for fare in exported(tmp_path, env):
        route = (fare["origin"], fare["destination"])
        if fare["flight"]:
            full.setdefault((*route, fare["date"]), []).append((fare["flight"], fare["price"]))
        elif fare["date"] in window:
            days.setdefault((*route, fare["job_id"]), []).append(
                (Decimal(fare["price"]), fare["date"]))
    assert set(full) == {(*key[:2], date) for key, found in days.items()
                         for _, date in sorted(found)[:2]}
    airline = demo_airline()
    for (origin, destination, date), fares in full.items():
        sold = airline_json(airline, f"/api/search?origin={origin}&destination={destination}"
                                     f"&date={date}&adults=2")["fares"]
        assert sorted(fares) == sorted((fare["flight"], fare["price"]) for fare in sold)


MULTI_CITY_PLAN = """
[plan]
name = "tour"
trip = "multi"

[dates]
start_in_days = 2
days_ahead = 2
stay_days = [3]

[search]
pos = "US"

[[routes]]
backend = "demo-api"
itineraries = [["GRU", "REC", "SSA"], ["POA", "GIG", "BSB", "POA"]]
"""


@pytest.mark.parametrize("backend", ["demo-api", "demo"])
def test_a_multi_city_plan_stores_the_airlines_multi_city_fares(tmp_path, demo_airline,
                                                                backend):
    # Each trip is searched as one: every fare its legs' flights and one total, as the
    # airline's API sells it for the same legs.
    env, output = run_plan(tmp_path, "tour", MULTI_CITY_PLAN.replace(
        '"demo-api"', f'"{backend}"'))
    assert "4 jobs done, 0 failed" in output
    stored: dict[str, list[tuple]] = {}
    for fare in exported(tmp_path, env):
        assert fare["job_id"] == f"{backend}:{fare['legs']}/pos=US"
        later = tuple(tuple(leg) for leg in json.loads(fare["leg_flights"]))
        stored.setdefault(fare["legs"], []).append(
            ((fare["flight"], fare["departure"], fare["arrival"]), *later, fare["price"],
             fare["currency"]))
    assert len(stored) == 4 and {len(legs.split(",")) for legs in stored} == {2, 3}
    airline = demo_airline()  # another process of the same airline: the same fares
    for legs, fares in stored.items():
        sold = airline_json(airline, f"/api/search?legs={legs}&pos=US")["fares"]
        assert sorted(fares) == sorted(
            (*((leg["flight"], leg["departure"], leg["arrival"]) for leg in fare["legs"]),
             fare["price"], fare["currency"]) for fare in sold)
        assert {fare[-1] for fare in fares} == {"USD"}
    cheapest = voe(tmp_path, env, "cheapest").stdout.splitlines()
    assert len(cheapest) == 4 and all(", then " in line for line in cheapest), cheapest
