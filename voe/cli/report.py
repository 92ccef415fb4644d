"""What `voe status`, `voe failed`, `voe cheapest` and `voe run` show, read from the data dir.

Reads the ledger and the store directly, so it works whether or not a master runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from voe.master.ledger import STATES, Cycle, Ledger
from voe.master.lock import holder
from voe.master.plan import Plan
from voe.master.scheduling.audits import WINDOW, Audits
from voe.settings import Settings
from voe.sink.publish import destinations
from voe.sink.yieldwatch import latest_field_yields, latest_yields
from voe.store import NoStore, Store, open_store

# Seconds past its deadline before a lease counts as overdue: a running master takes a
# lease back within about a second of its deadline, so this leaves room for a busy tick.
LEASE_GRACE_SECONDS = 30.0
# Overdue leases, and jobs waiting to retry, listed by `voe status` and `voe check`.
LISTED = 5
# What to do about each stuck state, one line each (see ``health``).
START_A_MASTER = "start a master (voe master) to take its leases back and finish it"
START_A_MASTER_TO_FINISH = "start a master (voe master) to finish it"
CLOCK_MOVED = ("the clock moved back after they were leased; the master re-times leases on its "
               "monotonic clock")
MASTER_STUCK = ("a running master keeps a lease past its deadline only while the sink has not "
                "stored its result: is the sink running and storing (sink.log)? Else see the "
                "master's ({pid}) master.log")


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
    """The PID of a master running on this data dir, if any: the holder of its master lock.

    The lock, not ``master.pid``, is asked: the kernel drops it when the master dies, even
    by SIGKILL, so a stale file or a reused PID never shows a master that is gone.
    """
    return holder(settings.data_dir)


def status(settings: Settings, plan: Plan | None = None) -> dict[str, Any]:
    """Jobs by state (latest cycle), fares stored, parse and per-field yields, workers and
    where things are.

    ``plan`` is the plan a master would run (else the one the settings name): an open
    cycle started with another plan is reported as ``plan_changed``.
    """
    ledger = _ledger_status(settings)
    cycle = ledger.pop("cycle")
    stored = _store_status(settings, None if cycle is None else cycle["number"])
    if cycle is not None:
        cycle["fares"] = stored["cycle_fares"]
        cycle["plan_changed"] = _plan_changed(settings, ledger.pop("latest"), plan)
    running = ledger["master"]["running"]
    return {
        "jobs": ledger.pop("jobs"),
        "waiting_to_retry": ledger.pop("waiting_to_retry"),
        "retries": ledger.pop("retries"),
        **{key: stored[key] for key in ("fares", "yield", "field_yield", "outbox")},
        "cycle": cycle,
        "master": ledger.pop("master"),
        "workers": ledger.pop("workers") if running else [],
        "data_dir": str(settings.data_dir.resolve()),
        **{key: value for key, value in ledger.items() if key != "latest"},
    }


def _ledger_status(settings: Settings) -> dict[str, Any]:
    """The ledger's part of the status: the latest cycle, its jobs, retries, workers, health."""
    found: dict[str, Any] = {"jobs": dict.fromkeys(STATES, 0), "waiting_to_retry": 0,
                             "retries": [], "cycle": None, "workers": [], "freshness": None}
    pid = master_pid(settings)
    health_found = health(None, pid)
    if ledger_path(settings).is_file():
        ledger = Ledger(ledger_path(settings), readonly=True)
        try:
            latest = ledger.latest_cycle()
            if latest is not None:
                found["cycle"] = {"number": latest.cycle, "plan": latest.plan_name,
                                  "started_at": latest.started_at, "total": latest.total,
                                  "finished_at": latest.finished_at}
                found["latest"] = latest
                found["jobs"] = ledger.counts(latest.cycle)
                if ledger.has_retry_times():
                    now = time.time()
                    waiting = ledger.waiting_to_retry(latest.cycle, now)
                    found["waiting_to_retry"] = waiting
                    found["retries"] = ledger.retries(latest.cycle, now, LISTED) if waiting else []
            found["workers"] = ledger.workers()
            found["freshness"] = (Audits(ledger.audit_outcomes(WINDOW)).summary()
                                  if ledger.has_observations() else None)
            pid, health_found = _health(ledger, settings, pid)
        finally:
            ledger.close()
    found["master"] = {"running": pid is not None, "pid": pid}
    return {**found, **health_found}


