"""The fare pipeline: each stage on its own, the runner, the worker, and the page faults.

Against the real demo airline with each page fault at rate 1, every search ends as
exactly the fares of the airline's JSON API or as a parse error with the page
kept: never as other fares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import http_get

from voe.backends.base import ParseError
from voe.components import parse_orders
from voe.demo.airline.fares import fares_for
from voe.demo.airline.pages import results_page
from voe.demo.backends.parse import parse_results, read_page
from voe.demo.backends.price import parse_price
from voe.model import (
    OK,
    PARSE,
    Answer,
    CalendarDay,
    Fare,
    FieldCount,
    MultiCityFare,
    RoundTripFare,
    Searched,
    SearchJob,
    SearchOptions,
)
from voe.store.rows import all_valid_counts
from voe.worker.farepipeline import PIPELINES_BASE, FarePipeline
from voe.worker.farepipeline.answers import AnswersSearch
from voe.worker.farepipeline.currency import CurrencyAsked, check_currency
from voe.worker.farepipeline.duplicates import RefuseDuplicates
from voe.worker.farepipeline.flight import normalise_flight
from voe.worker.farepipeline.price import PriceBounds, normalise_price
from voe.worker.farepipeline.times import normalise_time

FARE = Fare("G3 3573", "05:15", "07:40", "1234.56", "BRL")


def job(origin: str = "GRU", destination: str = "SSA", date: str = "2026-12-20",
        backend: str = "demo") -> SearchJob:
    return SearchJob(id=f"{backend}:{origin}-{destination}:{date}", cycle=1, attempt=1,
                     backend=backend, origin=origin, destination=destination, date=date)


# Stages, one by one ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "code"), [
    ("G3 3573", "G3 3573"), ("G3\xa03573", "G3 3573"), ("G3\u20093573", "G3 3573"),
    ("G3\u202f3573", "G3 3573"), ("  G3   3573 ", "G3 3573"), ("Voo G3 3573", "G3 3573"),
    ("Vôo nº G3 3573", "G3 3573"), ("Flight: LA 1234", "LA 1234"), ("G33573", "G3 3573"),
    ("g3 3573", "G3 3573"), ("AD 12", "AD 12"), ("TAM 3054", "TAM 3054"), ("LA 123A", "LA 123A"),
])
def test_flight_codes_are_normalised(text: str, code: str) -> None:
    assert normalise_flight(text) == code


@pytest.mark.parametrize("text", ["", "G3", "3573", "G3 35731", "Voo", "G3-3573", "G3 35 73",
                                  "Gol Linhas 3573", "G3 3573 (operado por LA)", "G3 ３５７３"])
def test_odd_flight_codes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a flight code"):
        normalise_flight(text)


@pytest.mark.parametrize(("text", "time"), [
    ("05:15", "05:15"), ("5:15", "05:15"), ("05h15", "05:15"), ("5h15", "05:15"),
    ("05H15", "05:15"), (" 23:59 ", "23:59"), ("00:00", "00:00"), ("5 h 15", "05:15"),
])
def test_times_are_normalised(text: str, time: str) -> None:
    assert normalise_time(text) == time


@pytest.mark.parametrize("text", ["", "24:00", "05:60", "0515", "05:15:00", "5", "08:10+1",
                                  "05.15", "ontem", "٠٥:١٥"])
def test_odd_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a time of day"):
        normalise_time(text)


def test_prices_are_bounded_decimals_with_cents() -> None:
    low, high = Decimal(1), Decimal(1_000_000)
    assert normalise_price("1234.56", low, high) == "1234.56"
    assert normalise_price("1234.5", low, high) == "1234.50"
    assert normalise_price("1234", low, high) == "1234.00"
    assert normalise_price("12.345", low, high) == "12.345"  # three-decimal currencies
    assert normalise_price("1", low, high) == "1.00"
    assert normalise_price("1000000", low, high) == "1000000.00"
    for text in ("0.99", "0", "1000000.01", "99999999"):
        with pytest.raises(ValueError, match="outside the bounds"):
            normalise_price(text, low, high)
    for text in ("", "-5.00", "1e3", "1,234.56", "1.2345", " 12.00", "NaN", "Infinity", "１２"):
        with pytest.raises(ValueError, match="not a decimal"):
            normalise_price(text, low, high)


def test_currencies_are_iso_4217_codes() -> None:
    for code in ("BRL", "USD", "EUR", "JPY", "KWD"):
        assert check_currency(code) == code
    assert check_currency(" BRL ") == "BRL"
    for text in ("", "R$", "brl", "BR", "BRLL", "reais", "XXX", "XAU", "ABC", "US$"):
        with pytest.raises(ValueError, match="ISO 4217"):
            check_currency(text)


def test_a_page_answering_another_search_is_refused_naming_both(make_settings) -> None:
    stage = AnswersSearch(make_settings())
    answer = Answer([FARE], Searched("GRU", "POA", "2026-12-21"), b"<page>")
    with pytest.raises(ParseError) as caught:
        stage.process(answer, job())
    assert str(caught.value) == "page answers GRU-POA 2026-12-21, asked GRU-SSA 2026-12-20"
    assert caught.value.page == b"<page>"
    same = Answer([FARE], Searched("GRU", "SSA", "2026-12-20"), b"<page>")
    assert stage.process(same, job()) is same
    assert stage.process(Answer([FARE]), job()) == [FARE]  # a plain list: nothing to compare
    round_trip = job()._replace(return_date="2026-12-27")
    with pytest.raises(ParseError, match="page answers GRU-SSA 2026-12-20, asked GRU-SSA "
                                         "2026-12-20 return 2026-12-27"):
        stage.process(same, round_trip)  # a one-way page: its prices are not a round trip's
    with pytest.raises(ParseError, match="return 2026-12-27, asked GRU-SSA 2026-12-20$"):
        stage.process(Answer([FARE], Searched("GRU", "SSA", "2026-12-20", "2026-12-27")), job())
    both = Answer([FARE], Searched("GRU", "SSA", "2026-12-20", "2026-12-27"), b"")
    assert stage.process(both, round_trip) is both
    other_return = Answer([FARE], Searched("GRU", "SSA", "2026-12-20", "2026-12-28"), b"")
    with pytest.raises(ParseError, match="return 2026-12-28, asked .* return 2026-12-27"):
        stage.process(other_return, round_trip)


def test_a_page_for_another_party_cabin_or_point_of_sale_is_refused(make_settings) -> None:
    stage = AnswersSearch(make_settings())
    asked = job()._replace(options="adults=2,cabin=business,pos=US")

    def page(*options) -> Answer:
        return Answer([FARE], Searched("GRU", "SSA", "2026-12-20", None,
                                       SearchOptions(*options)), b"<page>")

    right = page(2, 0, 0, "business", "US", "USD")
    assert stage.process(right, asked) is right
    for stated, named in (((1, 0, 0, "business", "US", "USD"), "adults 1 (asked 2)"),
                          ((2, 0, 0, "economy", "US", "USD"), "cabin economy (asked business)"),
                          ((2, 0, 0, "business", "BR", "BRL"), "pos BR (asked US)"),
                          ((2, 1, 0, "business", "US", "USD"), "children 1 (asked 0)")):
        with pytest.raises(ParseError, match=re.escape(
                f"page answers GRU-SSA 2026-12-20 for {named}")) as caught:
            stage.process(page(*stated), asked)
        assert caught.value.page == b"<page>"
    # A job that asks no point of sale or currency takes the airline's own; its party
    # (one adult) and cabin (economy) still count.
    assert stage.process(own := page(1, 0, 0, "economy", "BR", "BRL"), job()) is own
    with pytest.raises(ParseError, match=r"for adults 2 \(asked 1\)"):
        stage.process(page(2, 0, 0, "economy", "BR", "BRL"), job())


def test_fares_in_another_currency_than_asked_or_stated_are_refused(make_settings) -> None:
    stage = CurrencyAsked(make_settings())
    dollars = FARE._replace(currency="USD")
    asked = job()._replace(options="pos=BR,currency=USD")
    assert stage.process(Answer([dollars, dollars]), asked) == [dollars, dollars]
    with pytest.raises(ParseError, match=r"fare 2 \('G3 3573'\) is priced in BRL, not USD "
                                         r"\(asked currency\)") as caught:
        stage.process(Answer([dollars, FARE], page=b"<page>"), asked)
    assert caught.value.page == b"<page>"
    stated = Searched("GRU", "SSA", "2026-12-20", None, SearchOptions(pos="US", currency="USD"))
    with pytest.raises(ParseError, match=r"priced in BRL, not USD \(the page's currency\)"):
        stage.process(Answer([FARE], stated), job())
    assert stage.process(Answer([FARE]), job()) == [FARE]  # nothing asked nor stated


def test_duplicate_flights_are_an_error_not_two_rows(make_settings) -> None:
    stage = RefuseDuplicates(make_settings())
    other = FARE._replace(departure="09:00")
    assert stage.process(Answer([FARE, other]), job()) == [FARE, other]
    with pytest.raises(ParseError, match=r"flight G3 3573 at 05:15 listed twice \(fares 1 and 3\)"):
        stage.process(Answer([FARE, other, FARE._replace(price="99.00")], page=b"p"), job())


# The runner ------------------------------------------------------------------------

def test_the_pipeline_normalises_checks_and_counts_per_field(make_settings) -> None:
    pipeline = FarePipeline(make_settings(), third_party=False)
    assert pipeline.names == sorted(PIPELINES_BASE, key=PIPELINES_BASE.get)
    raw = Fare("Voo G3\xa03573", "5h15", "07:40", "1234.5", "BRL")
    answer = pipeline.run(Answer([raw], Searched("GRU", "SSA", "2026-12-20"), b"p"), job())
    assert answer == [FARE._replace(price="1234.50")] and answer.page == b"p"
    assert pipeline.run([FARE], job()) == [FARE]  # a plain list of fares is checked too
    with pytest.raises(ParseError) as caught:
        pipeline.run(Answer([FARE, FARE._replace(flight="G3 1", departure="25:00"),
                             FARE._replace(flight="??")], page=b"kept"), job())
    assert str(caught.value) == "fare 3 ('??'): flight '??' is not a flight code (designator " \
                                "and number)"  # the first failure; the other checks still count
    assert caught.value.page == b"kept"
    counts = pipeline.field_counts
    assert counts.as_dict()["demo"]["flight"] == {"valid": 4, "invalid": 1}
    assert counts.share("demo", "departure") == pytest.approx(4 / 5)
    assert counts.share("demo", "price") == 1.0 and counts.share("other", "price") is None


def test_price_bounds_come_from_the_settings(make_settings) -> None:
    pipeline = FarePipeline(make_settings(voe_price_min="100", voe_price_max="200"),
                            third_party=False)
    assert pipeline.run([FARE._replace(price="150.00")], job())
    with pytest.raises(ParseError, match="outside the bounds 100 to 200"):
        pipeline.run([FARE], job())


@pytest.mark.parametrize("fares", [
    [], [FARE], [FARE] * 3 + [FARE._replace(flight="LA 12")],
    [FARE._replace(flight="G3\xa03573"), FARE._replace(flight="LA 1", price="0966.64")],
    [FARE._replace(departure="5h15", arrival="25:00")], [FARE._replace(price="1234.5")],
    [FARE._replace(price="0.50")], [FARE._replace(price="1000000.01")],
    [FARE._replace(currency=" BRL")], [FARE._replace(currency="R$")],
    [FARE._replace(flight="G3 3573\nLA 1")], [FARE._replace(price="1.00\n2.00")],
    [FARE, FARE._replace(price=None)], [FARE, ("G3 1", "05:15")],
])
def test_one_pass_over_the_field_stages_gives_what_each_stage_gives(make_settings,
                                                                     fares) -> None:
    """The built-in field stages are checked in one pass when every value is already
    normal; the answer, the error and the per-field counts are those of each stage's
    own ``process`` (the pipeline with its one-pass runs undone)."""
    fused = FarePipeline(make_settings(), third_party=False)
    staged = FarePipeline(make_settings(), third_party=False)
    staged._steps = list(staged.stages)  # each stage on its own, no one-pass runs
    outcomes, answered = [], []
    for pipeline in (fused, staged):
        try:
            answer = pipeline.run(Answer(fares, page=b"p"), job())
        except ParseError as error:
            outcomes.append(str(error))
            answered.append(error.field_counts)
        else:
            outcomes.append(list(answer))
            answered.append(all_valid_counts(len(answer)) if answer else ())
    assert outcomes[0] == outcomes[1]
    assert fused.field_counts.as_dict() == staged.field_counts.as_dict()
    # The answer's own counts (what its result carries) are its part of the pipeline's
    # counts; a field whose stage crashed on the answer is left out.
    assert answered[0] == answered[1]
    shared = {field: (found["valid"], found["invalid"])
              for field, found in fused.field_counts.as_dict().get("demo", {}).items()
              if found["valid"] + found["invalid"]}
    own = {count.field: (count.valid, count.invalid) for count in answered[0]}
    if "crashed" in str(outcomes[0]):
        assert own.items() <= shared.items()
    else:
        assert own == shared


def test_each_answer_carries_its_own_field_counts(make_settings) -> None:
    pipeline = FarePipeline(make_settings(), third_party=False)
    assert pipeline.fields == ("flight", "departure", "arrival", "price", "currency")
    assert all_valid_counts(2) == tuple(FieldCount(field, 2, 0) for field in pipeline.fields)
    with pytest.raises(ParseError, match="flight") as caught:
        pipeline.run(Answer([FARE, FARE._replace(flight="??"),
                             FARE._replace(flight="LA 1", price="0.10")]), job())
    assert {count.field: count[1:] for count in caught.value.field_counts} == {
        "flight": (2, 1), "departure": (3, 0), "arrival": (3, 0), "price": (2, 1),
        "currency": (3, 0)}
    with pytest.raises(ParseError, match="page answers") as caught:  # not a field's fault
        pipeline.run(Answer([FARE], Searched("GRU", "REC", "2026-12-20")), job())
    assert caught.value.field_counts == all_valid_counts(1)
    with pytest.raises(ParseError, match="listed twice") as caught:
        pipeline.run(Answer([FARE, FARE]), job())
    assert caught.value.field_counts == all_valid_counts(2)
    broken = FarePipeline(make_settings(voe_fare_pipelines="voe_no_such_module:Stage=10"),
                          third_party=False)
    with pytest.raises(ParseError, match="not loaded") as caught:  # nothing ran, nothing counted
        broken.run(Answer([FARE]), job())
    assert caught.value.field_counts == ()
    crashing = FarePipeline(make_settings(voe_fare_pipelines=f"{__name__}:Crashing=10"),
                            third_party=False)
    with pytest.raises(ParseError, match="crashed") as caught:  # not a field stage: fields valid
        crashing.run(Answer([FARE]), job())
    assert caught.value.field_counts == all_valid_counts(1)


@pytest.mark.parametrize(("low", "high"), [("1", "1000000"), ("100", "200"), ("0.5", "99.99"),
                                           ("0.001", "10.005"), ("0.01", "999999999999")])
def test_the_one_pass_price_test_agrees_with_the_price_check_at_the_bounds(make_settings, low,
                                                                           high) -> None:
    """Prices at, just inside and just outside each bound (and bounds with no two-decimal
    form) are judged by the one-pass test as by the stage's own check."""
    stage = PriceBounds(make_settings(voe_price_min=low, voe_price_max=high))
    edges = [Decimal(low), Decimal(high)]
    prices = {f"{edge + step:.2f}" for edge in edges for step in
              (Decimal("-0.01"), 0, Decimal("0.01"), Decimal(-1), 1, Decimal(10))
              if edge + step >= 0} | {"0.00", "1.00", "9.99", "10.00", "150.00"}
    for price in sorted(prices):
        try:
            valid = stage.check(price) == price
        except ValueError:
            valid = False
        assert stage.all_valid((price,)) is valid, (price, low, high)
        assert stage.all_valid(("150.00", price, "10.00")) is (
            valid and stage.all_valid(("150.00", "10.00"))), (price, low, high)


