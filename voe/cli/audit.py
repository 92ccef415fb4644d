"""The delivery audit of ``voe check``: the master's ledger against the sink's store, per cycle.

For every cycle it lists the jobs the ledger says are done without their fares in the
store (lost), the jobs whose fares are stored but the ledger does not count as done
(stored, not done: usually an acknowledgement still in flight, or a failed job), the
jobs with more fare rows than their stored result recorded (duplicated), and the failed
jobs. Lost or duplicated means the pipeline broke its promise.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from voe.master.ledger import Ledger
from voe.store.base import Store

KINDS = ("lost", "not_done", "duplicated", "failed")
"""The lists of each cycle's report, in the order they are shown."""


def store_cycles(store: Store) -> list[int]:
    """Every cycle with stored results, newest first (walks ``result_cycle`` down)."""
    cycles: list[int] = []
    cycle = store.result_cycle()
    while cycle is not None:
        cycles.append(cycle)
        cycle = store.result_cycle(before=cycle)
    return cycles


def audit(ledger: Ledger, store: Store | None) -> dict[str, Any]:
    """Compare ``ledger`` with ``store`` (None: nothing stored); return the report as a dict.

    ``ok`` is False when any job is lost or duplicated. Each cycle's entry holds its job
    and stored counts and, per kind of ``KINDS``, the sorted job ids.
    """
    states: dict[int, dict[str, str]] = defaultdict(dict)
    for cycle, job_id, state in ledger.db.execute("SELECT cycle, id, state FROM jobs"):
        states[cycle][job_id] = state
    cycles = set(states) | set(store_cycles(store) if store is not None else [])
    report: list[dict[str, Any]] = []
    for cycle in sorted(cycles):
        jobs = states.get(cycle, {})
        stored = store.stored_jobs(cycle) if store is not None else {}
        found: dict[str, list[str]] = {kind: [] for kind in KINDS}
        for job_id, state in jobs.items():
            recorded, rows = stored.get(job_id, (None, 0))
            if state == "done" and (recorded is None or rows < recorded):
                found["lost"].append(job_id)
            elif state == "failed":
                found["failed"].append(job_id)
        for job_id, (recorded, rows) in stored.items():
            if recorded is not None and rows > recorded:
                found["duplicated"].append(job_id)
            if jobs.get(job_id) != "done" and (recorded is not None or rows):
                found["not_done"].append(job_id)
        report.append({
            "cycle": cycle,
            "jobs": len(jobs),
            "done": sum(1 for state in jobs.values() if state == "done"),
            "stored": sum(1 for recorded, _ in stored.values() if recorded is not None),
            "counts": {kind: len(ids) for kind, ids in found.items()},
            **{kind: sorted(ids) for kind, ids in found.items()},
        })
    totals = {kind: sum(entry["counts"][kind] for entry in report) for kind in KINDS}
    return {"ok": totals["lost"] == 0 and totals["duplicated"] == 0, "totals": totals,
            "cycles": report}
