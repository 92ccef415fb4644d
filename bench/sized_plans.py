"""Plans of an exact number of jobs for the benchmarks, and the jobs a plan gives."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path

# Longest date window a plan accepts (voe/master/planfile.py: dates.days_ahead).
MAX_DAYS = 3650


def plan_shape(jobs: int, max_airports: int | None = None,
               most_dates: int = MAX_DAYS) -> tuple[int, int, int]:
    """(dates, airports, blocked pairs) of a plan with exactly ``jobs`` jobs.

    Jobs are dates x (airports x (airports - 1) - blocked), with at most
    ``most_dates`` dates. Prefers many dates and few airports. ``ValueError`` if
    no shape fits (only possible with ``max_airports``).
    """
    if jobs < 1:
        raise ValueError("a plan needs at least one job")
    most_pairs = max_airports * (max_airports - 1) if max_airports else jobs
    for dates in range(min(jobs, most_dates, MAX_DAYS), 0, -1):
        if jobs % dates:
            continue
        pairs = jobs // dates
        if pairs > most_pairs:
            break
        airports = max(2, math.ceil((1 + math.sqrt(1 + 4 * pairs)) / 2))
        while airports * (airports - 1) < pairs:
            airports += 1
        return dates, airports, airports * (airports - 1) - pairs
    raise ValueError(f"no plan with exactly {jobs} jobs fits {max_airports} airports "
                     f"and {MAX_DAYS} dates; try a round number")


def write_plan(path: Path, jobs: int, backend: str, airports: Sequence[str] | None = None,
               lease_seconds: int = 60, most_dates: int = MAX_DAYS) -> int:
    """Write a one-way plan of exactly ``jobs`` jobs for ``backend``; return ``jobs``.

    ``airports`` are the codes to use (the demo airline's, say); by default codes
    ``A000``, ``A001``... are made up (the null backend accepts any code).
    """
    dates, count, excess = plan_shape(jobs, len(airports) if airports else None, most_dates)
    codes = list(airports[:count]) if airports else [f"A{i:03d}" for i in range(count)]
    pairs = [(a, b) for a in codes for b in codes if a != b]
    blocked = pairs[len(pairs) - excess:] if excess else []
    path.write_text(
        "[plan]\n"
        f'name = "bench-{backend}-{jobs}"\n'
        'cycle = "once"\n'
        "max_attempts = 3\n"
        f"lease_seconds = {lease_seconds}\n\n"
        "[dates]\n"
        "start_in_days = 1\n"
        f"days_ahead = {dates}\n"
        "step_days = 1\n\n"
        "[[routes]]\n"
        f'backend = "{backend}"\n'
        f"airports = {json.dumps(codes)}\n"
        f"blocked = {json.dumps([list(pair) for pair in blocked])}\n",
        encoding="utf-8")
    return jobs


def plan_jobs(path: Path) -> list[tuple[str, str, str]]:
    """(origin, destination, date) of every job of a plan, in the master's order."""
    from voe.master.plan import load_plan

    plan = load_plan(path)
    return [(job.origin, job.destination, job.date)
            for job in plan.jobs(1, dt.date.today())]