class Crashing:
    """A stage with a bug."""

    def __init__(self, settings: object) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        raise ZeroDivisionError("a bug")


class Tagging:
    """A stage that rewrites every price, to show where it runs."""

    order = 50

    def __init__(self, settings: object) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> list[Fare]:
        return [fare._replace(currency="USD") for fare in answer]


def test_a_calendars_days_pass_the_stages_that_read_them_and_must_be_its_months(
        make_settings) -> None:
    settings = make_settings(voe_fare_pipelines=f"{__name__}:Tagging=950")
    pipeline = FarePipeline(settings, third_party=False)
    month = job(date="2026-12")
    days = [CalendarDay("2026-12-01", "412.3", "BRL"), CalendarDay("2026-12-02", "380.00", "BRL")]
    said = Searched("GRU", "SSA", "2026-12")
    answer = pipeline.run(Answer(days, said, b"<calendar>"), month)
    # Prices normalised; Tagging (a stage written for fares) never saw the days.
    assert answer == [days[0]._replace(price="412.30"), days[1]]
    assert pipeline.field_counts.as_dict()["demo"] == {
        "currency": {"valid": 2, "invalid": 0}, "price": {"valid": 2, "invalid": 0}}
    for odd, why in (([days[0], days[0]], "day 2026-12-01 listed twice .days 1 and 2."),
                     ([days[0]._replace(date="2027-01-01")], "2027-01-01. is not in 2026-12"),
                     ([days[0]._replace(date="2026-12-32")], "no such day"),
                     ([FARE], "is no calendar's day, but the job asks the calendar of 2026-12"),
                     ([days[0]._replace(price="-1")], "price")):
        with pytest.raises(ParseError, match=why) as caught:
            pipeline.run(Answer(odd, said, b"<calendar>"), month)
        assert caught.value.page == b"<calendar>"
    with pytest.raises(ParseError, match=r"fare 1 \('2026-12-01'\) is a calendar's day, but "
                                         r"the job searches one date \(2026-12-20\)"):
        pipeline.run(Answer(days[:1], Searched("GRU", "SSA", "2026-12-20")), job())
    with pytest.raises(ParseError, match="page answers GRU-SSA 2027-01, asked GRU-SSA 2026-12"):
        pipeline.run(Answer(days, Searched("GRU", "SSA", "2027-01")), month)


