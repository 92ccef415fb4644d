"""The Celery peer of the pipeline benchmark: one task that returns a job's five fares.

Broker: RabbitMQ on loopback (``BENCH_BROKER``, default amqp://guest:guest@127.0.0.1:5672//).
Results travel back through RabbitMQ with the ``rpc://`` result backend to the caller
(``celery_caller.py``), which stores them in SQLite in batches: the same shape as voe,
where workers push results to one process that stores them. Celery's defaults stay
as they are (JSON, persistent messages, durable queue, prefetch multiplier 4, early
acks), except that the queue is private to the run and deletes itself afterwards.

The worker writes ``BENCH_READY_FILE`` once it consumes, so the benchmark knows when
to start the clock.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue

from voe.backends.null import NullBackend
from voe.model import SearchJob

QUEUE = os.environ.get("BENCH_QUEUE", "voe-bench")

app = Celery("voebench",
             broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
             backend="rpc://")
app.conf.update(
    task_queues=[Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)

_backend = NullBackend(None)  # type: ignore[arg-type]  # it ignores its settings


@app.task(name="voebench.search")
def search(row: list) -> list[list[str]]:
    """Return the five fares of one job (the same as voe's ``null`` backend)."""
    job_id, cycle, backend, origin, destination, date, back = row
    job = SearchJob(job_id, cycle, 1, backend, origin, destination, date, back)
    return [list(fare) for fare in _backend.search(job, None)]  # type: ignore[arg-type]


@worker_ready.connect
def _ready(**kwargs: object) -> None:
    ready_file = os.environ.get("BENCH_READY_FILE")
    if ready_file:
        Path(ready_file).write_text("ready\n", encoding="utf-8")
