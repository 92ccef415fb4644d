"""The usual answer skips the built-in stages that cannot refuse it, with the same verdict.

A plain search's answer of plain fares, stating nothing of its search, passes
AnswersSearch, CurrencyAsked, ReturnLeg, LaterLegs and CalendarDays untouched, so a
pipeline of built-in stages leaves them out for it (``FarePipeline._plain_steps``).
These tests hold that shortcut to the full run: same fares, same refusal, same counts.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from voe.backends.base import ParseError
from voe.model import Answer, Fare, RoundTripFare, Searched, SearchJob
from voe.settings import load
from voe.worker.farepipeline import FarePipeline

JOB = SearchJob("null:GRU-REC:2026-01-01", 1, 1, "null", "GRU", "REC", "2026-01-01", None)
_TEXT = st.one_of(st.sampled_from(["G3 1234", "AD 4321", "G3\xa01234", "g3 1", "", "06:10",
                                   "6:10", "25:00", "07:40", "1234.50", "1234.5", "0.50",
                                   "0", "9999999.99", "BRL", "brl", "USD", "R$", " 12.00"]),
                  st.text(max_size=8))
_VALID = st.builds(Fare, st.sampled_from(["G3 1234", "AD 4321"]),
                   st.sampled_from(["06:10", "09:00"]), st.just("07:40"),
                   st.sampled_from(["100.00", "1234.5"]), st.just("BRL"))
_FARES = st.lists(st.one_of(_VALID, st.builds(Fare, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT)),
                  max_size=6)


def _pipelines(tmp_path) -> tuple[FarePipeline, FarePipeline]:
    settings = load(tmp_path / "none.env")
    quick, full = FarePipeline(settings, third_party=False), FarePipeline(settings, False)
    full._plain_steps = None
    assert quick._plain_steps is not None
    return quick, full


def _verdict(pipeline: FarePipeline, fares: list, job: SearchJob = JOB) -> tuple:
    try:
        return ("ok", list(pipeline.run(Answer(fares), job)))
    except ParseError as error:
        return ("refused", str(error), error.field_counts)


@settings(max_examples=400, deadline=None)
@given(_FARES)
@example([Fare("G3 1234", "06:10", "07:40", "100.00", "BRL")] * 2)  # a flight listed twice
def test_a_plain_answer_gets_the_full_runs_verdict_and_counts(tmp_path_factory, fares):
    quick, full = _pipelines(tmp_path_factory.mktemp("plain"))
    assert _verdict(quick, fares) == _verdict(full, fares)
    assert quick.field_counts.as_dict() == full.field_counts.as_dict()


def test_an_answer_that_is_not_plain_takes_every_stage(tmp_path):
    quick, _ = _pipelines(tmp_path)
    round_trip = RoundTripFare("G3 1234", "06:10", "07:40", "100.00", "BRL", "AD 1", "09:00",
                               "10:00")
    with pytest.raises(ParseError, match="return flight, but the job is one-way"):
        quick.run(Answer([Fare("G3 1234", "06:10", "07:40", "100.00", "BRL"), round_trip]), JOB)


def test_an_answer_stating_its_search_takes_every_stage(tmp_path):
    quick, _ = _pipelines(tmp_path)
    fares = [Fare("G3 1234", "06:10", "07:40", "100.00", "BRL")]
    with pytest.raises(ParseError, match="page answers"):  # AnswersSearch still compares
        quick.run(Answer(fares, answered=Searched("GRU", "SSA", "2026-01-01")), JOB)
    assert list(quick.run(Answer(fares, answered=Searched("GRU", "REC", "2026-01-01")), JOB)) \
        == fares


def test_a_third_party_stage_turns_the_shortcut_off(tmp_path, monkeypatch):
    monkeypatch.setenv("VOE_FARE_PIPELINES", "voe.worker.farepipeline.flight:FlightCode=210,"
                       "tests.test_farepipeline_plain:Noted=600")
    pipeline = FarePipeline(load(tmp_path / "none.env"), third_party=False)
    assert not pipeline.broken and pipeline._plain_steps is None


class Noted:
    """A stage from outside voe's built-ins: it passes every answer."""

    def __init__(self, settings) -> None:
        self.settings = settings

    def process(self, answer, job):
        return answer