def test_a_multi_city_fare_needs_every_later_leg_and_its_page_the_jobs_legs(
        make_settings) -> None:
    pipeline = FarePipeline(make_settings(), third_party=False)
    legs = "GRU-REC:2026-12-20,REC-SSA:2026-12-24"
    trip = job(destination="SSA")._replace(legs=legs)
    said = Searched("GRU", "SSA", "2026-12-20", None, None, legs)
    fare = MultiCityFare(*FARE, (("AD\xa04321", "9h00", "10:30"),))
    answer = pipeline.run(Answer([fare], said, b"<trip>"), trip)
    assert answer == [fare._replace(legs=(("AD 4321", "09:00", "10:30"),))]
    for odd, why in (([FARE], r"fare 1 \('G3 3573'\) has not the 2 legs of the trip"),
                     ([fare._replace(legs=())], "has not the 2 legs"),
                     ([fare._replace(legs=(("AD 4321", "25:00", "10:30"),))],
                      "leg 2: .* not a time of day")):
        with pytest.raises(ParseError, match=why) as caught:
            pipeline.run(Answer(odd, said, b"<trip>"), trip)
        assert caught.value.page == b"<trip>"
    other = Searched("GRU", "SSA", "2026-12-20", None, None,
                     "GRU-POA:2026-12-20,POA-SSA:2026-12-24")
    with pytest.raises(ParseError, match="page answers GRU-POA:2026-12-20,POA-SSA:2026-12-24, "
                                         "asked GRU-REC:2026-12-20,REC-SSA:2026-12-24"):
        pipeline.run(Answer([fare], other), trip)
    with pytest.raises(ParseError, match="is a multi-city trip's, but the job is not one"):
        pipeline.run(Answer([fare]), job())


