"""The raw pyzmq peer of the pipeline benchmark: ventilator -> workers -> sink, nothing else.

The zguide's pattern, written plainly: the ventilator PUSHes one message per job,
each worker PULLs a job, computes the same five fares as voe's ``null`` backend and
PUSHes one message per result, and the sink PULLs results and stores their fares in
SQLite (WAL, ``synchronous=NORMAL``, like voe's store) in batches of up to 2,000 per
transaction. No leases, acknowledgements, ledger, credit or validation.

Roles, each its own process::

    python bench/raw_zmq.py sink --port P --jobs N --db FILE
    python bench/raw_zmq.py worker --ventilator P1 --sink P2
    python bench/raw_zmq.py ventilator --port P1 --plan FILE --workers 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
import time

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from voe.backends.null import NullBackend
from voe.master.plan import load_plan
from voe.model import SearchJob

BATCH = 2000
# Every loop here stops after this many seconds whatever happens.
MAX_SECONDS = 900.0

_SCHEMA = """CREATE TABLE IF NOT EXISTS fares (
    cycle INTEGER NOT NULL, job_id TEXT NOT NULL, backend TEXT NOT NULL,
    origin TEXT NOT NULL, destination TEXT NOT NULL, date TEXT NOT NULL, return_date TEXT,
    flight TEXT NOT NULL, departure TEXT NOT NULL, arrival TEXT NOT NULL,
    price TEXT NOT NULL, currency TEXT NOT NULL)"""
_INSERT = "INSERT INTO fares VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def ventilator(args: argparse.Namespace) -> int:
    """Wait for the workers to connect, then push every job of the plan, one per message."""
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, -1)
    monitor = push.get_monitor_socket(zmq.EVENT_ACCEPTED)
    push.bind(f"tcp://127.0.0.1:{args.port}")
    deadline = time.monotonic() + 30
    accepted = 0
    while accepted < args.workers:
        if time.monotonic() > deadline:
            print(f"only {accepted} of {args.workers} workers connected", file=sys.stderr)
            return 1
        if monitor.poll(100):
            recv_monitor_message(monitor)
            accepted += 1
    plan = load_plan(args.plan)
    sent = 0
    for job in plan.jobs(1, dt.date.today()):
        push.send(msgpack.packb([job.id, job.cycle, job.backend, job.origin, job.destination,
                                 job.date, job.return_date]))
        sent += 1
    push.disable_monitor()
    monitor.close(0)
    push.close()
    context.term()
    print(json.dumps({"sent": sent}))
    return 0


def worker(args: argparse.Namespace) -> int:
    """Turn jobs into five fares each, forever (until killed or MAX_SECONDS)."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{args.ventilator}")
    push = context.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{args.sink}")
    backend = NullBackend(None)  # type: ignore[arg-type]  # it ignores its settings
    deadline = time.monotonic() + MAX_SECONDS
    while time.monotonic() < deadline:
        if not pull.poll(100):
            continue
        job_id, cycle, name, origin, destination, date, back = msgpack.unpackb(pull.recv())
        job = SearchJob(job_id, cycle, 1, name, origin, destination, date, back)
        fares = backend.search(job, None)  # type: ignore[arg-type]  # no HTTP
        push.send(msgpack.packb([job_id, cycle, name, origin, destination, date, back,
                                 [list(fare) for fare in fares]]))
    return 0


def sink(args: argparse.Namespace) -> int:
    """Store the fares of ``--jobs`` results, then print what was stored and exit."""
    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(_SCHEMA)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{args.port}")
    received = 0
    deadline = time.monotonic() + MAX_SECONDS
    while received < args.jobs and time.monotonic() < deadline:
        if not pull.poll(100):
            continue
        rows = []
        for _ in range(BATCH):
            try:
                frame = pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            received += 1
            job_id, cycle, name, origin, destination, date, back, fares = msgpack.unpackb(frame)
            route = (cycle, job_id, name, origin, destination, date, back)
            rows.extend((*route, *fare) for fare in fares)
        db.execute("BEGIN")
        db.executemany(_INSERT, rows)
        db.execute("COMMIT")
    fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
    db.close()
    pull.close(0)
    context.term()
    print(json.dumps({"received": received, "fares": fares}))
    return 0 if received == args.jobs else 1


def main() -> int:
    """Run one role."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    vent = roles.add_parser("ventilator")
    vent.add_argument("--port", type=int, required=True)
    vent.add_argument("--plan", required=True)
    vent.add_argument("--workers", type=int, default=2)
    work = roles.add_parser("worker")
    work.add_argument("--ventilator", type=int, required=True)
    work.add_argument("--sink", type=int, required=True)
    store = roles.add_parser("sink")
    store.add_argument("--port", type=int, required=True)
    store.add_argument("--jobs", type=int, required=True)
    store.add_argument("--db", required=True)
    args = parser.parse_args()
    return {"ventilator": ventilator, "worker": worker, "sink": sink}[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
