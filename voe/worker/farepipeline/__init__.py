"""The fare pipeline: validators every answer passes between a backend and the store.

Shaped like Scrapy's item pipelines. Each stage is a class built with the settings,
with ``process(answer, job) -> answer``: it returns the answer (possibly with its
fares normalised) or raises ``ParseError``. Stages run in ascending order:

- the built-ins in ``PIPELINES_BASE`` ("module:Class" -> order);
- third-party stages from the entry-point group ``voe.fare_pipelines`` (the entry
  point's value is the class; its order is its ``order`` attribute, 500 by default);
- ``VOE_FARE_PIPELINES`` (``dotted.path:Class=ORDER,...``) adds a stage or moves
  one to another order, and ``dotted.path:Class=none`` removes one.

A calendar job's answer (the cheapest fare per day of a month, ``CalendarDay`` items with
no flight nor times) passes only the stages with ``calendar_days = True``: every field
stage (it checks the fields the days have) and the built-in stages that read one; a
stage written for fares, as most third-party ones are, never sees a calendar's day.

A wrong fare stored silently is worse than a lost one, so nothing is let through on
doubt: a stage that fails to load, or crashes while it runs (a bug), fails the
attempt as a ``ParseError`` carrying the page, like a page that does not parse. The
page is then kept (``VOE_KEEP_PAGE_BYTES``) and the worker goes on.

Stages that check fields record how many fares had each field valid and invalid, per
backend (``FarePipeline.field_counts``): the per-field yield of a backend. Each answer's
own counts travel with its result to the sink, which keeps them per cycle: an answer
that passed has every field valid (implied, not sent), one refused carries its counts
on the ``ParseError`` (``field_counts``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from voe.backends.base import ParseError
from voe.components import DEFAULT_ORDER, load_class, ordered
from voe.model import Answer, Fare, FieldCount, RoundTripFare, SearchJob
from voe.settings import Settings
from voe.worker.farepipeline.base import FieldCounts, FieldStage

log = logging.getLogger("voe.farepipeline")

# The built-in stages and their order: the answer's search first, then each field, then
# duplicates last (judged on the fields the stages before normalised).
PIPELINES_BASE: dict[str, int] = {
    "voe.worker.farepipeline.answers:AnswersSearch": 100,
    "voe.worker.farepipeline.flight:FlightCode": 200,
    "voe.worker.farepipeline.times:Times": 300,
    "voe.worker.farepipeline.price:PriceBounds": 400,
    "voe.worker.farepipeline.currency:CurrencyCode": 450,
    "voe.worker.farepipeline.currency:CurrencyAsked": 460,
    "voe.worker.farepipeline.returnleg:ReturnLeg": 500,
    "voe.worker.farepipeline.legs:LaterLegs": 520,
    "voe.worker.farepipeline.calendar:CalendarDays": 550,
    "voe.worker.farepipeline.duplicates:RefuseDuplicates": 900,
}
# The entry-point group of third-party stages (ordered by their ``order`` attribute).
ENTRY_POINT_GROUP = "voe.fare_pipelines"

__all__ = ["DEFAULT_ORDER", "ENTRY_POINT_GROUP", "PIPELINES_BASE", "FarePipeline",
           "FieldCounts", "FieldStage", "Stage"]


class Stage(Protocol):
    """What a fare pipeline stage is: built with the settings, it checks one answer."""

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return the answer (its fares possibly normalised) or raise ``ParseError``."""
        ...