def test_overrides_add_move_and_remove_stages(make_settings) -> None:
    assert parse_orders("") == {}
    assert parse_orders(" a.b:C=10, d:E=none ,") == {"a.b:C": 10, "d:E": None}
    for bad in ("a.b:C", "a.b=10", "a.b:C=ten", "a b:C=1"):
        with pytest.raises(ValueError):
            parse_orders(bad)
    settings = make_settings(voe_fare_pipelines=f"{__name__}:Tagging=950,"
                             "voe.worker.farepipeline.currency:CurrencyCode=none")
    pipeline = FarePipeline(settings, third_party=False)
    assert pipeline.names[-1] == f"{__name__}:Tagging"
    assert "voe.worker.farepipeline.currency:CurrencyCode" not in pipeline.names
    assert pipeline.run([FARE], job()) == [FARE._replace(currency="USD")]


def test_entry_point_stages_run_at_their_order(tmp_path, monkeypatch, make_settings) -> None:
    (tmp_path / "voe_test_stages.py").write_text(
        "class Early:\n"
        "    order = 150\n"
        "    def __init__(self, settings):\n"
        "        pass\n"
        "    def process(self, answer, job):\n"
        "        return answer\n")
    dist_info = tmp_path / "voe_test_stages-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: voe-test-stages\n"
                                        "Version: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[voe.fare_pipelines]\nearly = voe_test_stages:Early\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pipeline = FarePipeline(make_settings())
    assert pipeline.names[:3] == ["voe.worker.farepipeline.answers:AnswersSearch",
                                  "voe_test_stages:Early",
                                  "voe.worker.farepipeline.flight:FlightCode"]


