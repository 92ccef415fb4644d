"""The ``voe`` console script: one subcommand per role and per question users ask.

Heavy imports happen inside each command: the worker must patch the standard
library with gevent before anything imports sockets or requests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from voe import __version__, private
from voe.cloud.arguments import add_cloud_subcommands
from voe.demoairline.faults import add_arguments as add_fault_arguments
from voe.master.ledger import LedgerError
from voe.protocol import is_label
from voe.settings import Settings, SettingsError, load
from voe.store.base import StoreError
from voe.web.client import ControlError, NoMaster, PortOff, ask_master

EXIT_USAGE = 2
# A listing whose reader closed the pipe exits as a program killed by SIGPIPE would.
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A mistake in how voe was called or configured: one line, exit status 2."""


# What a command reports in one line with exit status 2: a wrong call, or a ledger or a
# store that cannot be opened or read (a wrong path or URL, a newer schema, ...).
USER_ERRORS = (UsageError, LedgerError, StoreError)


def _settings() -> Settings:
    try:
        return load()
    except SettingsError as error:
        raise UsageError(str(error)) from None


def _plan(path: str | None, settings: Settings):
    from voe.backends import available_backends
    from voe.master.plan import PlanError, load_plan

    try:
        return load_plan(path or settings.voe_plan or None, available_backends())
    except PlanError as error:
        raise UsageError(str(error)) from None


def _logs(role: str, settings: Settings, console: bool) -> None:
    from voe import logs

    logs.setup(role, settings.data_dir, settings.voe_log_level, console)


def _require_keys(settings: Settings, role: str) -> None:
    from voe.keys import KeysError, require

    try:
        require(settings, role)
    except KeysError as error:
        raise UsageError(str(error)) from None


def cmd_keys(args: argparse.Namespace) -> int:
    """Make the cluster's CURVE keys (init) or a new client key (add NAME)."""
    from voe.keys import KeysError, add_client, init, keys_dir

    directory = keys_dir(_settings())
    try:
        if args.keys_command == "add":
            secret = add_client(directory, args.name)
            print(f"client key {args.name}: {secret} (copy it to the worker as "
                  f"client.key_secret in its keys dir, with master.key and sink.key); "
                  "running servers admit it now")
            return 0
        created = init(directory)
    except KeysError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write keys in {directory}: {error.strerror}") from None
    if created:
        print(f"created CURVE key pairs {', '.join(created)} in {directory} (mode 0600)")
    else:
        print(f"CURVE keys already in {directory}; nothing changed")
    return 0


def cmd_master(args: argparse.Namespace) -> int:
    """Run the master (the original's ventilator)."""
    settings = _settings()
    plan = _plan(args.plan, settings)
    _require_keys(settings, "master")
    _logs("master", settings, not args.no_console)
    from voe.master.lock import MasterRunning
    from voe.master.loop import run_master
    from voe.sockets import BindError
    from voe.web.auth import WebError

    try:
        return run_master(settings, plan, once=True if args.once else None)
    except (WebError, BindError) as error:
        raise UsageError(str(error)) from None
    except MasterRunning as error:  # not a usage mistake: status 1, one line, no traceback
        print(f"voe master: error: {error}", file=sys.stderr)
        return 1


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker."""
    from gevent import monkey

    monkey.patch_all()
    settings = _settings()
    _require_keys(settings, "worker")
    _logs("worker", settings, not args.no_console)
    from voe.worker import Worker

    return Worker(settings, args.concurrency, args.prefetch, args.name, args.once).run()


def cmd_sink(args: argparse.Namespace) -> int:
    """Run the sink."""
    settings = _settings()
    _require_keys(settings, "sink")
    _logs("sink", settings, not args.no_console)
    from voe.publish import PublishError
    from voe.sink import Sink
    from voe.sockets import BindError
    from voe.store import StoreError
    from voe.web.auth import WebError

    private.make_dir(settings.data_dir)
    try:
        sink = Sink(settings)
    except (StoreError, WebError, PublishError, BindError) as error:
        raise UsageError(str(error)) from None
    return sink.run()


def cmd_demo_airline(args: argparse.Namespace) -> int:
    """Serve the demo airline website."""
    import logging

    from voe.demoairline.faults import from_arguments
    from voe.demoairline.server import serve

    try:
        faults = from_arguments(args)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.host is None or args.port is None:
        url = urlsplit(_settings().voe_demo_airline_url)
        try:
            port = url.port
        except ValueError:
            port = None
        args.host = args.host or url.hostname or "127.0.0.1"
        args.port = args.port or port or 80
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(host=args.host, port=args.port, latency_ms=args.latency_ms,
          fail_routes=args.fail_route, flights=args.flights, faults=faults)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the whole pipeline locally against the demo airline."""
    settings = _settings()
    plan = _plan(args.plan, settings)
    from voe.demoairline.faults import option_arguments
    from voe.localrun import LocalRun

    try:
        args.airline_arguments = option_arguments(args.airline_option)
    except ValueError as error:
        raise UsageError(str(error)) from None

    return LocalRun(settings, plan, args).run()


