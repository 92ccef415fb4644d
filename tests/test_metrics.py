"""Prometheus metrics of a real run agree with the ledger and the store."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import SMALL_PLAN, Airline, Cluster, free_port, wait_for
from voe import metrics
from voe.web.auth import WebError
from voe.web.server import serve_metrics

MAX_ATTEMPTS = 2
FAILING_ROUTE = "GRU-REC"  # the airline answers 503 there: every attempt fails, transient


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of http://127.0.0.1:port/metrics, keyed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """The sample ``name{labels}``; a missing one fails the test with its name."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not exposed"
    return samples[key]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished cycle (some jobs done, some failed) whose master, sink and workers still run."""
    tmp = tmp_path_factory.mktemp("metrics")
    airline = Airline(tmp, fail_routes=(FAILING_ROUTE,))
    # A daily plan: the master stays up, and serves its metrics, after the cycle.
    plan = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"').format(
        max_attempts=MAX_ATTEMPTS, lease_seconds=20, days=2, backend="demo",
        airports='["GRU", "REC", "SSA"]')
    cluster = Cluster(tmp, airline.url, plan=plan)
    try:
        cluster.sink()
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        cluster.worker("w1")
        cluster.worker("w2")
        wait_for(lambda: (jobs := cluster.jobs())["pending"] == jobs["leased"] == 0
                 and jobs["done"] > 0, 120, "every job of the cycle to end done or failed")
        yield cluster
    finally:
        cluster.stop()
        airline.stop()


def test_sink_metrics_match_the_store_and_the_ledger(run):
    jobs = run.jobs()
    assert jobs == {"pending": 0, "leased": 0, "done": 10, "failed": 2}  # GRU-REC, two dates
    port = int(run.env["VOE_SINK_HTTP_PORT"])
    fares = run.status()["fares"]
    wait_for(lambda: value(scrape(port), "voe_sink_acks_total", status="done") == jobs["done"],
             30, "the sink's metrics to count every stored result")
    samples = scrape(port)
    assert fares > 0
    assert value(samples, "voe_sink_fares_stored_total") == fares == len(run.store_rows("fares"))
    transient = value(samples, "voe_sink_acks_total", status="transient")
    assert transient == jobs["failed"] * MAX_ATTEMPTS
    assert value(samples, "voe_sink_results_received_total") == jobs["done"] + transient
    assert value(samples, "voe_sink_acks_total", status="permanent") == 0
    assert value(samples, "voe_sink_acks_dropped_total") == 0
    assert value(samples, "voe_sink_commit_seconds_count") >= 1
    assert value(samples, "voe_sink_last_commit_timestamp_seconds") > 0
    assert value(samples, "process_cpu_seconds_total") > 0

    context = zmq.Context()
    try:
        garbage = run.curve_client(context.socket(zmq.PUSH), "sink")
        garbage.setsockopt(zmq.LINGER, 2000)
        garbage.connect(f"tcp://127.0.0.1:{run.env['VOE_RESULTS_PORT']}")
        garbage.send(b"\xc1\xc1 not msgpack")
        wait_for(lambda: scrape(port).get(("voe_sink_rejected_messages_total",
                                           frozenset({("reason", "undecodable")}))) == 1,
                 30, "the sink to count the rejected frame")
        garbage.close(0)
    finally:
        context.destroy(linger=0)


def test_master_metrics_match_the_ledger(run):
    jobs = run.jobs()
    port = int(run.env["VOE_HTTP_PORT"])  # served by the master's HTTP server
    wait_for(lambda: value(scrape(port), "voe_master_jobs_total", outcome="done") == jobs["done"],
             30, "the master's metrics to count every done job")
    samples = scrape(port)
    done, failed = jobs["done"], jobs["failed"]
    assert value(samples, "voe_master_jobs_total", outcome="failed") == failed > 0
    assert value(samples, "voe_master_jobs_total", outcome="retried") == failed * (MAX_ATTEMPTS - 1)
    assert value(samples, "voe_master_jobs_total", outcome="leased") == done + failed * MAX_ATTEMPTS
    assert value(samples, "voe_master_jobs_total", outcome="expired") == 0
    assert value(samples, "voe_master_job_duration_seconds_count") == done
    assert value(samples, "voe_master_job_duration_seconds_bucket", le="+Inf") == done
    assert value(samples, "voe_master_jobs_leased") == 0
    assert value(samples, "voe_master_jobs_ready") == 0
    assert value(samples, "voe_master_workers") == 2
    assert value(samples, "voe_master_ledger_flush_seconds_count") >= 1


def test_a_busy_metrics_port_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = Cluster(tmp_path, "http://127.0.0.1:9")
        port = taken.getsockname()[1]
        env = cluster.env | {"VOE_SINK_HTTP_PORT": str(port)}
        result = subprocess.run([sys.executable, "-m", "voe", "sink", "--no-console"], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"127.0.0.1:{port} (VOE_SINK_HTTP_PORT) is in use" in result.stderr


def test_counts_are_published_as_deltas():
    published: dict[str, int] = {}
    def expired() -> float:
        return metrics.MASTER.get_sample_value("voe_master_jobs_total", {"outcome": "expired"})

    before = expired()
    metrics.publish_counts(metrics.MASTER_JOBS, {"expired": 3}, published)
    metrics.publish_counts(metrics.MASTER_JOBS, {"expired": 5}, published)
    metrics.publish_counts(metrics.MASTER_JOBS, {"expired": 5}, published)
    assert expired() - before == 5
    assert metrics.reject_reasons({"master jobs port:bad-schema": 2, "master:bad-schema": 1,
                                   "master:oversized": 4}) == {"bad-schema": 3, "oversized": 4}
    text, content_type = metrics.exposition(metrics.MASTER)
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text.decode())}
    assert {"voe_master_jobs", "voe_master_job_duration_seconds", "voe_master_workers"} <= names


def test_the_metrics_server_keeps_the_master_http_rules():
    port = free_port()
    server = serve_metrics(metrics.SINK, "127.0.0.1", port, token="s3cret")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert b"voe_sink_fares_stored_total" in answer.read()
        with pytest.raises(urllib.error.HTTPError) as elsewhere:  # nothing but /metrics
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/api/status",
                headers={"Authorization": "Bearer s3cret"}), timeout=10)
        assert elsewhere.value.code == 404
    finally:
        server.stop()
    assert serve_metrics(metrics.SINK, "127.0.0.1", 0, "") is None  # 0 turns it off
    with pytest.raises(WebError, match="VOE_HTTP_TOKEN.*VOE_SINK_HTTP_PORT=0"):
        serve_metrics(metrics.SINK, "0.0.0.0", port, "")


def test_the_counted_histogram_reads_as_prometheus_clients_own():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    theirs = Histogram("voe_test_theirs_seconds", "Time.", buckets=metrics.JOB_DURATION_BUCKETS,
                       registry=registry)
    ours = metrics.CountedHistogram("voe_test_ours_seconds", "Time.",
                                    metrics.JOB_DURATION_BUCKETS, registry)
    for value in (0.0, 0.05, 0.07, 1, 2.6, 600, 601, 1e9):  # on, under and over the bounds
        theirs.observe(value)
        ours.observe(value)
    text = generate_latest(registry).decode().splitlines()
    read = {kind: sorted(line.split("_seconds", 1)[1] for line in text
                         if line.startswith(f"voe_test_{kind}_seconds") and "_created" not in line)
            for kind in ("theirs", "ours")}
    assert read["ours"] == read["theirs"] and len(read["ours"]) == 16