def test_a_crashing_or_missing_stage_fails_the_answer_with_its_page(make_settings) -> None:
    crashing = FarePipeline(make_settings(voe_fare_pipelines=f"{__name__}:Crashing=10"),
                            third_party=False)
    with pytest.raises(ParseError, match=f"stage {__name__}:Crashing crashed: "
                                         "ZeroDivisionError: a bug") as caught:
        crashing.run(Answer([FARE], page=b"the page"), job())
    assert caught.value.page == b"the page"
    missing = FarePipeline(make_settings(voe_fare_pipelines="voe_no_such_module:Stage=10"),
                           third_party=False)
    with pytest.raises(ParseError, match="fare pipeline not loaded: voe_no_such_module:Stage"):
        missing.run(Answer([FARE], page=b"p"), job())


# The worker ------------------------------------------------------------------------

@pytest.fixture
def make_worker(make_settings, tmp_path) -> Iterator:
    """Factory: a worker (not running: its ``search`` is called directly) on ``url``."""
    from voe.worker.loop import Worker

    made = []

    def build(url: str, **overrides: str) -> Worker:
        settings = make_settings(voe_demo_airline_url=url, voe_data_dir=str(tmp_path),
                                 voe_curve="off", voe_http_retries=0, **overrides)
        worker = Worker(settings, concurrency=1, name="test-worker")
        made.append(worker)
        return worker

    yield build
    for worker in made:
        worker.dealer.close(0)
        worker.push.close(0)
        worker.http.close()


