"""The demo airline's price process: prices that move on its own clock, and its truth."""

from __future__ import annotations

import json
import urllib.request

import pytest

from voe.demo.airline.fares import fares_for
from voe.demo.airline.prices import (
    DAY,
    Departed,
    PriceProcess,
    SimulatedClock,
    departure_instant,
)

DATE = "2027-03-01"
DEPARTS = departure_instant(DATE)


def prices(process: PriceProcess, days_before: float, origin: str = "GRU",
           destination: str = "REC") -> list[str]:
    fares = fares_for(origin, destination, DATE)
    return [fare.price for fare in
            process.fares_at(origin, destination, DATE, fares, DEPARTS - days_before * DAY)]


def test_prices_are_the_same_in_every_process_for_a_seed_and_differ_with_another() -> None:
    first, second, other = PriceProcess(1.0, seed=3), PriceProcess(1.0, seed=3), PriceProcess(
        1.0, seed=4)
    for days in (200.0, 30.0, 6.5, 0.2):
        assert prices(first, days) == prices(second, days)
    assert any(prices(first, days) != prices(other, days) for days in (30.0, 6.5, 0.2))


def test_without_changes_the_timetable_prices_stand_until_the_date_departs() -> None:
    timetable = [fare.price for fare in fares_for("GRU", "REC", DATE)]
    still = PriceProcess(0.0, seed=3)
    assert prices(still, 3.0) == timetable
    moving = PriceProcess(1.0, seed=3)
    assert prices(moving, 400.0) == timetable  # before the first change of any fare
    assert prices(moving, 0.5) != timetable
    for process in (still, moving):
        with pytest.raises(Departed, match="2027-03-01 has departed"):
            prices(process, 0.0)


def test_prices_move_more_often_as_departure_nears() -> None:
    process = PriceProcess(1.0, seed=9)
    near = far = 0
    for destination in ("REC", "SSA", "POA", "BSB", "FOR"):
        for fare in fares_for("GRU", destination, DATE):
            days = [-before for before in
                    process.changes("GRU", destination, DATE, fare).before]
            near += sum(1 for day in days if day < 7)
            far += sum(1 for day in days if 120 <= day < 127)
    assert near > 5 * far > 0
    # The rate's shape: four times a week-out's on the eve, about an eightieth four months out.
    assert process.rate("GRU", "REC", 0) == pytest.approx(4 * process.rate("GRU", "REC", 7))
    assert process.rate("GRU", "REC", 7) == pytest.approx(
        (127 / 14) ** 2 * process.rate("GRU", "REC", 120))


def test_the_clock_runs_at_its_speed_from_its_start() -> None:
    now = [1000.0]
    clock = SimulatedClock(speed=3600.0, start=5_000_000.0, real=lambda: now[0])
    assert clock.now() == 5_000_000.0
    now[0] += 2.5
    assert clock.now() == 5_000_000.0 + 9000.0
    with pytest.raises(ValueError, match="positive"):
        SimulatedClock(speed=0)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_airline_answers_searches_and_its_truth_on_its_own_clock(demo_airline) -> None:
    # A simulated day per real second, started a week before DATE.
    url = demo_airline(seed=5, price_changes=2.0, clock_speed=86400.0,
                       clock_start=DEPARTS - 7 * DAY)
    query = f"origin=GRU&destination=REC&date={DATE}"
    status, clock = _get(f"{url}/api/clock")
    assert status == 200 and clock["speed"] == 86400.0
    assert DEPARTS - 7 * DAY <= clock["now"] < DEPARTS - 6 * DAY  # started well under a day ago
    status, answer = _get(f"{url}/api/search?{query}")
    assert status == 200
    status, truth = _get(f"{url}/api/truth?{query}&at={answer['at']!r}")
    assert status == 200 and truth["fares"] == answer["fares"]
    expected = PriceProcess(2.0, seed=5).fares_at(
        "GRU", "REC", DATE, fares_for("GRU", "REC", DATE), answer["at"])
    assert [fare["price"] for fare in answer["fares"]] == [fare.price for fare in expected]
    earlier = [_get(f"{url}/api/truth?{query}&at={DEPARTS - days * DAY}")[1]["fares"]
               for days in (6.9, 3.0, 0.5)]
    assert len({json.dumps(fares) for fares in earlier}) == 3  # prices moved meanwhile
    status, gone = _get(f"{url}/api/truth?{query}&at={DEPARTS + 60}")
    assert status == 404 and gone["error"] == f"{DATE} has departed: it is no longer sold"
    status, bad = _get(f"{url}/api/truth?{query}&at=yesterday")
    assert status == 400 and "bad at 'yesterday'" in bad["error"]
    searches = _get(f"{url}/stats")[1]
    assert searches["requests"] == 1  # the clock and the truth are not searches
