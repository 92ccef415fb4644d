"""``voe run`` and ``voe demo-airline``: the demo's commands, added to the ``voe`` console
script through the ``voe.commands`` entry point group like any plugin's."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from voe.cli.common import Command, UsageError, user_plan, user_settings
from voe.cli.types import add_name_values, at_least_one
from voe.demo.airline.faults import add_arguments as add_fault_arguments


def cmd_demo_airline(args: argparse.Namespace) -> int:
    """Serve the demo airline website."""
    import logging

    from voe.demo.airline.faults import from_arguments
    from voe.demo.airline.server import serve

    try:
        faults = from_arguments(args)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.host is None or args.port is None:
        url = urlsplit(user_settings().voe_demo_airline_url)
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
    settings = user_settings()
    plan = user_plan(args.plan, settings)
    if plan.scheduler != "cycle":
        raise UsageError(f"{plan.source}: `voe run` runs a plan once, and the {plan.scheduler} "
                         "scheduler never ends; run `voe master` with it (or use scheduler = "
                         '"cycle")')
    from voe.demo.airline.faults import option_arguments
    from voe.demo.localrun import LocalRun

    try:
        args.airline_arguments = option_arguments(args.airline_option)
    except ValueError as error:
        raise UsageError(str(error)) from None

    return LocalRun(settings, plan, args).run()


def add_commands(command: Command) -> None:
    """Add ``voe run`` and ``voe demo-airline``."""
    run = command("run", cmd_run,
                  "Run the whole pipeline locally against the demo airline, once, with progress.")
    run.add_argument("--workers", type=at_least_one, default=2, help="worker processes (2)")
    run.add_argument("--concurrency", type=at_least_one, default=None,
                     help="searches per worker (VOE_CONCURRENCY)")
    run.add_argument("--plan", help="plan file (VOE_PLAN, else the demo plan)")
    run.add_argument("--latency-ms", type=int, default=100,
                     help="latency of the demo airline's answers (100)")
    run.add_argument("--no-airline", action="store_true",
                     help="use the demo airline already at VOE_DEMO_AIRLINE_URL")
    add_name_values(run, "--airline-option", "a fault option of the demo airline, e.g. "
                                             "error-rate=0.1 (repeatable; see voe demo-airline "
                                             "--help)")
    airline = command("demo-airline", cmd_demo_airline, "Serve the demo airline website.")
    airline.add_argument("--host", default=None,
                         help="address to listen on (VOE_DEMO_AIRLINE_URL's host, 127.0.0.1)")
    airline.add_argument("--port", type=int, default=None,
                         help="port (VOE_DEMO_AIRLINE_URL's port, 8800)")
    airline.add_argument("--latency-ms", type=int, default=0, help="delay of every answer (0)")
    airline.add_argument("--fail-route", action="append", default=[], metavar="ORIG-DEST",
                         help="answer 503 for this route (repeatable; fault injection)")
    airline.add_argument("--flights", type=at_least_one, default=None,
                         help="flights on every results page (default 3 to 8)")
    add_fault_arguments(airline)
