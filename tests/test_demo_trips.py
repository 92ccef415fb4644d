"""The demo airline's trips on its JSON API: round trips, multi-city, parties, cabins,
points of sale and the calendar (issue 19, demo side); over HTTP and as pure functions."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from tests.conftest import http_get
from voe.demo.airline import tripquery
from voe.demo.airline.fares import fares_for
from voe.demo.airline.pages import results_page
from voe.demo.airline.prices import DAY, PriceProcess, departure_instant
from voe.demo.airline.trippages import trip_page
from voe.demo.airline.trips import (
    BRL_RATES,
    CABINS,
    MAX_TRIP_FARES,
    MIN_CONNECTION,
    Leg,
    Party,
    Pricing,
    Trip,
    cents,
    itinerary_cents,
    month_days,
    multi_city,
    round_trips,
)
from voe.model import Fare

ONE_WAY = "origin=GRU&destination=REC&date=2026-12-20"
ROUND = f"{ONE_WAY}&return=2026-12-27"
LEGS = "legs=GRU-REC:2026-12-20,REC-SSA:2026-12-20,SSA-GRU:2026-12-24"


def get(url: str) -> tuple[int, Any]:
    status, _, body = http_get(url)
    return status, json.loads(body)


def whole(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_price(base_cents: int, adults: int = 1, children: int = 0, infants: int = 0,
                   cabin: str = "economy", currency: str = "BRL") -> int:
    """The price (cents) the issue asks for, computed apart from ``Pricing``."""
    party = adults + Decimal("0.75") * children + Decimal("0.1") * infants
    brl = whole(base_cents * party * CABINS[cabin])
    return whole(brl * BRL_RATES[currency])


def minutes(clock: str) -> int:
    return int(clock[:2]) * 60 + int(clock[3:])


def flight(fare: Fare) -> dict[str, str]:
    return {"flight": fare.flight, "departure": fare.departure, "arrival": fare.arrival}


# --- pure functions ------------------------------------------------------------------


@pytest.mark.parametrize(("party", "cabin", "pos"), [
    (Party(), "economy", "BR"), (Party(2, 1, 1), "business", "BR"),
    (Party(3, 2, 0), "premium", "US"), (Party(1, 0, 1), "first", "CL"),
    (Party(4, 4, 1), "economy", "GB"),
])
def test_a_party_pays_its_shares_times_the_cabin_in_the_pos_currency(
        party: Party, cabin: str, pos: str) -> None:
    pricing = Pricing(party, cabin, pos)
    for fare in fares_for("GRU", "SSA", "2027-01-10"):
        base = cents(fare.price)
        assert cents(pricing.price(base)) == expected_price(base, *party, cabin=cabin,
                                                            currency=pricing.currency)


def test_points_of_sale_have_their_currencies() -> None:
    assert [Pricing(pos=pos).currency for pos in ("BR", "US", "PT", "ES", "GB", "AR", "CL")] == [
        "BRL", "USD", "EUR", "EUR", "GBP", "ARS", "CLP"]


def test_a_currency_asked_prices_in_it_whatever_the_point_of_sale(airline_url: str) -> None:
    _, asked = get(f"{airline_url}/api/search?{ONE_WAY}&pos=US&currency=eur")
    _, portugal = get(f"{airline_url}/api/search?{ONE_WAY}&pos=PT")
    assert asked["search"]["pos"] == "US" and asked["search"]["currency"] == "EUR"
    assert asked["fares"] == portugal["fares"] and asked["fares"][0]["currency"] == "EUR"


def test_round_trips_pair_each_outbound_with_its_cheapest_connecting_inbounds() -> None:
    # The same day both ways: an inbound must leave MIN_CONNECTION after the outbound lands.
    trip = Trip((Leg("GRU", "REC", "2027-02-02"), Leg("REC", "GRU", "2027-02-02")),
                round_trip=True)
    outbound = fares_for("GRU", "REC", "2027-02-02", flights=12)
    inbound = fares_for("REC", "GRU", "2027-02-02", flights=12)
    fares = round_trips(trip, outbound, inbound)
    assert 0 < len(fares) <= MAX_TRIP_FARES
    keys = [(cents(fare["price"]), fare["outbound"]["departure"]) for fare in fares]
    assert keys == sorted(keys)
    going_by_flight = {fare.flight: fare for fare in outbound}
    coming_by_flight = {fare.flight: fare for fare in inbound}
    assert len(going_by_flight) == len(outbound) and len(coming_by_flight) == len(inbound)
    for fare in fares:
        going = going_by_flight[fare["outbound"]["flight"]]
        coming = coming_by_flight[fare["inbound"]["flight"]]
        assert minutes(coming.departure) >= minutes(going.arrival) + MIN_CONNECTION
        one_ways = cents(going.price) + cents(coming.price)
        assert one_ways * 0.85 <= cents(fare["price"]) < one_ways  # a 2 to 15% discount


def test_multi_city_chains_connect_and_are_the_cheapest() -> None:
    legs = (Leg("GRU", "REC", "2027-03-03"), Leg("REC", "SSA", "2027-03-03"),
            Leg("SSA", "POA", "2027-03-05"))
    fares = [fares_for(*leg) for leg in legs]
    found = multi_city(Trip(legs), fares)
    assert 0 < len(found) <= MAX_TRIP_FARES
    assert [cents(fare["price"]) for fare in found] == sorted(cents(fare["price"])
                                                              for fare in found)
    by_flight = [{fare.flight: fare for fare in leg_fares} for leg_fares in fares]
    for fare in found:
        chain = [by_flight[index][leg["flight"]] for index, leg in enumerate(fare["legs"])]
        assert [(leg["origin"], leg["destination"], leg["date"]) for leg in fare["legs"]] == [
            tuple(leg) for leg in legs]
        assert minutes(chain[1].departure) >= minutes(chain[0].arrival) + MIN_CONNECTION
        assert cents(fare["price"]) == itinerary_cents(legs, chain, round_trip=False)
    # The cheapest of all connecting itineraries (by the sum of its fares) is among them.
    best = min(cents(a.price) + cents(b.price) + cents(c.price)
               for a in fares[0] for b in fares[1] for c in fares[2]
               if minutes(b.departure) >= minutes(a.arrival) + MIN_CONNECTION)
    assert best == min(sum(cents(by_flight[index][leg["flight"]].price)
                           for index, leg in enumerate(fare["legs"])) for fare in found)


def test_month_days_know_month_lengths() -> None:
    assert len(month_days("2028-02")) == 29 and len(month_days("2027-02")) == 28
    assert month_days("2026-12")[0] == "2026-12-01" and month_days("2026-12")[-1] == "2026-12-31"


def test_a_search_without_trip_parameters_is_not_a_trip() -> None:
    assert not tripquery.asks_trip({"origin": ["GRU"], "destination": ["REC"], "date": ["x"],
                                    "other": ["1"]})
    for name in tripquery.TRIP_PARAMETERS:
        assert tripquery.asks_trip({"origin": ["GRU"], name: ["1"]})


# --- over HTTP -----------------------------------------------------------------------


def test_a_plain_one_way_search_answers_as_before(demo_airline) -> None:
    url = demo_airline()
    status, _, body = http_get(f"{url}/api/search?{ONE_WAY}")
    today = {"search": {"origin": "GRU", "destination": "REC", "date": "2026-12-20"},
             "fares": [fare._asdict() for fare in fares_for("GRU", "REC", "2026-12-20")]}
    assert status == 200 and body == json.dumps(today, ensure_ascii=False).encode()
    # The site's plain search page is the results page it always was; with the new
    # parameters it is a trip page (voe.demo.airline.trippages), the same answer drawn.
    plain = http_get(f"{url}/search?{ONE_WAY}")[2]
    assert plain == results_page("GRU", "REC", "2026-12-20",
                                 fares_for("GRU", "REC", "2026-12-20")).encode()
    trip = http_get(f"{url}/search?{ROUND}&pos=US&cabin=first")[2]
    assert trip == trip_page(get(f"{url}/api/search?{ROUND}&pos=US&cabin=first")[1]).encode()
    assert http_get(f"{url}/js/fares?{ONE_WAY}&pos=US")[2] == body


def test_a_one_way_with_a_new_parameter_has_the_priced_shape(demo_airline) -> None:
    url = demo_airline()
    status, answer = get(f"{url}/api/search?{ONE_WAY}&adults=2&children=1&infants=1"
                         "&cabin=premium&pos=US")
    assert status == 200
    assert answer["search"] == {"origin": "GRU", "destination": "REC", "date": "2026-12-20",
                                "passengers": {"adults": 2, "children": 1, "infants": 1},
                                "cabin": "premium", "pos": "US", "currency": "USD"}
    timetable = fares_for("GRU", "REC", "2026-12-20")
    assert [fare["flight"] for fare in answer["fares"]] == [fare.flight for fare in timetable]
    for fare, base in zip(answer["fares"], timetable, strict=True):
        assert set(fare) == {"flight", "departure", "arrival", "price", "currency"}
        assert fare["currency"] == "USD"
        assert cents(fare["price"]) == expected_price(cents(base.price), 2, 1, 1, "premium",
                                                      "USD")
        assert fare["price"] != base.price


def test_passengers_and_cabins_change_the_price(demo_airline) -> None:
    url = demo_airline()
    base = [cents(fare.price) for fare in fares_for("GRU", "REC", "2026-12-20")]
    for extra, party, cabin in (("adults=1", (1, 0, 0), "economy"),
                                ("adults=3", (3, 0, 0), "economy"),
                                ("adults=2&children=2", (2, 2, 0), "economy"),
                                ("infants=1", (1, 0, 1), "economy"),
                                ("cabin=business", (1, 0, 0), "business"),
                                ("cabin=FIRST&adults=2", (2, 0, 0), "first")):
        status, answer = get(f"{url}/api/search?{ONE_WAY}&{extra}")
        assert status == 200, answer
        assert [cents(fare["price"]) for fare in answer["fares"]] == [
            expected_price(cents_, *party, cabin=cabin) for cents_ in base]
        assert answer["search"]["cabin"] == cabin
        assert tuple(answer["search"]["passengers"].values()) == party


def test_two_points_of_sale_give_two_currencies_at_the_table_rates(demo_airline) -> None:
    url = demo_airline()
    _, brazil = get(f"{url}/api/search?{ROUND}&pos=BR&adults=2")
    _, portugal = get(f"{url}/api/search?{ROUND}&pos=pt&adults=2")
    assert brazil["search"]["currency"] == "BRL" and portugal["search"]["currency"] == "EUR"
    assert {fare["currency"] for fare in brazil["fares"]} == {"BRL"}
    assert {fare["currency"] for fare in portugal["fares"]} == {"EUR"}
    in_brl = {(fare["outbound"]["flight"], fare["inbound"]["flight"]): cents(fare["price"])
              for fare in brazil["fares"]}
    for fare in portugal["fares"]:
        pair = (fare["outbound"]["flight"], fare["inbound"]["flight"])
        assert cents(fare["price"]) == whole(in_brl[pair] * BRL_RATES["EUR"])


def test_a_round_trip_flies_the_right_flights_and_is_not_two_one_ways(demo_airline) -> None:
    url = demo_airline()
    status, answer = get(f"{url}/api/search?{ROUND}")
    assert status == 200
    assert answer["search"] == {"origin": "GRU", "destination": "REC", "date": "2026-12-20",
                                "return_date": "2026-12-27",
                                "passengers": {"adults": 1, "children": 0, "infants": 0},
                                "cabin": "economy", "pos": "BR", "currency": "BRL"}
    outbound = {fare.flight: fare for fare in fares_for("GRU", "REC", "2026-12-20")}
    inbound = {fare.flight: fare for fare in fares_for("REC", "GRU", "2026-12-27")}
    fares = answer["fares"]
    assert 0 < len(fares) <= MAX_TRIP_FARES
    assert {fare["outbound"]["flight"] for fare in fares} == set(outbound)  # each is offered
    sums = []
    for fare in fares:
        assert fare["outbound"] == flight(outbound[fare["outbound"]["flight"]])
        assert fare["inbound"] == flight(inbound[fare["inbound"]["flight"]])
        assert fare["currency"] == "BRL"
        sums.append(cents(outbound[fare["outbound"]["flight"]].price)
                    + cents(inbound[fare["inbound"]["flight"]].price))
    prices = [cents(fare["price"]) for fare in fares]
    assert any(price != total for price, total in zip(prices, sums, strict=True))
    assert [(price, fare["outbound"]["departure"]) for price, fare in zip(
        prices, fares, strict=True)] == sorted(
        (price, fare["outbound"]["departure"]) for price, fare in zip(prices, fares, strict=True))


def test_a_multi_city_search_answers_one_flight_per_leg(demo_airline) -> None:
    url = demo_airline()
    status, answer = get(f"{url}/api/search?{LEGS}&pos=ES")
    assert status == 200
    asked = [("GRU", "REC", "2026-12-20"), ("REC", "SSA", "2026-12-20"),
             ("SSA", "GRU", "2026-12-24")]
    assert [tuple(leg.values()) for leg in answer["search"]["legs"]] == asked
    assert answer["search"]["currency"] == "EUR"
    timetables = [{fare.flight: fare for fare in fares_for(*leg)} for leg in asked]
    assert 0 < len(answer["fares"]) <= MAX_TRIP_FARES
    for fare in answer["fares"]:
        assert [(leg["origin"], leg["destination"], leg["date"]) for leg in fare["legs"]] == asked
        chain = [timetables[index][leg["flight"]] for index, leg in enumerate(fare["legs"])]
        for leg, timetable_fare in zip(fare["legs"], chain, strict=True):
            assert (leg["departure"], leg["arrival"]) == (timetable_fare.departure,
                                                          timetable_fare.arrival)
        assert minutes(chain[1].departure) >= minutes(chain[0].arrival) + MIN_CONNECTION
        base = itinerary_cents([Leg(*leg) for leg in asked], chain, round_trip=False)
        assert cents(fare["price"]) == expected_price(base, currency="EUR")
        assert fare["currency"] == "EUR"


def test_the_calendar_gives_each_days_cheapest_search_price(demo_airline) -> None:
    url = demo_airline()
    query = "origin=GRU&destination=REC&adults=2&children=1&cabin=business&pos=GB"
    status, answer = get(f"{url}/api/calendar?{query}&month=2027-02")
    assert status == 200
    assert answer["search"]["month"] == "2027-02" and answer["search"]["currency"] == "GBP"
    days = {day["date"]: day for day in answer["days"]}
    assert sorted(days) == [f"2027-02-{number:02d}" for number in range(1, 29)]
    for date in ("2027-02-01", "2027-02-14", "2027-02-28"):
        status, search = get(f"{url}/api/search?{query}&date={date}")
        assert status == 200
        cheapest = min(search["fares"], key=lambda fare: cents(fare["price"]))
        assert days[date] == {"date": date, "price": cheapest["price"], "currency": "GBP"}
    assert len({day["price"] for day in answer["days"]}) > 1
    assert get(f"{url}/stats")[1]["requests"] == 4  # the calendar is one search


@pytest.mark.parametrize(("query", "error"), [
    (f"{ONE_WAY}&return=2026-12-19", "2026-12-19 is before the departure date 2026-12-20"),
    (f"{ONE_WAY}&return=2026-12-32", "bad return: bad date '2026-12-32': no such day"),
    (f"{ONE_WAY}&return=soon", "bad return: bad date 'soon'"),
    ("origin=GRU&destination=REC&date=20-12-2026&adults=1", "bad date: bad date '20-12-2026'"),
    (f"{ONE_WAY}&cabin=coach", "unknown cabin 'coach'"),
    (f"{ONE_WAY}&adults=2&infants=3", "too many infants: 3 for 2 adult(s)"),
    (f"{ONE_WAY}&adults=0&children=2", "at least one adult must travel"),
    (f"{ONE_WAY}&adults=6&children=4", "too many passengers: 10 asked, at most 9"),
    (f"{ONE_WAY}&adults=-1", "bad adults '-1'"),
    (f"{ONE_WAY}&adults=1&adults=2", "parameter adults given more than once"),
    (f"{ONE_WAY}&pos=FR", "unknown pos 'FR'"),
    (f"{ONE_WAY}&pos=US&currency=JPY", "unknown currency 'JPY'"),
    (f"{ONE_WAY}&cabin=", "parameter cabin is empty"),
    ("legs=GRU-REC:2026-12-20", "has 2 to 6 legs, 1 given"),
    ("legs=" + ",".join(["GRU-REC:2026-12-20"] * 7), "has 2 to 6 legs, 7 given"),
    ("legs=GRU-REC:2026-12-20,RECSSA2026-12-21", "bad leg 2 'RECSSA2026-12-21'"),
    ("legs=GRU-REC:2026-12-20,REC-SSA:2026-12-19", "leg 2 departs 2026-12-19, before leg 1"),
    ("legs=GRU-REC:2026-12-20,REC-SSA:2026-02-30", "bad date of leg 2: bad date '2026-02-30'"),
    (f"{ONE_WAY}&legs=GRU-REC:2026-12-20,REC-SSA:2026-12-21",
     "legs cannot be combined with origin, destination, date"),
    ("origin=GRU&date=2026-12-20&return=2026-12-21", "missing parameter destination"),
])
def test_bad_trip_searches_are_told_what_is_wrong(airline_url: str, query: str,
                                                  error: str) -> None:
    status, answer = get(f"{airline_url}/api/search?{query}")
    assert status == 400 and error in answer["error"], answer


@pytest.mark.parametrize(("query", "status", "error"), [
    ("origin=GRU&destination=REC&month=2026-13", 400, "bad month: bad date '2026-13-01'"),
    ("origin=GRU&destination=REC&month=december", 400, "bad month 'december'"),
    ("origin=GRU&destination=REC", 400, "missing parameter month"),
    ("origin=GRU&destination=REC&month=2026-12&return=2026-12-27", 400, "drop return"),
    ("origin=GRU&destination=REC&month=2026-12&cabin=coach", 400, "unknown cabin"),
    ("origin=GRU&destination=XXX&month=2026-12", 404, "unknown airport XXX"),
])
def test_bad_calendars_are_told_what_is_wrong(airline_url: str, query: str, status: int,
                                              error: str) -> None:
    got, answer = get(f"{airline_url}/api/calendar?{query}")
    assert got == status and error in answer["error"], answer


def test_unknown_airports_and_failing_routes_of_any_leg(demo_airline) -> None:
    url = demo_airline(fail_routes=["SSA-GRU"])
    status, answer = get(f"{url}/api/search?legs=GRU-REC:2026-12-20,REC-XXX:2026-12-21")
    assert status == 404 and answer["error"] == "unknown airport XXX"
    status, answer = get(f"{url}/api/search?origin=GRU&destination=SSA&date=2026-12-20"
                         "&return=2026-12-21")
    assert status == 503 and answer["error"] == "route SSA-GRU is temporarily unavailable"
    assert get(f"{url}/api/search?origin=GRU&destination=SSA&date=2026-12-20&pos=BR")[0] == 200


def test_two_airline_processes_agree_on_every_trip(demo_airline) -> None:
    first, second = demo_airline(), demo_airline()
    for path in (f"/api/search?{ROUND}&adults=2&infants=1&cabin=premium&pos=AR",
                 f"/api/search?{LEGS}&children=1&pos=CL",
                 "/api/calendar?origin=REC&destination=GRU&month=2027-01&pos=US"):
        status, _, body = http_get(f"{first}{path}")
        assert status == 200 and json.loads(body)
        assert http_get(f"{second}{path}")[2] == body


def test_trip_prices_follow_the_price_process(demo_airline) -> None:
    departs = departure_instant("2027-03-01")
    url = demo_airline(seed=5, price_changes=2.0, clock_speed=86400.0,
                       clock_start=departs - 7 * DAY)
    status, answer = get(f"{url}/api/search?origin=GRU&destination=REC&date=2027-03-01"
                         "&return=2027-03-04")
    assert status == 200
    process = PriceProcess(2.0, seed=5)
    legs = (Leg("GRU", "REC", "2027-03-01"), Leg("REC", "GRU", "2027-03-04"))
    moved = [process.fares_at(*leg, fares_for(*leg), answer["at"]) for leg in legs]
    assert moved[0] != fares_for(*legs[0]) or moved[1] != fares_for(*legs[1])
    assert answer["fares"] == round_trips(Trip(legs, round_trip=True), *moved)
    status, calendar = get(f"{url}/api/calendar?origin=GRU&destination=REC&month=2027-03")
    assert status == 200 and calendar["at"] > answer["at"]
    assert calendar["days"][0]["date"] == "2027-03-01"  # not yet departed
    # A calendar's day is the cheapest fare the plain search had at the calendar's time.
    for day in calendar["days"][:3]:
        truth = get(f"{url}/api/truth?origin=GRU&destination=REC&date={day['date']}"
                    f"&at={calendar['at']!r}")[1]
        assert day["price"] == min((fare["price"] for fare in truth["fares"]), key=cents)
    # Days that have departed on the airline's clock are not sold: left out.
    status, february = get(f"{url}/api/calendar?origin=GRU&destination=REC&month=2027-02")
    today = dt.datetime.fromtimestamp(february["at"], dt.UTC).date().isoformat()
    assert status == 200 and february["days"]
    assert [day["date"] for day in february["days"]] == [
        date for date in month_days("2027-02") if date > today]


def test_the_calendar_is_a_search_with_its_faults(demo_airline) -> None:
    url = demo_airline(error_rate=1.0)
    status, _, _ = http_get(f"{url}/api/calendar?origin=GRU&destination=REC&month=2026-12")
    assert status in (500, 502, 503)
    stats = get(f"{url}/stats")[1]
    assert stats["requests"] == 1 and stats["faults"] == {"error": 1}
