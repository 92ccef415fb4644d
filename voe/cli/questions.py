"""Commands that answer questions: status, check, cheapest, prices, settings, backends."""

from __future__ import annotations

import argparse
import json

from voe.cli.common import Command, UsageError, user_settings


def cmd_status(args: argparse.Namespace) -> int:
    """Show jobs by state, fares stored and workers; status 1 if a lease or cycle is stuck."""
    from voe.cli.report import field_yield_lines, freshness_lines, health_lines, status, stuck

    report = status(user_settings())
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if stuck(report) else 0
    _print_cycle(report)
    for found in report["yield"]:
        previous = found["previous_fares_per_page"]
        print(f"yield {found['backend']} cycle {found['cycle']}: {found['fares_per_page']} "
              f"fares/page on {found['pages']} pages"
              + (f" (cycle {found['previous_cycle']}: {previous})" if previous is not None else "")
              + (" DROPPED by more than half: did the airline change its pages?"
                 if found["dropped"] else ""))
    for line in [*field_yield_lines(report["field_yield"]), *freshness_lines(report["freshness"])]:
        print(line)
    outbox = report["outbox"]
    if not outbox["destinations"]:
        print("outbox: no publisher configured (VOE_AMQP_URL, VOE_NATS_URL, VOE_WEBHOOK_URLS)")
    for name, found in outbox["destinations"].items():
        print(f"outbox {name}: {found['backlog']} waiting, {found['dead']} dead letter(s)"
              + (f", {found['retrying']} to retry" if found["retrying"] else "")
              + ("" if found["configured"] else " (not configured here)"))
    _print_master(report)
    for line in health_lines(report):
        print(line)
    return 1 if stuck(report) else 0


def _print_cycle(report: dict) -> None:
    """The status's lines about the data dir, the latest cycle and the fares stored."""
    jobs = report["jobs"]
    cycle = report["cycle"]
    print(f"data dir: {report['data_dir']}")
    if cycle is None:
        print("no cycle yet: start a master (voe master) or run everything (voe run)")
        print(f"fares stored: {report['fares']}")
    else:
        retries = report["retries"]
        waiting = (f" ({report['waiting_to_retry']} waiting to retry"
                   + (f", the next in {retries[0]['due_in']:.0f} s" if retries else "") + ")"
                   if report["waiting_to_retry"] else "")
        print(f"cycle {cycle['number']} (plan {cycle['plan']}): " + ", ".join(
            f"{count} {state}" + (waiting if state == "pending" else "")
            for state, count in jobs.items()) + f" of {sum(jobs.values())}")
        changed = cycle["plan_changed"]
        if changed is not None:
            print(f"  the plan changed since cycle {cycle['number']} started: "
                  + (f"it finishes with the {changed['jobs_kept']} jobs it holds; the next cycle "
                     f"follows plan {changed['plan']} ({changed['plan_jobs']} jobs)"
                     if changed["jobs_kept"] else
                     f"it holds no job and ends empty when a master starts; a cycle of plan "
                     f"{changed['plan']} follows") + ". To keep the old plan, restore its file.")
        print(f"fares stored: {cycle['fares']} in cycle {cycle['number']}, "
              f"{report['fares']} in every cycle")


def _print_master(report: dict) -> None:
    """The status's lines about the master and its workers."""
    master = report["master"]
    running = f"running (pid {master['pid']})" if master["running"] else "not running"
    print(f"master: {running}")
    for worker in report["workers"]:
        print(f"  worker {worker['worker']} at {worker['address'] or 'an unknown address'}: "
              f"holds {worker['held']}/{worker['concurrency'] + worker['prefetch']}, "
              f"finished {worker['finished']}, {worker['errors']} error(s)")
        for route in worker.get("identities", []):
            print(f"    identities via {route.get('route')}: {route.get('blocks', 0)} "
                  f"block(s), {route.get('jobs', 0)} job(s) served, "
                  f"{route.get('retired', 0)} retired")


def _flights(row: dict) -> str:
    """A stored fare's flight and departure, and for a round trip its return flight's (a
    calendar's day names none: the cheapest fare of the day)."""
    if not row["flight"]:
        return "calendar: the day's cheapest"
    going = f"{row['flight']} {row['departure']}"
    if row.get("leg_flights"):  # a multi-city trip: each later leg's flight
        later = json.loads(row["leg_flights"])
        return ", then ".join([going, *(f"{leg[0]} {leg[1]}" for leg in later)])
    if row.get("return_flight"):
        return f"{going}, back {row['return_flight']} {row['return_departure']}"
    return going


def _search(row: dict) -> str:
    """A stored fare's route, dates and search options (``GRU-REC 2026-12-20 back
    2026-12-27 [adults=2,pos=US]``; no brackets for one adult in economy)."""
    back = f" back {row['return_date']}" if row.get("return_date") else ""
    options = f" [{row['options']}]" if row.get("options") else ""
    if row.get("legs"):  # a multi-city trip
        return f"{row['legs']}{options}"
    return f"{row['origin']}-{row['destination']} {row['date']}{back}{options}"