def kept_page(error: str) -> bytes:
    assert error.startswith("page kept at "), error
    return Path(error.removeprefix("page kept at ").split(": ", 1)[0]).read_bytes()


def test_a_crashing_stage_fails_the_attempt_and_the_worker_goes_on(airline_url, make_worker,
                                                                   make_settings) -> None:
    worker = make_worker(airline_url, voe_fare_pipelines=f"{__name__}:Crashing=10")
    first = worker.search(job("GRU", "REC", "2026-12-01"))
    assert first.status == PARSE and first.fares == ()
    assert "Crashing crashed: ZeroDivisionError: a bug" in first.error
    assert b'<table id="results">' in kept_page(first.error)
    worker.fare_pipeline = FarePipeline(make_settings())  # the bug fixed
    second = worker.search(job("GRU", "REC", "2026-12-01"))
    assert second.status == OK and list(second.fares) == fares_for("GRU", "REC", "2026-12-01")


# The parser ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "price"), [
    ("R$ 3.772,89", "3772.89"), ("R$ 3\xa0772,89", "3772.89"), ("R$ 3\u2009772,89", "3772.89"),
    ("R$ 3\u202f772,89", "3772.89"), ("BRL 3772.89", "3772.89"), ("R$ 3.773", "3773.00"),
    ("R$ 3773", "3773.00"), ("R$3.772,89", "3772.89"), ("R$ 1.234.567,89", "1234567.89"),
    ("BRL 3.772,89", "3772.89"),
])
def test_prices_in_common_formats(text: str, price: str) -> None:
    assert parse_price(text) == price


@pytest.mark.parametrize("text", [
    "R$ 1,234.56", "R$ 12.34,56", "R$ 1.234,5", "R$ 1 234.567,89", "R$ 1.234 567,89",
    "US$ 1.234,56", "€ 1.234,56", "1.234,56", "R$ 818,41 - R$ 9.999,99", "a partir de R$ 10,00",
    "R$ -1.234,56", "R$ 0", "R$ 12.3456", "R$ ١٢,٣٤", "BRL 3772.8",
])
def test_doubtful_prices_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_price(text)


def page_with(row_price: str, **replace: str) -> bytes:
    page = results_page("GRU", "REC", "2026-12-01", [FARE]).replace(
        '<td class="price">R$ 1.234,56</td>', f'<td class="price">{row_price}</td>')
    for old, new in replace.items():
        page = page.replace(old, new)
    return page.encode()


