"""The roles' commands: master, worker, sink, and the CURVE keys they need.

Heavy imports happen inside each command: the worker must patch the standard
library with gevent before anything imports sockets or requests.
"""

from __future__ import annotations

import argparse
import sys

from voe import private
from voe.cli.common import (
    Command,
    UsageError,
    require_keys,
    role_options,
    start_logs,
    user_plan,
    user_settings,
)
from voe.cli.types import at_least_one, worker_name


def cmd_keys(args: argparse.Namespace) -> int:
    """Make the cluster's CURVE keys (init) or a new client key (add NAME)."""
    from voe.keys import KeysError, add_client, init, keys_dir

    directory = keys_dir(user_settings())
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
    settings = user_settings()
    plan = user_plan(args.plan, settings)
    if args.once and plan.scheduler != "cycle":
        raise UsageError(f"{plan.source}: --once runs one cycle, and the {plan.scheduler} "
                         "scheduler has none; run without --once")
    require_keys(settings, "master")
    start_logs("master", settings, not args.no_console)
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
    import logging

    from voe.worker import allocator

    settings = user_settings()
    require_keys(settings, "worker")
    allocator.use(settings.voe_worker_malloc)  # may start this worker again, on jemalloc
    start_logs("worker", settings, not args.no_console)
    logging.getLogger("voe.worker").info(allocator.describe(settings.voe_worker_malloc))
    from voe.worker.loop import Worker

    return Worker(settings, args.concurrency, args.prefetch, args.name, args.once).run()


def cmd_sink(args: argparse.Namespace) -> int:
    """Run the sink."""
    settings = user_settings()
    require_keys(settings, "sink")
    start_logs("sink", settings, not args.no_console)
    from voe.sink.loop import Sink
    from voe.sink.publish import PublishError
    from voe.sockets import BindError
    from voe.store import StoreError
    from voe.web.auth import WebError

    private.make_dir(settings.data_dir)
    try:
        sink = Sink(settings)
    except (StoreError, WebError, PublishError, BindError) as error:
        raise UsageError(str(error)) from None
    return sink.run()


def add_commands(command: Command) -> None:
    """Add the roles' subcommands: master, worker, sink, keys."""
    master = command("master", cmd_master, "Run the master: lease jobs, keep the ledger.")
    master.add_argument("--plan", help="plan file (VOE_PLAN, else the demo plan)")
    master.add_argument("--once", action="store_true",
                        help="run one cycle and exit when every job is done or failed")
    role_options(master)
    worker = command("worker", cmd_worker, "Run a worker: search fares for the master's jobs.")
    worker.add_argument("--concurrency", type=at_least_one, default=None,
                        help="searches at once (VOE_CONCURRENCY)")
    worker.add_argument("--prefetch", type=int, default=None,
                        help="jobs held beyond the concurrency (VOE_PREFETCH)")
    worker.add_argument("--name", type=worker_name, help="name in logs and status (host-pid)")
    worker.add_argument("--once", action="store_true",
                        help="leave when the master says its collection is over (a master run "
                             "with --once); without it the worker waits quietly for the next")
    role_options(worker)
    sink = command("sink", cmd_sink, "Run the sink: store results, then acknowledge them.")
    role_options(sink)
    keys = command("keys", cmd_keys, "Make the cluster's CURVE keys (in VOE_KEYS_DIR, else "
                   "keys/ in the data dir).")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    keys_sub.add_parser("init", help="make the missing master, sink and client key pairs")
    add = keys_sub.add_parser("add", help="make a new client key pair and admit it")
    add.add_argument("name", help="the client's name, e.g. worker-7")