def _store_status(settings: Settings, cycle: int | None) -> dict[str, Any]:
    """The store's part of the status: fares, yields and the outbox's backlog."""
    configured = destinations(settings)
    found: dict[str, Any] = {"fares": 0, "cycle_fares": 0, "yield": [], "field_yield": []}
    backlog = {name: {"backlog": 0, "dead": 0, "retrying": 0} for name in configured}
    store = open_report_store(settings)
    if store is not None:
        try:
            found["fares"] = store.fare_count()
            if cycle is not None:
                found["cycle_fares"] = store.fare_count(cycle)
            found["yield"] = [each.as_dict() for each in latest_yields(store)]
            found["field_yield"] = [each.as_dict() for each in latest_field_yields(store)]
            backlog = store.outbox_backlog(configured)
        finally:
            store.close()
    found["outbox"] = {"destinations": {name: dict(each, configured=name in configured)
                                        for name, each in backlog.items()},
                       "dead_letters": sum(each["dead"] for each in backlog.values())}
    return found


def health(ledger: Ledger | None, pid: int | None, now: float | None = None) -> dict[str, Any]:
    """The stuck states of ``ledger`` (None: no ledger yet) at ``now``, with what to do.

    ``pid`` is the running master's (None: none runs). ``overdue_leases`` counts the leases
    past their deadline by more than ``LEASE_GRACE_SECONDS`` (``past``) or taken more than
    that after ``now`` (``ahead``: the clock stepped back), listing the first; an open cycle
    cannot finish (``stuck_cycles``, with a reason) while no master runs or while it holds
    overdue leases; ``hints`` say what to do, one line each.
    """
    overdue: dict[str, Any] = {"count": 0, "past": 0, "ahead": 0, "first": []}
    found: dict[str, Any] = {"overdue_leases": overdue, "stuck_cycles": [], "hints": []}
    if ledger is None:
        return found
    now = time.time() if now is None else now
    by_cycle = ledger.overdue_counts(LEASE_GRACE_SECONDS, now)
    for kind in ("past", "ahead"):
        overdue[kind] = sum(counts[kind] for counts in by_cycle.values())
    overdue["count"] = overdue["past"] + overdue["ahead"]
    if overdue["count"]:
        overdue["first"] = ledger.overdue_leases(LEASE_GRACE_SECONDS, now, LISTED)
    for cycle in ledger.open_cycles():
        held = sum(by_cycle.get(cycle.cycle, {}).values())
        leases = f"it holds {held} overdue lease(s)"
        if pid is None:
            reason = "no master runs on this data dir" + (f" ({leases})" if held else "")
        elif held:
            reason = leases
        else:
            continue
        found["stuck_cycles"].append({"cycle": cycle.cycle, "reason": reason})
    hints = found["hints"]
    if pid is None and (found["stuck_cycles"] or overdue["count"]):
        hints.append(START_A_MASTER if overdue["count"] else START_A_MASTER_TO_FINISH)
    if pid is not None and overdue["past"]:
        hints.append(MASTER_STUCK.format(pid=f"pid {pid}" if pid else "pid unknown"))
    if overdue["ahead"]:
        hints.append(CLOCK_MOVED)
    return found


def _health(ledger: Ledger, settings: Settings, pid: int | None
            ) -> tuple[int | None, dict[str, Any]]:
    """The running master (``pid``, asked before the ledger was read) and ``health``.

    When no master seemed to run, it is asked again after the ledger was read: a master
    stopping has finished its cycle before it let its lock go, but one starting meanwhile
    may have opened a cycle the ledger showed.
    """
    found = health(ledger, pid)
    if pid is None and found["stuck_cycles"]:
        pid = master_pid(settings)
        if pid is not None:
            found = health(ledger, pid)
    return pid, found