class FarePipeline:
    """The ordered stages of the fare pipeline, run by the worker on every answer.

    Building it never raises: a stage that cannot be loaded or built makes every
    ``run`` fail with a ``ParseError`` naming it (the operator fixes it or removes it
    with ``VOE_FARE_PIPELINES=path:Class=none``), so no fare passes unchecked.
    """

    def __init__(self, settings: Settings, third_party: bool = True) -> None:
        self.settings = settings
        self.stages: list[tuple[int, str, Any]] = []
        self.broken: list[str] = []
        self.field_counts = FieldCounts()
        try:
            chosen = ordered(PIPELINES_BASE, ENTRY_POINT_GROUP if third_party else None,
                             settings.voe_fare_pipelines, self._broken_entry_point)
        except ValueError as error:
            self.broken.append(f"VOE_FARE_PIPELINES: {error}")
            chosen = ordered(PIPELINES_BASE, None, "", self._broken_entry_point)
        for order, path, found in chosen:
            try:
                stage = (found or load_class(path))(settings)
            except Exception as error:  # a broken stage must fail jobs, not the worker
                log.exception("fare pipeline stage %s failed to load", path)
                self.broken.append(f"{path}: {type(error).__name__}: {error}")
                continue
            if isinstance(stage, FieldStage):
                stage.counts = self.field_counts
            self.stages.append((order, path, stage))
        self._steps = _steps(self.stages)
        # The usual answer (plain fares of a plain search, nothing stated of the search it
        # answers) passes the built-in stages that only look at other searches and answers
        # untouched (``_PLAIN_NOOPS``): with only built-in stages, it skips them.
        self._plain_steps = _steps([entry for entry in self.stages
                                    if entry[1] not in _PLAIN_NOOPS]) if all(
            path in PIPELINES_BASE for _, path, _ in self.stages) else None
        # A calendar's answer (its days, ``CalendarDay``) passes the stages that say they
        # read one; a stage written for fares (most third-party ones) is not given it.
        self._calendar_steps = _steps([entry for entry in self.stages
                                       if getattr(entry[2], "calendar_days", False)])
        # The fields the field stages check, each once, in the order they run.
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(
            field for _, _, stage in self.stages if isinstance(stage, FieldStage)
            for field in stage.fields))

    def _broken_entry_point(self, path: str, why: str) -> None:
        """Record an entry point that failed to load: every run fails until it is fixed."""
        log.error("fare pipeline entry point %s failed to load: %s", path, why)
        self.broken.append(f"{path}: {why}")

    @property
    def names(self) -> list[str]:
        """The stages in the order they run, as ``module:Class``."""
        return [path for _, path, _ in self.stages]

    def run(self, fares: Answer | Iterable[Fare], job: SearchJob) -> Answer:
        """Pass a backend's answer through every stage; ``ParseError`` (with the page) if odd.

        A plain list of fares becomes an ``Answer`` without a search or a page. After
        the first failure the other field checks still run, so the per-field counts
        see every fare; the first failure is raised, with this answer's per-field
        counts as ``field_counts`` (none when the pipeline is not loaded).
        """
        answer = fares if isinstance(fares, Answer) else Answer(fares)
        if self.broken:
            raise ParseError(f"fare pipeline not loaded: {'; '.join(self.broken)}",
                             page=answer.page)
        failure: ParseError | None = None
        told: dict[str, FieldCount | None] = {}  # what refusing or crashing field stages said
        steps = self._calendar_steps if job.calendar else self._steps
        if (self._plain_steps is not None and answer.answered is None and not job.options
                and not job.return_date and not job.legs and not job.calendar
                and set(map(type, answer)) <= _PLAIN_FARE):
            steps = self._plain_steps
        for step in steps:
            if step.__class__ is _OnePass:
                if step.passes(answer, job):
                    continue  # every value already valid and normal, and counted
                stages = step.stages
            else:
                stages = (step,)
            for _, path, stage in stages:
                if failure is not None and not isinstance(stage, FieldStage):
                    continue  # after a failure, only the field checks run, for their counts
                try:
                    result = stage.process(answer, job)
                except ParseError as error:
                    if error.page is None:
                        error.page = answer.page
                    _tell(told, stage, error.field_counts)
                    failure = failure or error
                    continue
                except Exception as error:  # a stage's bug fails the attempt, never the worker
                    log.exception("fare pipeline stage %s crashed on %s", path, job.id)
                    _tell(told, stage, ())
                    crash = ParseError(f"fare pipeline stage {path} crashed: "
                                       f"{type(error).__name__}: {error}", page=answer.page)
                    crash.__cause__ = error
                    failure = failure or crash
                    continue
                if not isinstance(result, Answer):
                    if not isinstance(result, list):
                        failure = failure or ParseError(
                            f"fare pipeline stage {path} returned {type(result).__name__}, not an "
                            "answer", page=answer.page)
                        continue
                    result = answer.with_fares(result)
                answer = result
        if failure is not None:
            fields = self.fields
            if answer and len(answer[0]) < 5:  # a calendar's days: no flight nor times
                fields = tuple(field for field in fields if field in answer[0]._fields)
            failure.field_counts = _refused_counts(fields, len(answer), told)
            raise failure
        return answer