@pytest.mark.parametrize("cell", [
    '<s>R$ 1.500,00</s> R$ 1.234,56', "<del>R$ 1.500,00</del> R$ 1.234,56",
    "<strike>R$ 1.500,00</strike>R$ 1.234,56", '<span class="old-price">R$ 1.500,00</span> '
    "R$ 1.234,56", 'R$ 1.234,56 <span class="was">R$ 1.500,00</span>',
    'R$ <span style="display:none">1</span>1.234,56',
    'R$ <span style="color: red; visibility : hidden">9</span>1.234,56',
    'R$ <span hidden>9</span>1.234,56', 'R$ <b aria-hidden="true">9</b>1.234,56',
    'R$ 1.234,56<span style="DISPLAY: NONE"> - R$ 1,00</span>',
])
def test_the_parser_reads_the_price_a_person_sees(cell: str) -> None:
    assert parse_results(page_with(cell)) == [FARE._replace(flight="G3 3573")]


def test_the_parser_skips_hidden_rows_tables_and_counts() -> None:
    decoy = ('<tr class="flight" {}><td class="flight">G3 1</td><td class="departure">06:00'
             '</td><td class="arrival">07:00</td><td class="price">R$ 1,00</td></tr>')
    for hiding in ('style="display:none"', "hidden", 'aria-hidden="true"',
                   'STYLE="visibility:hidden"'):
        page = page_with("R$ 1.234,56", **{"<tbody>\n": "<tbody>\n" + decoy.format(hiding)})
        assert parse_results(page) == [FARE]
    hidden_table = ('<div style="display:none"><p class="summary">1 voos em 2026-12-01</p>'
                    '<table id="results">' + decoy.format("") + "</table></div>")
    page = page_with("R$ 1.234,56", **{"<main>": "<main>" + hidden_table})
    assert parse_results(page) == [FARE]
    visible_decoy = page_with("R$ 1.234,56", **{"<tbody>\n": "<tbody>\n" + decoy.format("")})
    with pytest.raises(ParseError, match="announces 1 flights but lists 2"):
        parse_results(visible_decoy)


def test_the_parser_reads_what_the_page_answers() -> None:
    answer = parse_results(page_with("R$ 1.234,56"))
    assert answer.answered == Searched("GRU", "REC", "2026-12-01") and answer.page
    with pytest.raises(ParseError, match="no route heading"):
        parse_results(page_with("R$ 1.234,56", **{"<h1>": "<h2>", "</h1>": "</h2>"}))
    with pytest.raises(ParseError, match="does not say the date"):
        parse_results(page_with("R$ 1.234,56", **{" em <time": " <time"}))


def test_a_paginated_page_alone_is_refused() -> None:
    pager = ('<nav class="pager">Página 1 de 2 <a rel="next" href="/search?origin=GRU&amp;'
             'destination=REC&amp;date=2026-12-01&amp;page=2">Próxima</a></nav>')
    page = page_with("R$ 1.234,56", **{"</table>": "</table>" + pager})
    assert read_page(page).next == ("/search?origin=GRU&destination=REC&date=2026-12-01"
                                    "&page=2")
    with pytest.raises(ParseError, match="page 1 of 2"):
        parse_results(page)
    with pytest.raises(ParseError, match="over the 20-page limit"):
        read_page(page.replace(b"1 de 2", b"1 de 21"))


# The demo airline's page faults, end to end ------------------------------------------

SEARCHES = [("GRU", "REC", "2026-12-01"), ("MAO", "POA", "2027-03-15"),
            ("SDU", "CGH", "2026-07-04"), ("GIG", "BSB", "2026-10-10"),
            ("CWB", "FOR", "2026-09-09"), ("CGH", "SSA", "2026-12-20")]
# Fault, options, and whether each search must end in fares (True) or a parse error.
FAULTS = [
    ("wrong-search", {"wrong_search_rate": 1.0}, False),
    ("hidden-decoy", {"hidden_decoy_rate": 1.0}, True),
    ("duplicate-row", {"duplicate_row_rate": 1.0}, False),
    ("price-format", {"price_format_rate": 1.0}, True),
    ("field-format", {"field_format_rate": 1.0}, True),
    ("paginate", {"paginate": 2}, True),
    ("readable-together", {"hidden_decoy_rate": 1.0, "price_format_rate": 1.0,
                           "field_format_rate": 1.0, "paginate": 3, "malformed_rate": 1.0},
     True),
]


def api_fares(url: str, origin: str, destination: str, date: str) -> list[Fare]:
    status, _, body = http_get(f"{url}/api/search?origin={origin}&destination={destination}"
                               f"&date={date}")
    assert status == 200
    return [Fare(**item) for item in json.loads(body)["fares"]]


