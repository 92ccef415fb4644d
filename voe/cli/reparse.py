"""`voe reparse`: run today's parser and fare pipeline over the kept pages of dead letters.

A parser fix should recover a cycle without asking the airline again. The worker kept
the raw page of every failed parse (``voe.worker.keptpages``); this reads the failed jobs
from the ledger, re-reads their pages with the backend's ``parse`` and the fare
pipeline, stores what now passes through the store's exactly-once ``save`` (a job's
fares once per cycle, however often this runs) and, after the commit, marks those
jobs done in the ledger. No HTTP session is ever made.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voe.backends import get_backend
from voe.backends.base import BackendError, check_search
from voe.backends.registry import UnknownBackend
from voe.master.ledger import Ledger
from voe.model import OK, Result, SearchJob
from voe.settings import Settings
from voe.sink.publish import destinations
from voe.store import open_store
from voe.worker.farepipeline import FarePipeline
from voe.worker.keptpages import page_path

# Failed jobs read from the ledger, and results stored, per batch.
BATCH = 500
# The worker name stored with re-parsed results (the store keeps one per result).
WORKER = "voe-reparse"


@dataclass
class Outcome:
    """What one `voe reparse` did: jobs stored (with their fares), still failing, skipped."""

    stored: int = 0
    fares: int = 0
    failing: list[tuple[str, str]] = field(default_factory=list)
    no_page: list[str] = field(default_factory=list)
    cannot: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data."""
        return {"stored": self.stored, "fares": self.fares,
                "failing": [{"job_id": job_id, "error": error} for job_id, error in self.failing],
                "no_page": self.no_page, "cannot": self.cannot}


def _failed_jobs(ledger: Ledger, cycle: int | None, backend: str | None,
                 job_id: str | None) -> Iterator[SearchJob]:
    """The dead letters chosen, as the jobs of their last attempt."""
    offset = 0
    while True:
        _, rows = ledger.jobs("failed", cycle, BATCH, offset)
        if not rows:
            return
        offset += len(rows)
        for row in rows:
            if backend is not None and row["backend"] != backend:
                continue
            if job_id is not None and row["job_id"] != job_id:
                continue
            yield SearchJob(row["job_id"], row["cycle"], row["attempt"], row["backend"],
                            row["origin"], row["destination"], row["date"], row["return_date"],
                            row["options"], row["legs"])


def reparse(settings: Settings, ledger_path: Path, store_target: str | Path, pages_dir: Path,
            cycle: int | None = None, backend: str | None = None,
            job_id: str | None = None) -> Outcome:
    """Re-parse the kept pages of the chosen dead letters; store and settle what passes.

    ``pages_dir`` is the data dir whose ``pages/`` holds the kept pages (the workers').
    Raises ``LedgerError``/``StoreError`` when either cannot be opened.
    """
    outcome = Outcome()
    pipeline = FarePipeline(settings)
    backends: dict[str, Any] = {}
    ledger = Ledger(ledger_path)
    try:
        with open_store(store_target) as store:
            store.keep_events(bool(destinations(settings)))
            batch: list[Result] = []
            # Chosen before anything is settled: settling moves jobs out of the failed pages.
            for job in list(_failed_jobs(ledger, cycle, backend, job_id)):
                result = _reparse_one(settings, job, pages_dir, pipeline, backends, outcome)
                if result is not None:
                    batch.append(result)
                if len(batch) >= BATCH:
                    _store(ledger, store, batch, outcome)
                    batch = []
            _store(ledger, store, batch, outcome)
    finally:
        ledger.close()
    return outcome


def _reparse_one(settings: Settings, job: SearchJob, pages_dir: Path, pipeline: FarePipeline,
                 backends: dict[str, Any], outcome: Outcome) -> Result | None:
    """The result of one job's kept page, or None (recorded in ``outcome``) when none."""
    if job.backend in outcome.cannot:
        return None
    found = backends.get(job.backend)
    if found is None:
        try:
            found = backends[job.backend] = get_backend(job.backend, settings)
        except UnknownBackend as error:
            outcome.cannot[job.backend] = str(error)
            return None
        if not callable(getattr(found, "parse", None)):
            outcome.cannot[job.backend] = (f"backend {job.backend!r} cannot re-read a kept page "
                                           "(it has no parse(job, page) method)")
            return None
    path = page_path(pages_dir, job)
    try:
        page = path.read_bytes()
    except OSError:
        outcome.no_page.append(job.id)
        return None
    started = time.perf_counter()
    try:
        check_search(found, job)
        answer = pipeline.run(found.parse(job, page), job)
    except BackendError as error:
        outcome.failing.append((job.id, f"{error.kind}: {error}"))
        return None
    return Result(job, OK, tuple(answer), None, WORKER, time.perf_counter() - started)


def _store(ledger: Ledger, store: Any, batch: list[Result], outcome: Outcome) -> None:
    """Save one batch (one commit), then mark the jobs stored as done in the ledger."""
    if not batch:
        return
    statuses = store.save(batch)
    done = [(result.job.cycle, result.job.id)
            for result, status in zip(batch, statuses, strict=True) if status == "done"]
    with ledger.transaction():
        ledger.mark_done(done)
    outcome.stored += len(done)
    outcome.fares += sum(len(result.fares) for result, status in zip(batch, statuses, strict=True)
                         if status == "done")
