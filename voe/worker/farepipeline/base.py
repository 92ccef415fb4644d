"""The base of the stages that check fields one by one, and their per-field counts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from voe.backends.base import ParseError
from voe.model import Answer, FieldCount, SearchJob
from voe.settings import Settings

# Most problems named in one error message (the count of the rest follows).
SHOWN_PROBLEMS = 3


def all_match(pattern: str) -> Callable[[Sequence[str]], bool]:
    """An ``all_valid`` test: every value fully matches ``pattern``, which must not match a
    line break. One regular expression over the values joined by line breaks (none of
    them holding one) instead of one call per value."""
    one = f"(?:{pattern})"
    every = re.compile(f"{one}(?:\n{one})*")

    def test(values: Sequence[str]) -> bool:
        joined = "\n".join(values)
        return (not values or joined.count("\n") == len(values) - 1
                and every.fullmatch(joined) is not None)

    return test


def refuse_kind(answer: Answer, kind: type, why: str) -> None:
    """``ParseError`` naming the first fare of type ``kind`` in ``answer`` (``why`` says what
    is wrong with it): a fare of a shape the job did not ask for."""
    if kind not in set(map(type, answer)):  # the usual answer, looked at in C
        return
    for number, fare in enumerate(answer, start=1):
        if type(fare) is kind:
            raise ParseError(f"fare {number} ({fare[0]!r}) {why}", page=answer.page)


class TripLegs:
    """A stage for the legs a trip job asks beyond its first (a return, later cities): a
    fare of ``kind`` is refused for a job that does not ask them, and for one that does,
    every fare must be of ``kind`` with those legs (``missing`` says why one is not), each
    normalised by ``normal`` (a ``ValueError`` from it, prefixed with ``prefix``, is the
    fare's error)."""

    calendar_days = True  # it reads a calendar's answer too (it holds no such fare)
    kind: type
    not_asked: str  # why a fare of ``kind`` is wrong for a job that does not ask its legs
    prefix = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def asked(self, job: SearchJob) -> bool:
        """Whether ``job`` asks the legs."""
        raise NotImplementedError

    def missing(self, fare: Any, job: SearchJob) -> str | None:
        """Why ``fare`` lacks the legs ``job`` asks (said after "fare N (flight)"), or None."""
        raise NotImplementedError

    def normal(self, fare: Any) -> Any:
        """``fare`` with its legs normalised; ``ValueError`` says what is not."""
        raise NotImplementedError

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer`` with its legs normalised, or raise ``ParseError``."""
        if not self.asked(job):
            refuse_kind(answer, self.kind, self.not_asked)
            return answer
        fixed = []
        for number, fare in enumerate(answer, start=1):
            why = self.missing(fare, job)
            if why is not None:
                raise ParseError(f"fare {number} ({fare[0]!r}) {why}", page=answer.page)
            try:
                fixed.append(self.normal(fare))
            except ValueError as error:
                raise ParseError(f"fare {number} ({fare[0]!r}): {self.prefix}{error}",
                                 page=answer.page) from None
        return answer.with_fares(fixed)


class FieldCounts:
    """How many fares had each field valid and invalid, per backend: the per-field yield.

    ``share(backend, field)`` is the share of fares with the field valid (None if
    none were seen); the worker reads ``as_dict`` to report it.
    """

    def __init__(self) -> None:
        self._valid: Counter[tuple[str, str]] = Counter()
        self.invalid: Counter[tuple[str, str]] = Counter()
        # Answers whose every field was valid, counted by (backend, fields) in one step
        # (the usual case, on the worker's hot path) and spread over the fields when read.
        self._all_valid: Counter[tuple[str, tuple[str, ...]]] = Counter()

    def add(self, backend: str, field: str, valid: int, invalid: int) -> None:
        """Count ``valid`` and ``invalid`` values of ``field`` in answers of ``backend``."""
        self._valid[backend, field] += valid
        self.invalid[backend, field] += invalid

    def add_all_valid(self, backend: str, fields: tuple[str, ...], fares: int) -> None:
        """Count ``fares`` valid values of each of ``fields`` in answers of ``backend``."""
        self._all_valid[backend, fields] += fares

    @property
    def valid(self) -> Counter[tuple[str, str]]:
        """Valid values by (backend, field)."""
        valid = Counter(self._valid)
        for (backend, fields), fares in self._all_valid.items():
            for field in fields:
                valid[backend, field] += fares
        return valid

    def share(self, backend: str, field: str) -> float | None:
        """The share of ``backend``'s fares with ``field`` valid, or None before any fare."""
        valid, invalid = self.valid[backend, field], self.invalid[backend, field]
        return valid / (valid + invalid) if valid + invalid else None

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{backend: {field: {"valid": n, "invalid": n}}}``, JSON-ready."""
        shown: dict[str, dict[str, dict[str, int]]] = {}
        valid = self.valid
        for backend, field in sorted({*valid, *self.invalid}):
            shown.setdefault(backend, {})[field] = {"valid": valid[backend, field],
                                                    "invalid": self.invalid[backend, field]}
        return shown


class FieldStage:
    """A stage that checks and normalises some fields of every fare, each on its own.

    Subclasses name their ``fields`` and define ``check(value) -> normalised value``
    (``ValueError`` when invalid). Every fare is checked, so the counts say how many
    fares had each field valid, before the first problem (and the number of others)
    fails the answer. A field the answer's fares do not have (a ``CalendarDay`` has no
    flight nor times) is neither checked nor counted.
    """

    fields: tuple[str, ...] = ()
    # It checks a calendar's days too, by the fields they have (see ``FarePipeline``).
    calendar_days = True
    # Optional: ``all_valid(values) -> bool``, a quick test that every value of a field (a
    # sequence of the answer's values, one per fare) is valid and already in normal form, so
    # ``check`` would return each unchanged. When it says so for every field, the
    # pipeline counts them all valid without ``process`` (consecutive such stages in one
    # pass); otherwise ``process`` runs as usual. False when unsure: it only costs time.
    all_valid: Callable[[Sequence[str]], bool] | None = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counts = FieldCounts()  # replaced by the pipeline's shared counts

    def check(self, value: str) -> str:
        """Return ``value`` normalised; raise ``ValueError`` saying why it is invalid."""
        raise NotImplementedError

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Check and normalise the fields of every fare; ``ParseError`` (with its
        ``field_counts``, this answer's) if any is invalid."""
        problems: list[str] = []
        counted: list[FieldCount] = []
        fixed = list(answer)
        shape = answer[0]._fields if answer else self.fields
        for field in self.fields:
            if field not in shape:
                continue  # not a field of these fares (a calendar's day names no flight)
            index = shape.index(field)
            invalid = 0
            for number, fare in enumerate(fixed):
                value = fare[index]
                try:
                    normal = self.check(value)
                except ValueError as error:
                    invalid += 1
                    problems.append(f"fare {number + 1} ({fare.flight!r}): {field} {error}")
                    continue
                if normal != value:
                    fixed[number] = fare._replace(**{field: normal})
            self.counts.add(job.backend, field, len(fixed) - invalid, invalid)
            counted.append(FieldCount(field, len(fixed) - invalid, invalid))
        if problems:
            more = len(problems) - SHOWN_PROBLEMS
            shown = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; {more} more" if more > 0 else "")
            error = ParseError(shown, page=answer.page)
            error.field_counts = tuple(counted)
            raise error
        return answer.with_fares(fixed)