def cmd_cheapest(args: argparse.Namespace) -> int:
    """Print the cheapest stored fare per route, date and search options."""
    from voe.cli.fares import cheapest

    rows = cheapest(user_settings())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no fares stored yet")
    for row in rows[: args.limit or None]:
        print(f"{_search(row)}: {row['price']} {row['currency']} ({_flights(row)})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Audit delivery: the ledger against the store; status 1 if anything is lost or doubled,
    a lease is overdue or a cycle cannot finish."""
    from voe.cli.audit import KINDS
    from voe.cli.report import check, health_lines, ledger_path

    settings = user_settings()
    if not ledger_path(settings).is_file():
        print(f"nothing to check in {settings.data_dir.resolve()}: no ledger yet "
              "(run `voe run` first)")
        return 0
    report = check(settings)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    names = {"lost": "lost (done, fares not stored)", "not_done": "stored but not done",
             "duplicated": "duplicated", "failed": "failed"}
    for entry in report["cycles"]:
        counts = entry["counts"]
        print(f"cycle {entry['cycle']}: {entry['jobs']} jobs, {entry['done']} done, "
              f"{entry['stored']} stored; " + ", ".join(
                  f"{counts[kind]} {names[kind]}" for kind in KINDS))
        for kind in KINDS:
            for job_id in entry[kind][:args.limit or None]:
                print(f"  {names[kind]}: {job_id}")
            if args.limit and len(entry[kind]) > args.limit:
                print(f"  ... and {len(entry[kind]) - args.limit} more {names[kind]}")
    for line in health_lines(report):
        print(line)
    totals = report["totals"]
    if report["ok"]:
        print("check: OK, nothing lost or duplicated")
        return 0
    overdue, stuck = report["overdue_leases"]["count"], len(report["stuck_cycles"])
    print(f"check: FAILED, {totals['lost']} lost, {totals['duplicated']} duplicated"
          + (f", {overdue} overdue lease(s)" if overdue else "")
          + (f", {stuck} cycle(s) that cannot finish" if stuck else ""))
    return 1


def cmd_prices(args: argparse.Namespace) -> int:
    """Print a route's cheapest fare per date, search options and cycle, flagging drops."""
    from decimal import Decimal

    from voe.cli.fares import parse_route, prices
    from voe.model import check_date

    try:
        origin, destination = parse_route(args.route.upper())
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.date is not None:
        try:
            check_date(args.date)
        except ValueError as error:
            raise UsageError(f"--date: {error}") from None
    route = f"{origin}-{destination}"
    rows = prices(user_settings(), origin, destination, args.date)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no fares stored for {route}" + (f" on {args.date}" if args.date else ""))
    for row in rows:
        moved = ""
        if row["change"] is not None:
            if row["drop"]:
                moved = f"  DROP from {row['previous']} ({row['change']})"
            elif Decimal(row["change"]) != 0:
                moved = f"  (up from {row['previous']}, +{row['change']})"
            else:
                moved = "  (unchanged)"
        print(f"{_search(row)} cycle {row['cycle']}: {row['price']} "
              f"{row['currency']} ({_flights(row)}){moved}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    """Print every setting with its value and where it came from, marking malformed ones."""
    from voe.settings import read

    bad = []
    for reading in read():
        setting = reading.setting
        value = reading.value if reading.error is None else reading.raw
        if setting.secret and value:
            value = "********"
        mark = ""
        if reading.error is not None:
            bad.append(f"{setting.name} ({reading.error})")
            mark = f"  <-- MALFORMED: {reading.error}"
        print(f"{setting.name}={value}  [{reading.source}; "
              f"default {setting.default or '(empty)'}] {setting.help}{mark}")
    if bad:
        raise UsageError(f"malformed setting(s), marked above: {'; '.join(bad)}; other commands "
                         "refuse to start until they are fixed")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    """List the backends installed (built-in and through entry points)."""
    from voe.backends import available_backends

    for name, origin in sorted(available_backends().items()):
        print(f"{name}\t{origin}")
    return 0


def add_commands(command: Command) -> None:
    """Add the questions' subcommands."""
    status = command("status", cmd_status, "Show jobs by state, fares stored and workers, and "
                     "what is stuck; exit status 1 if a lease is overdue or a cycle cannot "
                     "finish.")
    status.add_argument("--json", action="store_true", help="print JSON")
    cheapest = command("cheapest", cmd_cheapest, "Print the cheapest fare per route and date.")
    cheapest.add_argument("--json", action="store_true", help="print JSON")
    cheapest.add_argument("--limit", type=int, default=0, help="print at most this many")
    check = command("check", cmd_check, "Audit delivery: compare the ledger with the store, "
                    "per cycle, and look for what is stuck (overdue leases, cycles that "
                    "cannot finish); exit status 1 if anything is lost, duplicated or stuck.")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--limit", type=int, default=20,
                       help="job ids listed per kind and cycle (20; 0 for all)")
    prices = command("prices", cmd_prices, "Print a route's cheapest fare per date and cycle "
                     "(price history), flagging drops.")
    prices.add_argument("route", metavar="ROUTE", help="ORIG-DEST, e.g. GRU-REC")
    prices.add_argument("--date", help="only this departure date (YYYY-MM-DD)")
    prices.add_argument("--json", action="store_true", help="print JSON")
    command("settings", cmd_settings, "Print every setting, its value and its source.")
    command("backends", cmd_backends, "List the installed backends.")