def stuck(report: dict[str, Any]) -> bool:
    """Whether a report of ``status`` or ``check`` holds an overdue lease or a stuck cycle."""
    return bool(report["overdue_leases"]["count"] or report["stuck_cycles"])


def health_lines(report: dict[str, Any]) -> list[str]:
    """The stuck states of a report of ``status`` or ``check`` as lines for the terminal."""
    overdue = report["overdue_leases"]
    lines = []
    if overdue["count"]:
        kinds = [f"{overdue['past']} past their deadline" if overdue["past"] else "",
                 f"{overdue['ahead']} leased in the future" if overdue["ahead"] else ""]
        lines.append(f"overdue leases: {overdue['count']} ("
                     + ", ".join(kind for kind in kinds if kind) + ")")
        for lease in overdue["first"]:
            when = (f"leased {lease['ahead']:.0f} s in the future" if "ahead" in lease else
                    f"{lease['past']:.0f} s past its deadline")
            lines.append(f"  {lease['job_id']} (cycle {lease['cycle']}, worker "
                         f"{lease['worker'] or 'unknown'}): {when}")
        if overdue["count"] > len(overdue["first"]):
            lines.append(f"  ... and {overdue['count'] - len(overdue['first'])} more")
    for cycle in report["stuck_cycles"]:
        lines.append(f"cycle {cycle['cycle']} cannot finish: {cycle['reason']}")
    lines.extend(f"hint: {hint}" for hint in report["hints"])
    return lines


def freshness_lines(summary: dict[str, Any] | None) -> list[str]:
    """``voe status``'s lines on measured staleness (none for a plan run in cycles)."""
    if summary is None:
        return []
    if not summary["audits"]:
        return ["freshness: no audit yet (VOE_AUDIT_SHARE of the budget re-searches stored "
                "searches at random)"]
    bands = ", ".join(f"{band['age']} {band['still_correct']:.0%} of {band['audits']}"
                      for band in summary["by_age"] if band["audits"])
    return [f"freshness: {summary['still_correct']:.1%} of {summary['audits']} audits still "
            f"correct; the store's stale share is estimated at {summary['estimated_stale']:.1%}",
            f"freshness by age: {bands}"]


def field_yield_lines(field_yields: list[dict[str, Any]]) -> list[str]:
    """The per-field yields of ``status`` as one short line per backend and cycle: each field's
    share of valid fares, a drop marked with the previous cycle's share."""
    by_backend: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for found in field_yields:
        by_backend.setdefault((found["backend"], found["cycle"]), []).append(found)
    lines = []
    for (backend, cycle), fields in by_backend.items():
        fares = max(found["valid"] + found["invalid"] for found in fields)
        shown = []
        for found in fields:
            text = f"{found['field']} {found['share']:.1%}"
            if found["dropped"]:
                previous = found["previous_share"]
                text += " DROPPED" + (f" (cycle {found['previous_cycle']}: {previous:.1%})"
                                      if previous is not None else "")
            shown.append(text)
        lines.append(f"field yield {backend} cycle {cycle} ({fares} fares): " + ", ".join(shown))
    return lines


def _plan_changed(settings: Settings, cycle: Cycle, plan: Plan | None) -> dict[str, Any] | None:
    """What changed when the plan the master would load differs from an open cycle's.

    ``None`` when the cycle is finished, or the plan is the one it started with (or
    cannot be read here: the master will say so itself).
    """
    from voe.master.plan import PlanError, load_plan

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
    """The delivery audit: the ledger against the store, per cycle (see ``voe.cli.audit``), and
    the stuck states of ``health``; ``ok`` is False when anything is lost or duplicated, a
    lease is overdue or a cycle cannot finish.

    Raises ``LedgerError`` when there is no ledger and ``StoreError`` when the store
    cannot be read.
    """
    from voe.cli.audit import audit

    pid = master_pid(settings)
    ledger = Ledger(ledger_path(settings), readonly=True)
    try:
        store = open_report_store(settings)
        try:
            report = audit(ledger, store)
        finally:
            if store is not None:
                store.close()
        report.update(_health(ledger, settings, pid)[1])
    finally:
        ledger.close()
    report["ok"] = report["ok"] and not stuck(report)
    return report