def cmd_status(args: argparse.Namespace) -> int:
    """Show jobs by state, fares stored and workers; status 1 if a lease or cycle is stuck."""
    from voe.report import field_yield_lines, health_lines, status, stuck

    report = status(_settings())
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if stuck(report) else 0
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
    for found in report["yield"]:
        previous = found["previous_fares_per_page"]
        print(f"yield {found['backend']} cycle {found['cycle']}: {found['fares_per_page']} "
              f"fares/page on {found['pages']} pages"
              + (f" (cycle {found['previous_cycle']}: {previous})" if previous is not None else "")
              + (" DROPPED by more than half: did the airline change its pages?"
                 if found["dropped"] else ""))
    for line in field_yield_lines(report["field_yield"]):
        print(line)
    outbox = report["outbox"]
    if not outbox["destinations"]:
        print("outbox: no publisher configured (VOE_AMQP_URL, VOE_NATS_URL, VOE_WEBHOOK_URLS)")
    for name, found in outbox["destinations"].items():
        print(f"outbox {name}: {found['backlog']} waiting, {found['dead']} dead letter(s)"
              + (f", {found['retrying']} to retry" if found["retrying"] else "")
              + ("" if found["configured"] else " (not configured here)"))
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
    for line in health_lines(report):
        print(line)
    return 1 if stuck(report) else 0