@pytest.mark.parametrize(("name", "options", "readable"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.parametrize("seed", [0, 7])
def test_page_faults_end_in_the_api_fares_or_a_kept_parse_error(
        demo_airline, make_worker, name: str, options: dict, readable: bool, seed: int) -> None:
    url = demo_airline(flights=None, seed=seed, **options)
    worker = make_worker(url)
    for origin, destination, date in SEARCHES:
        result = worker.search(job(origin, destination, date))
        truth = api_fares(url, origin, destination, date)
        if result.status == OK:
            assert list(result.fares) == truth, (name, origin, destination, date)
        else:
            assert result.status == PARSE, result.error
            assert kept_page(result.error)
        assert (result.status == OK) is readable, (name, result.error)
        # A refused result carries its answer's counts: refused for another reason than
        # a field (another search, a flight twice), its fares still had every field valid.
        # An ok one carries none: every field of every fare is valid.
        if result.status == OK:
            assert result.field_counts == ()
        else:
            assert result.field_counts
            assert not any(count.invalid for count in result.field_counts)
    assert worker.fare_pipeline.field_counts.as_dict()["demo"]


def test_a_result_counts_the_fields_its_answer_had_valid(airline_url, make_worker) -> None:
    truth = fares_for("GRU", "REC", "2026-12-01")
    prices = sorted(Decimal(fare.price) for fare in truth)
    bound = prices[len(prices) // 2]  # the dearer fares are "misread": out of bounds
    dearer = sum(price > bound for price in prices)
    worker = make_worker(airline_url, voe_price_max=str(bound))
    refused = worker.search(job("GRU", "REC", "2026-12-01"))
    assert refused.status == PARSE and "outside the bounds" in refused.error
    assert {count.field: count[1:] for count in refused.field_counts} == {
        "flight": (len(truth), 0), "departure": (len(truth), 0), "arrival": (len(truth), 0),
        "price": (len(truth) - dearer, dearer), "currency": (len(truth), 0)}
    timeout = make_worker("http://127.0.0.1:9").search(job("GRU", "REC", "2026-12-01"))
    assert timeout.status != OK and timeout.field_counts == ()  # no answer, nothing counted


def test_demo_api_states_the_search_it_answers(airline_url, make_worker) -> None:
    worker = make_worker(airline_url)
    result = worker.search(job("GRU", "REC", "2026-12-01", backend="demo-api"))
    assert result.status == OK and list(result.fares) == fares_for("GRU", "REC", "2026-12-01")
    status, _, body = http_get(f"{airline_url}/api/search?origin=GRU&destination=REC"
                               "&date=2026-12-01")
    assert json.loads(body)["search"] == {"origin": "GRU", "destination": "REC",
                                          "date": "2026-12-01"}


def test_a_round_trip_jobs_fares_have_their_return_leg_normalised(make_settings) -> None:
    pipeline = FarePipeline(make_settings(), third_party=False)
    round_trip = job()._replace(return_date="2026-12-27")
    back = RoundTripFare(*FARE, "Voo AD\xa04321", "7h05", "08:30")
    answer = Answer([back], Searched("GRU", "SSA", "2026-12-20", "2026-12-27"), b"p")
    assert pipeline.run(answer, round_trip) == [RoundTripFare(*FARE, "AD 4321", "07:05", "08:30")]
    one_way_answer = Answer([FARE], Searched("GRU", "SSA", "2026-12-20", "2026-12-27"), b"p")
    with pytest.raises(ParseError, match="fare 1 .'G3 3573'. has no return flight, but the job "
                                         "is a round trip .return 2026-12-27.") as caught:
        pipeline.run(one_way_answer, round_trip)
    assert caught.value.page == b"p"
    with pytest.raises(ParseError, match="has a return flight, but the job is one-way"):
        pipeline.run(Answer([back], Searched("GRU", "SSA", "2026-12-20"), b"p"), job())
    broken = Answer([back._replace(return_departure="tomorrow")], answer.answered, b"p")
    with pytest.raises(ParseError, match="fare 1 .'G3 3573'.: return 'tomorrow' is not a time"):
        pipeline.run(broken, round_trip)
    # Two returns of one outbound are two fares; the same pair twice is a duplicate.
    other = back._replace(return_flight="LA 1", price="99.00")
    assert len(pipeline.run(Answer([back, other], answer.answered), round_trip)) == 2
    with pytest.raises(ParseError, match="flight G3 3573 at 05:15, back on AD 4321 at 07:05, "
                                         "listed twice"):
        pipeline.run(Answer([back, back._replace(price="1.50")], answer.answered), round_trip)
