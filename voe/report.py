"""What `voe status`, `voe failed`, `voe cheapest` and `voe run` show, read from the data dir.

Reads the ledger and the store directly, so it works whether or not a master runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from voe.ledger import STATES, Cycle, Ledger
from voe.plan import Plan
from voe.publish import destinations
from voe.settings import Settings
from voe.store import NoStore, Store, open_store
from voe.yieldwatch import latest_yields


def ledger_path(settings: Settings) -> Path:
    """The master's ledger in the data dir."""
    return settings.data_dir / "ledger.db"


def store_path(settings: Settings) -> Path:
    """The sink's SQLite store in the data dir (used when ``VOE_STORE_URL`` is empty)."""
    return settings.data_dir / "fares.db"


def store_target(settings: Settings) -> str | Path:
    """The store the sink writes: ``VOE_STORE_URL``, else fares.db in the data dir."""
    return settings.voe_store_url or store_path(settings)


def open_report_store(settings: Settings) -> Store | None:
    """The sink's store opened read-only, or None when nothing has been stored yet.

    Raises ``StoreError`` (one line for the user) when it exists but cannot be read.
    """
    try:
        return open_store(store_target(settings), readonly=True)
    except NoStore:
        return None


def master_pid(settings: Settings) -> int | None:
    """The PID of a master running on this data dir, if any."""
    try:
        pid = int((settings.data_dir / "master.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def status(settings: Settings, plan: Plan | None = None) -> dict[str, Any]:
    """Jobs by state (latest cycle), fares stored, workers and where things are.

    ``plan`` is the plan a master would run (else the one the settings name): an open
    cycle started with another plan is reported as ``plan_changed``.
    """
    jobs = dict.fromkeys(STATES, 0)
    cycle = None
    workers: list[dict] = []
    if ledger_path(settings).is_file():
        ledger = Ledger(ledger_path(settings), readonly=True)
        try:
            latest = ledger.latest_cycle()
            if latest is not None:
                cycle = {"number": latest.cycle, "plan": latest.plan_name,
                         "started_at": latest.started_at, "total": latest.total,
                         "finished_at": latest.finished_at}
                jobs = ledger.counts(latest.cycle)
            workers = ledger.workers()
        finally:
            ledger.close()
    fares = 0
    cycle_fares = 0
    yields: list[dict] = []
    configured = destinations(settings)
    backlog = {name: {"backlog": 0, "dead": 0, "retrying": 0} for name in configured}
    store = open_report_store(settings)
    if store is not None:
        try:
            fares = store.fare_count()
            if cycle is not None:
                cycle_fares = store.fare_count(cycle["number"])
            yields = [found.as_dict() for found in latest_yields(store)]
            backlog = store.outbox_backlog(configured)
        finally:
            store.close()
    pid = master_pid(settings)
    if cycle is not None:
        cycle["fares"] = cycle_fares
        cycle["plan_changed"] = _plan_changed(settings, latest, plan)
    return {
        "jobs": jobs,
        "fares": fares,
        "yield": yields,
        "outbox": {"destinations": {name: dict(found, configured=name in configured)
                                    for name, found in backlog.items()},
                   "dead_letters": sum(found["dead"] for found in backlog.values())},
        "cycle": cycle,
        "master": {"running": pid is not None, "pid": pid},
        "workers": workers if pid is not None else [],
        "data_dir": str(settings.data_dir.resolve()),
    }


def _plan_changed(settings: Settings, cycle: Cycle, plan: Plan | None) -> dict[str, Any] | None:
    """What changed when the plan the master would load differs from an open cycle's.

    ``None`` when the cycle is finished, or the plan is the one it started with (or
    cannot be read here: the master will say so itself).
    """
    from voe.plan import PlanError, load_plan

    if cycle.finished_at is not None:
        return None
    if plan is None:
        try:
            plan = load_plan(settings.voe_plan or None)
        except PlanError:
            return None
    if plan.digest == cycle.plan_digest:
        return None
    return {"plan": plan.name, "jobs_kept": cycle.expanded, "plan_jobs": plan.job_count()}


def dead_letters(settings: Settings, destination: str | None = None) -> list[dict]:
    """The outbox's dead letters: events a webhook gave up on, with attempts and error."""
    store = open_report_store(settings)
    if store is None:
        return []
    try:
        return store.dead_letters(destination)
    finally:
        store.close()


def retry_dead_letters(settings: Settings, destination: str | None = None) -> int:
    """Send the outbox's dead letters back to their publisher (the sink's); return how many."""
    probe = open_report_store(settings)
    if probe is None:
        return 0
    probe.close()
    with open_store(store_target(settings)) as store:
        return store.retry_dead_letters(destination)


def failed(settings: Settings) -> list[dict]:
    """The dead letters: failed jobs with their last error."""
    if not ledger_path(settings).is_file():
        return []
    ledger = Ledger(ledger_path(settings), readonly=True)
    try:
        return ledger.failed()
    finally:
        ledger.close()


def jobs(settings: Settings, state: str | None = None, cycle: int | None = None,
         limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """A page of the ledger's jobs (by state and cycle, or all) and how many match."""
    if not ledger_path(settings).is_file():
        return {"total": 0, "jobs": []}
    ledger = Ledger(ledger_path(settings), readonly=True)
    try:
        total, rows = ledger.jobs(state, cycle, limit, offset)
    finally:
        ledger.close()
    return {"total": total, "jobs": rows}


def routes(settings: Settings) -> list[str]:
    """The routes (ORIG-DEST) searched in the latest cycle, for choosing a price history."""
    if not ledger_path(settings).is_file():
        return []
    ledger = Ledger(ledger_path(settings), readonly=True)
    try:
        latest = ledger.latest_cycle()
        pairs = ledger.routes(latest.cycle) if latest is not None else []
    finally:
        ledger.close()
    return [f"{origin}-{destination}" for origin, destination in pairs]


def retry_failed(settings: Settings) -> int:
    """Send every failed job back to pending with fresh attempts; return how many."""
    if not ledger_path(settings).is_file():
        return 0
    ledger = Ledger(ledger_path(settings))
    try:
        return ledger.retry_failed()
    finally:
        ledger.close()


def check(settings: Settings) -> dict[str, Any]:
    """The delivery audit: the ledger against the store, per cycle (see ``voe.audit``).

    Raises ``LedgerError`` when there is no ledger and ``StoreError`` when the store
    cannot be read.
    """
    from voe.audit import audit

    ledger = Ledger(ledger_path(settings), readonly=True)
    try:
        store = open_report_store(settings)
        try:
            return audit(ledger, store)
        finally:
            if store is not None:
                store.close()
    finally:
        ledger.close()


_ROUTE = re.compile(r"[A-Z0-9]{3}-[A-Z0-9]{3}")


def parse_route(route: str) -> tuple[str, str]:
    """``ORIG-DEST`` as (origin, destination); ``ValueError`` saying what is wrong."""
    if not _ROUTE.fullmatch(route):
        raise ValueError(f"route {route!r}: expected ORIG-DEST, e.g. GRU-REC")
    origin, destination = route.split("-")
    return origin, destination


def prices(settings: Settings, origin: str, destination: str,
           date: str | None = None) -> list[dict]:
    """The cheapest fare of a route per date and cycle, oldest cycle first, flagging drops.

    Each row holds the fare, ``previous`` (the price of the cycle before, or None),
    ``change`` (the difference as a decimal string, or None) and ``drop`` (it fell).
    """
    from decimal import Decimal

    store = open_report_store(settings)
    if store is None:
        return []
    try:
        rows = store.price_history(origin, destination, date)
    finally:
        store.close()
    rows.sort(key=lambda fare: (fare["date"], fare["return_date"] or "", fare["cycle"]))
    before: dict[tuple[str, str | None], str] = {}
    for row in rows:
        key = (row["date"], row["return_date"])
        previous = before.get(key)
        change = Decimal(row["price"]) - Decimal(previous) if previous is not None else None
        row.update(previous=previous, change=None if change is None else str(change),
                   drop=change is not None and change < 0)
        before[key] = row["price"]
    return rows


def cheapest(settings: Settings) -> list[dict]:
    """The cheapest stored fare per route and date."""
    store = open_report_store(settings)
    if store is None:
        return []
    try:
        return store.cheapest()
    finally:
        store.close()
