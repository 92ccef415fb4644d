"""Peers run in turn, round after round: the median run of each and the rounds' ratios.

One run's figures move by 10-30% from one minute to the next on a shared machine, so
the benchmarks that compare peers (``scrape.py``, ``pipeline.py``) run them in turn and
judge the median round.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

Run = TypeVar("Run")


def median_run(runs: Sequence[Run], key: Callable[[Run], float]) -> Run:
    """The run whose ``key`` is the median (the lower middle one of an even count)."""
    middle = statistics.median_low(key(run) for run in runs)
    return next(run for run in runs if key(run) == middle)


def paired_ratios(ours: Sequence[Run], theirs: Sequence[Run],
                  key: Callable[[Run], float]) -> list[float]:
    """``key`` of our run over the peer's, round by round (the peers ran in turn)."""
    return [key(one) / key(other) for one, other in zip(ours, theirs, strict=True)]
