"""How fresh a run of ``bench/freshness.py`` kept its store: stored answers against the truth.

The truth is the demo airline's price process (``voe.demo.airline.prices``, the same seed
as the airline's, so the same prices as its ``/api/truth``) read in this process. Every
``SAMPLE_HOURS`` simulated hours each search still sold is compared: its stored answer
then (the fares of its latest result stored by that time) against the airline's answer
then, as {(flight, departure): price in cents}.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from voe.demo.airline.fares import fares_for
from voe.demo.airline.prices import PriceProcess
from voe.master.scheduling.history import departure

SAMPLE_HOURS = 2.0
Answer = dict[tuple[str, str], int]


def cents(price: str) -> int:
    """A price as text ("1234.5") in cents."""
    whole, _, fraction = price.partition(".")
    return int(whole) * 100 + int((fraction + "00")[:2])


@dataclass
class Figures:
    """One scheduler's figures over the measured span."""

    name: str
    fresh: list[float] = field(default_factory=list)  # share fresh at each sample
    errors: list[float] = field(default_factory=list)  # mean absolute error (BRL) per sample
    searches: int = 0  # searches the airline served during the span
    estimate: float | None = None  # the audits' estimate of the stale share
    audits: int = 0

    @property
    def stale(self) -> float:
        """Time-averaged share of searches whose stored answer was not the airline's."""
        return 1 - sum(self.fresh) / len(self.fresh)

    @property
    def error(self) -> float:
        """Time-averaged mean absolute price error (BRL) over searches sold."""
        return sum(self.errors) / len(self.errors)


def stored_timelines(store: Path, to_sim: Callable[[float], float]
                     ) -> dict[str, tuple[list[float], list[Answer]]]:
    """Each job id's stored answers in order: (times on the simulated clock, answers)."""
    with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True) as db:
        stored = {(cycle, job): at for cycle, job, at in
                  db.execute("SELECT cycle, job_id, stored_at FROM results")}
        answers: dict[tuple[int, str], Answer] = {key: {} for key in stored}
        for cycle, job, flight, leaves, price in db.execute(
                "SELECT cycle, job_id, flight, departure, price FROM fares"):
            answers[(cycle, job)][(flight, leaves)] = cents(price)
    timelines: dict[str, tuple[list[float], list[Answer]]] = {}
    for (cycle, job), at in sorted(stored.items(), key=lambda item: item[1]):
        times, found = timelines.setdefault(job, ([], []))
        times.append(to_sim(at))
        found.append(answers[(cycle, job)])
    return timelines


class Truth:
    """The airline's answers at any simulated time."""

    def __init__(self, changes: float, seed: int) -> None:
        self.process = PriceProcess(changes, seed)
        self.timetables: dict[tuple[str, str, str], list] = {}

    def answer(self, origin: str, destination: str, date: str, at: float) -> Answer:
        key = (origin, destination, date)
        timetable = self.timetables.get(key)
        if timetable is None:
            timetable = self.timetables[key] = fares_for(origin, destination, date)
        return {(fare.flight, fare.departure): cents(fare.price) for fare in
                self.process.fares_at(origin, destination, date, timetable, at)}


def evaluate(figures: Figures, searches: Iterable[tuple[str, str, str, str]],
             timelines: dict[str, tuple[list[float], list[Answer]]], truth: Truth,
             start: float, end: float) -> Figures:
    """Fill ``figures`` from samples every ``SAMPLE_HOURS`` in [start, end) (simulated)."""
    chosen = [(job, origin, destination, date, departure(date))
              for job, origin, destination, date in searches]
    at = start
    while at < end:
        fresh = live = 0
        error = 0.0
        for job, origin, destination, date, departs in chosen:
            if departs <= at:
                continue
            live += 1
            times, answers = timelines.get(job, ([], []))
            index = bisect.bisect_right(times, at) - 1
            if index < 0:
                continue  # never stored: stale
            stored = answers[index]
            now = truth.answer(origin, destination, date, at)
            fresh += stored == now
            shared = [key for key in now if key in stored]
            if shared:
                error += sum(abs(stored[key] - now[key]) for key in shared) / len(shared) / 100
        figures.fresh.append(fresh / live)
        figures.errors.append(error / live)
        at += SAMPLE_HOURS * 3600
    return figures


def audit_estimate(ledger: Path, since: float) -> tuple[float | None, int]:
    """The stale share the master's audits measured after ``since`` (simulated), and how many."""
    with sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT changed FROM observations WHERE audit = 1 AND changed IS NOT"
                          " NULL AND at >= ?", (since,)).fetchall()
    if not rows:
        return None, 0
    return sum(changed for (changed,) in rows) / len(rows), len(rows)


COLOURS = {"cycle": "#888888", "ttl": "#1f77b4", "adaptive": "#ff7f0e", "freshness": "#2ca02c"}


def plot(runs: list[Figures], path: Path, days: float) -> None:
    """Draw each run's share of fresh searches over the simulated days as an SVG chart."""
    width, height, left, bottom, top = 640, 360, 60, 40, 20
    low = min(min(run.fresh) for run in runs)
    floor = max(0.0, (int(low * 20) - 1) / 20)

    def x(index: int, count: int) -> float:
        return left + (width - left - 20) * index / max(count - 1, 1)

    def y(share: float) -> float:
        return top + (height - top - bottom) * (1 - (share - floor) / (1 - floor))

    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for step in range(int(round((1 - floor) / 0.05)) + 1):
        share = floor + step * 0.05
        lines.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(share):.1f}" '
                     f'y2="{y(share):.1f}" stroke="#eeeeee"/>')
        lines.append(f'<text x="{left - 6}" y="{y(share) + 4:.1f}" text-anchor="end">'
                     f"{share:.0%}</text>")
    for day in range(int(days) + 1):
        lines.append(f'<text x="{left + (width - left - 20) * day / days:.1f}" '
                     f'y="{height - bottom + 16}" text-anchor="middle">day {day}</text>')
    for number, run in enumerate(runs):
        points = " ".join(f"{x(i, len(run.fresh)):.1f},{y(share):.1f}"
                          for i, share in enumerate(run.fresh))
        colour = COLOURS.get(run.name, "black")
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"/>')
        lines.append(f'<text x="{left + 10 + number * 120}" y="{height - 6}" fill="{colour}">'
                     f"{run.name} ({1 - run.stale:.1%})</text>")
    lines.append(f'<text x="{left}" y="{top - 6}">share of searches whose stored answer is the '
                 "airline's, over the simulated week</text>")
    lines.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