def cmd_outbox(args: argparse.Namespace) -> int:
    """List the outbox's dead letters, or send them back to their publisher (retry)."""
    from voe.report import dead_letters, retry_dead_letters

    settings = _settings()
    if args.outbox_command == "retry":
        count = retry_dead_letters(settings, args.destination)
        print(f"{count} dead letter(s) sent back to their publisher; a running sink delivers "
              "them, or the next one started")
        return 0
    rows = dead_letters(settings, args.destination)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no dead letters in the outbox")
    for row in rows:
        retry = " (to retry)" if row["state"] == "retry" else ""
        print(f"{row['destination']} event {row['id']} {row['kind']} cycle {row['cycle']} "
              f"{row['job_id']}: {row['error']} after {row['attempts']} attempt(s){retry}")
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    """List dead letters, or send them back to pending (retry, or the older --retry)."""
    from voe.report import failed

    settings = _settings()
    if args.retry and args.failed_command == "list":
        raise UsageError("--retry is `voe failed retry`; it cannot be combined with list")
    if args.retry or args.failed_command == "retry":
        return _retry_failed(settings)
    rows = failed(settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no failed jobs")
    for row in rows:
        print(f"cycle {row['cycle']} {row['job_id']} after {row['attempts']} attempt(s): "
              f"{row['error']}")
    return 0


def _retry_failed(settings: Settings) -> int:
    """Send every dead letter back to pending: through the running master when there is one
    (so it leases them at once and no one writes its ledger behind its back), else in the
    ledger, where the next master finds them."""
    from voe.report import retry_failed

    try:
        count = ask_master(settings, "/api/retry")["retried"]
        then = "the running master leases them now"
    except NoMaster:
        count = retry_failed(settings)
        then = "no master runs: start one to search them again (voe master --once)"
    except PortOff:  # the master finds reopened cycles in its ledger within a second
        count = retry_failed(settings)
        then = ("written to the ledger (the running master's HTTP port is off); the master "
                "leases them within a second")
    if not count:
        print("no failed jobs to retry")
        return 0
    print(f"{count} failed job(s) sent back to pending; {then}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause leasing on the running master, through its HTTP port."""
    ask_master(_settings(), "/api/pause")
    print("leasing paused: workers get no new job (leases out finish or expire) until "
          "`voe resume`")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume leasing on the running master, through its HTTP port."""
    ask_master(_settings(), "/api/resume")
    print("leasing resumed")
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    """Start the plan's next cycle on the running master now (start), through its HTTP port."""
    answer = ask_master(_settings(), "/api/cycles")
    print(f"cycle {answer['cycle']} started: {answer['total']} jobs")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write every stored fare as CSV or JSON Lines."""
    from voe.export import export_fares, export_format
    from voe.report import store_target
    from voe.store import NoStore, open_store

    settings = _settings()
    fmt = args.format or export_format(args.out)
    try:
        store = open_store(store_target(settings), readonly=True)
    except NoStore:
        print(f"nothing stored yet in {settings.data_dir.resolve()}: no fares to export "
              "(run `voe run` first)", file=sys.stderr)
        return 0
    try:
        if args.out == "-":
            count = export_fares(store, sys.stdout, fmt, args.cycle, args.since)
        else:
            try:
                out = open(args.out, "w", encoding="utf-8", newline="")
            except OSError as error:
                raise UsageError(f"cannot write {args.out}: {error.strerror}") from None
            with out:
                count = export_fares(store, out, fmt, args.cycle, args.since)
    finally:
        store.close()
    print(f"exported {count} fares to {args.out} ({fmt})", file=sys.stderr)
    return 0


def cmd_reparse(args: argparse.Namespace) -> int:
    """Re-read the kept pages of dead letters with today's parser; store what now passes."""
    from voe.reparse import reparse
    from voe.report import ledger_path, store_target

    settings = _settings()
    if not ledger_path(settings).is_file():
        print(f"nothing to re-parse in {settings.data_dir.resolve()}: no ledger yet")
        return 0
    pages = Path(args.pages) if args.pages else settings.data_dir
    outcome = reparse(settings, ledger_path(settings), store_target(settings), pages,
                      args.cycle, args.backend, args.job)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
        return 0
    for backend, why in outcome.cannot.items():
        print(f"skipped backend {backend}: {why}")
    for job_id, error in outcome.failing[: args.limit or None]:
        print(f"still failing: {job_id}: {error}")
    if args.limit and len(outcome.failing) > args.limit:
        print(f"... and {len(outcome.failing) - args.limit} more still failing")
    if outcome.no_page:
        print(f"{len(outcome.no_page)} dead letter(s) have no kept page in {pages / 'pages'} "
              "(only failed parses and blocks keep one; `voe failed retry` searches again)")
    print(f"re-parsed: {outcome.stored} job(s) stored with {outcome.fares} fares, "
          f"{len(outcome.failing)} still failing; no request was made to any airline")
    return 0


def cmd_cheapest(args: argparse.Namespace) -> int:
    """Print the cheapest stored fare per route and date."""
    from voe.report import cheapest

    rows = cheapest(_settings())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no fares stored yet")
    for row in rows[: args.limit or None]:
        back = f" back {row['return_date']}" if row.get("return_date") else ""
        print(f"{row['origin']}-{row['destination']} {row['date']}{back}: {row['price']} "
              f"{row['currency']} ({row['flight']} {row['departure']})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Audit delivery: the ledger against the store; status 1 if anything is lost or doubled,
    a lease is overdue or a cycle cannot finish."""
    from voe.audit import KINDS
    from voe.report import check, health_lines, ledger_path

    settings = _settings()
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
    """Print a route's cheapest fare per date and cycle, flagging drops."""
    from decimal import Decimal

    from voe.demoairline.fares import check_date
    from voe.report import parse_route, prices

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
    rows = prices(_settings(), origin, destination, args.date)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no fares stored for {route}" + (f" on {args.date}" if args.date else ""))
    for row in rows:
        back = f" back {row['return_date']}" if row["return_date"] else ""
        moved = ""
        if row["change"] is not None:
            if row["drop"]:
                moved = f"  DROP from {row['previous']} ({row['change']})"
            elif Decimal(row["change"]) != 0:
                moved = f"  (up from {row['previous']}, +{row['change']})"
            else:
                moved = "  (unchanged)"
        print(f"{route} {row['date']}{back} cycle {row['cycle']}: {row['price']} "
              f"{row['currency']} ({row['flight']} {row['departure']}){moved}")
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


def cmd_cloud(args: argparse.Namespace) -> int:
    """Launch and deploy, list or terminate this cluster's EC2 fleet."""
    from voe.cloud.commands import dispatch

    return dispatch(args, f"voe cloud {args.cloud_command}")


def cmd_backends(args: argparse.Namespace) -> int:
    """List the backends installed (built-in and through entry points)."""
    from voe.backends import available_backends

    for name, origin in sorted(available_backends().items()):
        print(f"{name}\t{origin}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="voe", description="Collect flight fares at scale: master, workers and sink.")
    parser.add_argument("--version", action="version", version=f"voe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int],
                help_text: str) -> argparse.ArgumentParser:
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(handler=handler, called=sub_parser.prog)
        return sub_parser

    run = command("run", cmd_run,
                  "Run the whole pipeline locally against the demo airline, once, with progress.")
    run.add_argument("--workers", type=_at_least_one, default=2, help="worker processes (2)")
    run.add_argument("--concurrency", type=_at_least_one, default=None,
                     help="searches per worker (VOE_CONCURRENCY)")
    run.add_argument("--plan", help="plan file (VOE_PLAN, else the demo plan)")
    run.add_argument("--latency-ms", type=int, default=100,
                     help="latency of the demo airline's answers (100)")
    run.add_argument("--no-airline", action="store_true",
                     help="use the demo airline already at VOE_DEMO_AIRLINE_URL")
    run.add_argument("--airline-option", action="append", default=[], metavar="NAME=VALUE",
                     help="a fault option of the demo airline, e.g. error-rate=0.1 "
                          "(repeatable; see voe demo-airline --help)")

    master = command("master", cmd_master, "Run the master: lease jobs, keep the ledger.")
    master.add_argument("--plan", help="plan file (VOE_PLAN, else the demo plan)")
    master.add_argument("--once", action="store_true",
                        help="run one cycle and exit when every job is done or failed")
    _role_options(master)

    worker = command("worker", cmd_worker, "Run a worker: search fares for the master's jobs.")
    worker.add_argument("--concurrency", type=_at_least_one, default=None,
                        help="searches at once (VOE_CONCURRENCY)")
    worker.add_argument("--prefetch", type=int, default=None,
                        help="jobs held beyond the concurrency (VOE_PREFETCH)")
    worker.add_argument("--name", type=_worker_name, help="name in logs and status (host-pid)")
    worker.add_argument("--once", action="store_true",
                        help="leave when the master says its collection is over (a master run "
                             "with --once); without it the worker waits quietly for the next")
    _role_options(worker)

    sink = command("sink", cmd_sink, "Run the sink: store results, then acknowledge them.")
    _role_options(sink)

    airline = command("demo-airline", cmd_demo_airline, "Serve the demo airline website.")
    airline.add_argument("--host", default=None,
                         help="address to listen on (VOE_DEMO_AIRLINE_URL's host, 127.0.0.1)")
    airline.add_argument("--port", type=int, default=None,
                         help="port (VOE_DEMO_AIRLINE_URL's port, 8800)")
    airline.add_argument("--latency-ms", type=int, default=0, help="delay of every answer (0)")
    airline.add_argument("--fail-route", action="append", default=[], metavar="ORIG-DEST",
                         help="answer 503 for this route (repeatable; fault injection)")
    airline.add_argument("--flights", type=_at_least_one, default=None,
                         help="flights on every results page (default 3 to 8)")
    add_fault_arguments(airline)

    status = command("status", cmd_status, "Show jobs by state, fares stored and workers, and "
                     "what is stuck; exit status 1 if a lease is overdue or a cycle cannot "
                     "finish.")
    status.add_argument("--json", action="store_true", help="print JSON")

    failed = command("failed", cmd_failed, "List failed jobs (dead letters), or send them "
                     "back to pending with `voe failed retry` (through the running master when "
                     "there is one).")
    failed.add_argument("failed_command", nargs="?", choices=("list", "retry"), default=None,
                        metavar="ACTION", help="list (the default) or retry")
    failed.add_argument("--retry", action="store_true",
                        help="the same as `voe failed retry` (its older spelling)")
    failed.add_argument("--json", action="store_true", help="print JSON")

    command("pause", cmd_pause, "Pause leasing on the running master (through its HTTP port, "
            "VOE_HTTP_PORT): workers get no new job until `voe resume`.")
    command("resume", cmd_resume, "Resume leasing on the running master (through its HTTP "
            "port, VOE_HTTP_PORT).")
    cycle = command("cycle", cmd_cycle, "Act on the running master's cycles (through its HTTP "
                    "port, VOE_HTTP_PORT).")
    cycle_sub = cycle.add_subparsers(dest="cycle_command", metavar="ACTION", required=True)
    start = cycle_sub.add_parser("start", help="start the plan's next cycle now, without "
                                 "waiting for its interval (refused while a cycle is still "
                                 "running)", description="Start the plan's next cycle on the "
                                 "running master now, without waiting for its interval "
                                 "(refused while a cycle is still running).")
    start.set_defaults(called=start.prog)

    outbox = command("outbox", cmd_outbox, "List the events publishers gave up on (webhook dead "
                     "letters), or send them again with `voe outbox retry`.")
    outbox.add_argument("outbox_command", nargs="?", choices=("list", "retry"), default="list",
                        metavar="ACTION", help="list (the default) or retry")
    outbox.add_argument("--destination", help="only this destination, e.g. "
                        "webhook:https://example.com/hook (voe status names them)")
    outbox.add_argument("--json", action="store_true", help="print JSON")

    export = command("export", cmd_export, "Write every stored fare as CSV or JSON Lines.")
    export.add_argument("--format", choices=("jsonl", "csv"), default=None,
                        help="csv or jsonl (default: from --out's extension, .csv is csv; "
                             "otherwise jsonl)")
    export.add_argument("--out", default="-", help="file to write (- for standard output, "
                        "the default)")
    export.add_argument("--cycle", type=_at_least_one, help="only the fares of this cycle")
    export.add_argument("--since", type=_at_least_one, metavar="CYCLE",
                        help="only the fares of this cycle and later ones")

    reparse = command("reparse", cmd_reparse, "Run today's parser and fare pipeline over the "
                      "kept pages of failed jobs, store what now passes (exactly once) and end "
                      "those dead letters, without a request to the airline.")
    reparse.add_argument("--backend", help="only this backend's dead letters")
    reparse.add_argument("--cycle", type=_at_least_one, help="only this cycle's dead letters")
    reparse.add_argument("--job", metavar="JOB_ID", help="only this job, e.g. "
                         "demo:GRU-REC:2026-12-20")
    reparse.add_argument("--pages", metavar="DIR", help="the data dir holding the kept pages "
                         "(pages/), if not this one (VOE_DATA_DIR)")
    reparse.add_argument("--limit", type=int, default=20,
                         help="failures listed (20; 0 for all)")
    reparse.add_argument("--json", action="store_true", help="print JSON")

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
    keys = command("keys", cmd_keys, "Make the cluster's CURVE keys (in VOE_KEYS_DIR, else "
                   "keys/ in the data dir).")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_sub.add_parser("init", help="make the missing master, sink and client key pairs")
    add = keys_sub.add_parser("add", help="make a new client key pair and admit it")
    add.add_argument("name", help="the client's name, e.g. worker-7")
    command("backends", cmd_backends, "List the installed backends.")
    cloud = command("cloud", cmd_cloud, "The EC2 fleet of this cluster: up (launch and "
                    "deploy), status, down (terminate).")
    add_cloud_subcommands(cloud)
    return parser


def _role_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-console", action="store_true",
                        help="log only to the role's log file in the data dir")


def _worker_name(text: str) -> str:
    """A worker's name: shown in logs and on terminals, so printable and at most 200 long."""
    if not text or len(text) > 200 or not is_label(text):
        raise argparse.ArgumentTypeError("must be 1 to 200 printable characters, without "
                                         "control characters (no line breaks, tabs, "
                                         "escapes or Unicode separators and format marks)")
    return text


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voe`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"{args.called}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ControlError as error:  # no master to ask, or it refused: status 1, not a usage one
        print(f"{args.called}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`voe failed | head`): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
