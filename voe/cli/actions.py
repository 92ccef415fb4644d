"""Commands that act: failed jobs and outbox retries, pause, resume, cycles, export,
reparse, and the EC2 fleet."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from voe.cli.common import Command, UsageError, print_rows, user_settings
from voe.cli.types import at_least_one
from voe.cloud.arguments import add_cloud_subcommands
from voe.settings import Settings
from voe.web.client import NoMaster, PortOff, ask_master, running_master


def cmd_outbox(args: argparse.Namespace) -> int:
    """List the outbox's dead letters, or send them back to their publisher (retry)."""
    from voe.cli.report import dead_letters, retry_dead_letters

    settings = user_settings()
    if args.outbox_command == "retry":
        count = retry_dead_letters(settings, args.destination)
        print(f"{count} dead letter(s) sent back to their publisher; a running sink delivers "
              "them, or the next one started")
        return 0
    return print_rows(dead_letters(settings, args.destination), args.json,
                      "no dead letters in the outbox", _dead_letter_line)


def _dead_letter_line(row: dict[str, Any]) -> str:
    retry = " (to retry)" if row["state"] == "retry" else ""
    return (f"{row['destination']} event {row['id']} {row['kind']} cycle {row['cycle']} "
            f"{row['job_id']}: {row['error']} after {row['attempts']} attempt(s){retry}")


def cmd_failed(args: argparse.Namespace) -> int:
    """List dead letters, or send them back to pending (retry, or the older --retry)."""
    from voe.cli.report import failed

    settings = user_settings()
    if args.retry and args.failed_command == "list":
        raise UsageError("--retry is `voe failed retry`; it cannot be combined with list")
    if args.retry or args.failed_command == "retry":
        return _retry_failed(settings)
    return print_rows(failed(settings), args.json, "no failed jobs", _failed_line)


def _failed_line(row: dict[str, Any]) -> str:
    return (f"cycle {row['cycle']} {row['job_id']} after {row['attempts']} attempt(s): "
            f"{row['error']}")


def _retry_failed(settings: Settings) -> int:
    """Send every dead letter back to pending: through the running master when there is one
    (so it leases them at once and no one writes its ledger behind its back), else in the
    ledger, where the next master finds them."""
    from voe.cli.report import retry_failed

    try:
        count = ask_master(settings, "/api/retry")["retried"]
        then = "the running master leases them now"
    except NoMaster:
        count = retry_failed(settings)
        then = "no master runs: start one to search them again (voe master --once)"
    except PortOff:  # the ledger is the only way: write it, then tell the master (SIGUSR1)
        count = retry_failed(settings)
        then = ("written to the ledger (the running master's HTTP port is off); "
                + _tell_master(settings))
    if not count:
        print("no failed jobs to retry")
        return 0
    print(f"{count} failed job(s) sent back to pending; {then}")
    return 0


def _tell_master(settings: Settings) -> str:
    """Tell the running master that its ledger changed (SIGUSR1): it never polls for it."""
    pid = running_master(settings)
    if pid is None:
        return "the master has stopped meanwhile: the next one leases them"
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as error:
        return (f"the master (pid {pid}) could not be told ({error.strerror}): restart it to "
                "lease them")
    return f"the master (pid {pid}) was told and leases them now"


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause leasing on the running master, through its HTTP port."""
    ask_master(user_settings(), "/api/pause")
    print("leasing paused: workers get no new job (leases out finish or expire) until "
          "`voe resume`")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume leasing on the running master, through its HTTP port."""
    ask_master(user_settings(), "/api/resume")
    print("leasing resumed")
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    """Start the plan's next cycle on the running master now (start), through its HTTP port."""
    answer = ask_master(user_settings(), "/api/cycles")
    print(f"cycle {answer['cycle']} started: {answer['total']} jobs")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write every stored fare as CSV or JSON Lines."""
    from voe.cli.export import export_fares, export_format
    from voe.cli.report import store_target
    from voe.store import NoStore, open_store

    settings = user_settings()
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
    from voe.cli.reparse import reparse
    from voe.cli.report import ledger_path, store_target

    settings = user_settings()
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


def cmd_cloud(args: argparse.Namespace) -> int:
    """Launch and deploy, list or terminate this cluster's EC2 fleet."""
    from voe.cloud.commands import dispatch

    return dispatch(args, f"voe cloud {args.cloud_command}")


def add_commands(command: Command) -> None:
    """Add the actions' subcommands."""
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
    export.add_argument("--cycle", type=at_least_one, help="only the fares of this cycle")
    export.add_argument("--since", type=at_least_one, metavar="CYCLE",
                        help="only the fares of this cycle and later ones")
    reparse = command("reparse", cmd_reparse, "Run today's parser and fare pipeline over the "
                      "kept pages of failed jobs, store what now passes (exactly once) and end "
                      "those dead letters, without a request to the airline.")
    reparse.add_argument("--backend", help="only this backend's dead letters")
    reparse.add_argument("--cycle", type=at_least_one, help="only this cycle's dead letters")
    reparse.add_argument("--job", metavar="JOB_ID", help="only this job, e.g. "
                         "demo:GRU-REC:2026-12-20")
    reparse.add_argument("--pages", metavar="DIR", help="the data dir holding the kept pages "
                         "(pages/), if not this one (VOE_DATA_DIR)")
    reparse.add_argument("--limit", type=int, default=20,
                         help="failures listed (20; 0 for all)")
    reparse.add_argument("--json", action="store_true", help="print JSON")
    cloud = command("cloud", cmd_cloud, "The EC2 fleet of this cluster: up (launch and "
                    "deploy), status, down (terminate).")
    add_cloud_subcommands(cloud)