# Built-in stages that pass, untouched and uncounted, an answer of plain fares (exactly
# ``Fare``) that states nothing of its search (``answered`` None), for a search without
# options, return, later legs or calendar: AnswersSearch compares only what a page
# states; CurrencyAsked only a currency asked or stated; ReturnLeg, LaterLegs and
# CalendarDays refuse round-trip, multi-city and calendar items in such an answer, and
# there are none.
_PLAIN_NOOPS = frozenset(f"voe.worker.farepipeline.{name}" for name in (
    "answers:AnswersSearch", "currency:CurrencyAsked", "returnleg:ReturnLeg", "legs:LaterLegs",
    "calendar:CalendarDays"))
_PLAIN_FARE = frozenset({Fare})


class _OnePass:
    """Consecutive field stages with a quick ``all_valid`` test, checked in one pass.

    The usual answer, every value already valid and normal, costs one test per field
    (over the answer's columns, taken in one ``zip``) and leaves the answer as it is;
    then each stage's fields are counted valid, as its ``process`` would have. Any
    other value (or an error) sends the answer through each stage's ``process``
    instead, so failures, messages and counts are theirs.
    """

    def __init__(self, stages: list[tuple[int, str, Any]]) -> None:
        self.stages = stages
        self._tests: dict[tuple[str, ...], list[tuple[int, Any]]] = {}
        self._counted: list[tuple[FieldCounts, tuple[str, ...]]] = []

    def add(self, entry: tuple[int, str, Any]) -> None:
        """Join the stage of ``entry`` (its counts are set) to the pass."""
        self.stages.append(entry)
        stage = entry[2]
        for index, (counts, fields) in enumerate(self._counted):
            if counts is stage.counts:
                self._counted[index] = (counts, fields + stage.fields)
                break
        else:
            self._counted.append((stage.counts, stage.fields))

    def _tests_for(self, names: tuple[str, ...]) -> list[tuple[int, Any]]:
        """(column, test) of every field, for fares whose fields are ``names`` (made once)."""
        tests = self._tests.get(names)
        if tests is None:
            tests = self._tests[names] = [(names.index(field), stage.all_valid)
                                          for _, _, stage in self.stages
                                          for field in stage.fields if field in names]
        return tests

    def passes(self, answer: Answer, job: SearchJob) -> bool:
        """Whether every value passed; if so the stages' fields are counted."""
        if answer:
            try:
                columns = list(zip(*answer, strict=True))
                for index, all_valid in self._tests_for(answer[0]._fields):
                    if not all_valid(columns[index]):
                        return False
            except Exception:  # noqa: BLE001 - each stage's process meets it and says what
                return False
        names = answer[0]._fields if answer else Fare._fields
        for counts, fields in self._counted:
            if names is not Fare._fields and names is not RoundTripFare._fields:
                fields = tuple(field for field in fields if field in names)  # a calendar's day
            counts.add_all_valid(job.backend, fields, len(answer))
        return True


def _tell(told: dict[str, FieldCount | None], stage: Any,
          counts: tuple[FieldCount, ...]) -> None:
    """Note what a field stage that refused an answer counted of its fields (None for a
    field it did not count, e.g. when it crashed); the more invalid count of a field wins."""
    if not isinstance(stage, FieldStage):
        return
    for field in stage.fields:
        said = next((count for count in counts if count.field == field), None)
        known = told.get(field)
        if known is None or (said is not None and said.invalid > known.invalid):
            told[field] = said


def _refused_counts(fields: tuple[str, ...], fares: int,
                    told: dict[str, FieldCount | None]) -> tuple[FieldCount, ...]:
    """The per-field counts of a refused answer of ``fares`` fares: what the field stages
    that refused it counted, every other field valid; a field nobody counted is left out."""
    counts = []
    for field in fields:
        count = told[field] if field in told else FieldCount(field, fares, 0)
        if count is not None and count.valid + count.invalid:
            counts.append(count)
    return tuple(counts)


def _fusable(stage: Any) -> bool:
    return (isinstance(stage, FieldStage) and type(stage).process is FieldStage.process
            and getattr(stage, "all_valid", None) is not None)


def _steps(stages: list[tuple[int, str, Any]]) -> list[Any]:
    """The stages in order, runs of consecutive fusable field stages made one ``_OnePass``."""
    steps: list[Any] = []
    for entry in stages:
        if _fusable(entry[2]):
            if not steps or not isinstance(steps[-1], _OnePass):
                steps.append(_OnePass([]))
            steps[-1].add(entry)
        else:
            steps.append(entry)
    return steps

