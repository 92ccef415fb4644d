"""The Celery caller of the pipeline benchmark: publish every job, collect, store in SQLite.

It plays voe's master and sink in one process: it publishes one task per job of
the plan, then collects the results from the ``rpc://`` backend and stores their
fares in SQLite (WAL, ``synchronous=NORMAL``) in batches of up to 2,000 results
per transaction, and prints what it stored as JSON.

    python bench/celery_caller.py --plan FILE --db FILE [--timeout S]
    python bench/celery_caller.py --delete-queue     # afterwards: remove the run's queue
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys

from celery.result import ResultSet
from celery_app import QUEUE, app, search
from raw_zmq import _INSERT, _SCHEMA

from voe.master.plan import load_plan

BATCH = 2000


def main() -> int:
    """Publish, collect and store; exit 0 when every result is stored."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan")
    parser.add_argument("--db")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--delete-queue", action="store_true",
                        help=f"delete the run's queue ({QUEUE}) and exit")
    args = parser.parse_args()
    if args.delete_queue:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(QUEUE)
        print(json.dumps({"deleted": QUEUE}))
        return 0
    if not args.plan or not args.db:
        parser.error("--plan and --db are required")
    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(_SCHEMA)
    plan = load_plan(args.plan)
    rows = {}
    pending = []
    for job in plan.jobs(1, dt.date.today()):
        row = [job.id, job.cycle, job.backend, job.origin, job.destination, job.date,
               job.return_date]
        result = search.apply_async((row,))
        rows[result.id] = row
        pending.append(result)
    buffer: list[tuple] = []

    def flush() -> None:
        db.execute("BEGIN")
        db.executemany(_INSERT, buffer)
        db.execute("COMMIT")
        buffer.clear()

    def collect(task_id: str, fares: list[list[str]]) -> None:
        job_id, cycle, backend, origin, destination, date, back = rows[task_id]
        route = (cycle, job_id, backend, origin, destination, date, back)
        buffer.extend((*route, *fare) for fare in fares)
        if len(buffer) >= BATCH * 5:
            flush()

    ResultSet(pending).join_native(callback=collect, timeout=args.timeout)
    flush()
    fares = db.execute("SELECT COUNT(*) FROM fares").fetchone()[0]
    db.close()
    print(json.dumps({"published": len(pending), "fares": fares}))
    return 0 if fares == 5 * len(pending) else 1


if __name__ == "__main__":
    sys.exit(main())
