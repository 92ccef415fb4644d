"""Prometheus metrics of the master and the sink, each on its own registry.

The master's registry is served at ``/metrics`` by its HTTP server (``VOE_HTTP_PORT``),
the sink's on ``VOE_SINK_HTTP_PORT`` (both by ``voe.web.server``). The master's loop keeps plain
counters (``Master.stats``, rejects) and publishes them here once per tick, the sink
once per batch, so a metric costs nothing per message; only a job's duration is
observed one by one, into a histogram counted with ``bisect`` (``CountedHistogram``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from voe.model import PARSE, PERMANENT, TRANSIENT
from voe.store.base import DONE, UNAVAILABLE_KINDS

if TYPE_CHECKING:
    from voe.sink.yieldwatch import FieldYield

MASTER = CollectorRegistry()
SINK = CollectorRegistry()

ProcessCollector(registry=MASTER)
ProcessCollector(registry=SINK)

# The outcomes of ``voe_master_jobs_total``, the keys of ``Master.stats``.
JOB_OUTCOMES = ("leased", "done", "retried", "failed", "expired")
# The statuses of ``voe_sink_acks_total``: done, or the kind of a failed attempt.
ACK_STATUSES = (DONE, TRANSIENT, PARSE, PERMANENT)
# Buckets of a job's time from lease to done (seconds): searches take 0.1 s to minutes.
JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Buckets of one store commit (seconds): a few ms for SQLite to seconds for a busy database.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)



def _rejected(role: str, registry: CollectorRegistry) -> Counter:
    """The counter of messages ``role`` refused, by reason (both roles count them alike)."""
    return Counter(f"voe_{role}_rejected_messages", f"Messages refused by the {role}, by reason.",
                   ["reason"], registry=registry)


def _commit_time(name: str, what: str, registry: CollectorRegistry) -> Histogram:
    """The histogram of the time of one ``what`` (a database transaction)."""
    return Histogram(name, f"Time of one {what}.", buckets=COMMIT_BUCKETS, registry=registry)


class CountedHistogram(Collector):
    """A histogram for the hot path: ``observe`` finds the bucket with ``bisect`` and adds
    one; the buckets are summed up when scraped. prometheus_client's ``Histogram.observe``
    walks every bucket in Python under a lock, which the master paid for every job.

    Observed from one thread (the master's loop); a scrape from another reads a copy.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(float(bound) for bound in buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: over every bound (+Inf)
        self.sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram as Prometheus reads it: cumulative buckets, their count and sum."""
        counts, total, buckets = list(self.counts), 0, []
        for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
            total += count
            buckets.append((floatToGoString(bound), total))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, self.sum)
        yield family


# The master -------------------------------------------------------------------

MASTER_JOBS = Counter(
    "voe_master_jobs", "Job events by outcome: leased, done (acknowledged as stored), retried, "
    "failed (dead letter) and expired (lease taken back).", ["outcome"], registry=MASTER)
MASTER_JOB_DURATION = CountedHistogram(
    "voe_master_job_duration_seconds", "Time from a job's lease to the sink's done "
    "acknowledgement.", JOB_DURATION_BUCKETS, MASTER)
MASTER_JOBS_LEASED = Gauge(
    "voe_master_jobs_leased", "Jobs out with workers (in flight).", registry=MASTER)
MASTER_JOBS_READY = Gauge(
    "voe_master_jobs_ready", "Pending jobs read from the ledger and waiting for a lease.",
    registry=MASTER)
MASTER_UNSTORED = Gauge(
    "voe_master_results_unstored", "Results workers finished that the sink has not yet "
    "acknowledged; leasing stops at VOE_MAX_UNSTORED.", registry=MASTER)
MASTER_WORKERS = Gauge(
    "voe_master_workers", "Workers connected (sending heartbeats).", registry=MASTER)
MASTER_REJECTED = _rejected("master", MASTER)
MASTER_FLUSH = _commit_time("voe_master_ledger_flush_seconds",
                            "ledger transaction of batched job writes", MASTER)
MASTER_AUDITS = Gauge(
    "voe_master_freshness_audits", "Audits (stored searches re-searched at random) counted in "
    "the measured staleness: the latest 2000.", registry=MASTER)
MASTER_STALE = Gauge(
    "voe_master_freshness_estimated_stale_share", "Estimated share of the store's searches "
    "whose stored answer is no longer the airline's (audits that found a change).",
    registry=MASTER)
MASTER_STILL_CORRECT = Gauge(
    "voe_master_freshness_still_correct_share", "Share of audits that found the stored "
    "answer still correct, by its age.", ["age"], registry=MASTER)
for _outcome in JOB_OUTCOMES:
    MASTER_JOBS.labels(_outcome)

# The sink ---------------------------------------------------------------------

SINK_RESULTS = Counter(
    "voe_sink_results_received", "Valid results received from workers.", registry=SINK)
SINK_FARES = Counter(
    "voe_sink_fares_stored", "Fares written to the store (a duplicate result writes none).",
    registry=SINK)
SINK_ACKS = Counter(
    "voe_sink_acks", "Results acknowledged to the master after commit, by status: done or "
    "the failed attempt's kind.", ["status"], registry=SINK)
SINK_ACKS_DROPPED = Counter(
    "voe_sink_acks_dropped", "Acknowledgements dropped because the master was not reachable "
    "(their leases expire and the jobs run again).", registry=SINK)
SINK_REJECTED = _rejected("sink", SINK)
SINK_COMMIT = _commit_time("voe_sink_commit_seconds", "store transaction (a batch of results)",
                           SINK)
SINK_LAST_COMMIT = Gauge(
    "voe_sink_last_commit_timestamp_seconds", "Unix time of the last store commit (its age is "
    "the store's lag behind a stalled pipeline).", registry=SINK)
SINK_STORE_WAITING = Gauge(
    "voe_sink_store_waiting", "1 while the sink waits for its store (a passing store error: it "
    "retries one batch with backoff and receives nothing meanwhile), else 0.", registry=SINK)
SINK_RESULTS_HELD = Gauge(
    "voe_sink_results_held", "Results the sink holds, not stored nor acknowledged, while it "
    "waits for its store.", registry=SINK)
SINK_STORE_ERRORS = Counter(
    "voe_sink_store_errors", "Store errors that pass (retried, not fatal), by kind: connection "
    "(lost, terminated, refused), full (disk), locked (busy) or io.", ["kind"], registry=SINK)
OUTBOX_BACKLOG = Gauge(
    "voe_outbox_backlog", "Events stored but not yet published to a destination (the "
    "sink's outbox drainers update it every few seconds).", ["destination"], registry=SINK)
SINK_FIELD_YIELD = Gauge(
    "voe_sink_field_yield", "Share of the fares the fare pipeline judged with the field valid, "
    "per backend, in the newest cycle the sink's yield watch checked (0 to 1).",
    ["backend", "field"], registry=SINK)
for _status in ACK_STATUSES:
    SINK_ACKS.labels(_status)
for _kind in UNAVAILABLE_KINDS:
    SINK_STORE_ERRORS.labels(_kind)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Render a registry in the text format, with its content type, for an HTTP /metrics."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def publish_counts(counter: Counter, counts: Mapping[str, int], published: dict[str, int]
                   ) -> None:
    """Add to ``counter`` (one label) what ``counts`` gained since the last call.

    ``published`` remembers what was added so far; hot loops count in plain dicts
    and publish them here every tick, which keeps metrics off the per-message path.
    """
    for label, count in counts.items():
        gained = count - published.get(label, 0)
        if gained > 0:
            counter.labels(label).inc(gained)
            published[label] = count


def publish_field_yields(found: Iterable[FieldYield]) -> None:
    """Set ``voe_sink_field_yield`` from the per-field yields of a cycle the watch checked."""
    for field_yield in found:
        SINK_FIELD_YIELD.labels(field_yield.backend, field_yield.field).set(field_yield.share)


def reject_reasons(counts: Mapping[str, int]) -> dict[str, int]:
    """Totals by reason of a ``RejectCounter``'s counts, keyed ``where:reason``."""
    reasons: dict[str, int] = {}
    for key, count in counts.items():
        reason = key.rsplit(":", 1)[-1]
        reasons[reason] = reasons.get(reason, 0) + count
    return reasons

