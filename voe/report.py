"""What `voe status`, `voe failed`, `voe cheapest` and `voe run` show, read from the data dir.

Reads the ledger and the store directly, so it works whether or not a master runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from voe.ledger import STATES, Ledger
from voe.settings import Settings
from voe.store.sqlite import SqliteStore
from voe.yieldwatch import latest_yields


def ledger_path(settings: Settings) -> Path:
    """The master's ledger in the data dir."""
    return settings.data_dir / "ledger.db"


def store_path(settings: Settings) -> Path:
    """The sink's store in the data dir."""
    return settings.data_dir / "fares.db"


def master_pid(settings: Settings) -> int | None:
    """The PID of a master running on this data dir, if any."""
    try:
        pid = int((settings.data_dir / "master.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def status(settings: Settings) -> dict[str, Any]:
    """Jobs by state (latest cycle), fares stored, workers and where things are."""
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
    yields: list[dict] = []
    if store_path(settings).is_file():
        store = SqliteStore(store_path(settings), readonly=True)
        try:
            fares = store.fare_count()
            yields = [found.as_dict() for found in latest_yields(store)]
        finally:
            store.close()
    pid = master_pid(settings)
    return {
        "jobs": jobs,
        "fares": fares,
        "yield": yields,
        "cycle": cycle,
        "master": {"running": pid is not None, "pid": pid},
        "workers": workers if pid is not None else [],
        "data_dir": str(settings.data_dir.resolve()),
    }


def failed(settings: Settings) -> list[dict]:
    """The dead letters: failed jobs with their last error."""
    if not ledger_path(settings).is_file():
        return []
    ledger = Ledger(ledger_path(settings), readonly=True)
    try:
        return ledger.failed()
    finally:
        ledger.close()


def retry_failed(settings: Settings) -> int:
    """Send every failed job back to pending with fresh attempts; return how many."""
    if not ledger_path(settings).is_file():
        return 0
    ledger = Ledger(ledger_path(settings))
    try:
        return ledger.retry_failed()
    finally:
        ledger.close()


def cheapest(settings: Settings) -> list[dict]:
    """The cheapest stored fare per route and date."""
    if not store_path(settings).is_file():
        return []
    store = SqliteStore(store_path(settings), readonly=True)
    try:
        return store.cheapest()
    finally:
        store.close()
