"""A backend's own exception is a transient failure with its traceback logged; only a backend
that cannot be found fails its job for good."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster
from voe.backends import register
from voe.demo.airline.fares import fares_for
from voe.model import PERMANENT, TRANSIENT, SearchJob

KEYERROR_BACKEND = "example-keyerror"  # tests/plugins/voe_example_backend/.../buggy.py
MAX_ATTEMPTS = 2


def test_a_backends_keyerror_is_retried_and_its_traceback_logged(tmp_path: Path, airline_url,
                                                                 example_backend) -> None:
    cluster = Cluster(tmp_path, airline_url, backend=KEYERROR_BACKEND,
                      max_attempts=MAX_ATTEMPTS, days=1, airports='["GRU", "REC"]')
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=2)
        assert cluster.wait_master(master, timeout=60) == 0
    finally:
        cluster.stop()
    jobs = cluster.ledger_rows()
    assert len(jobs) == 2
    # Failed once (the bug), retried, done on the second attempt: not failed at once.
    assert [(job["state"], job["attempt"]) for job in jobs] == [("done", MAX_ATTEMPTS)] * 2, jobs
    stored = {}
    for fare in cluster.store_rows("fares"):
        stored.setdefault(fare["job_id"], []).append(
            (fare["flight"], fare["departure"], fare["arrival"], fare["price"], fare["currency"]))
    for job in jobs:
        expected = fares_for(job["origin"], job["destination"], job["date"])
        assert sorted(stored[job["id"]]) == sorted(tuple(fare) for fare in expected)
    log = cluster.log("worker")
    assert log.count("Traceback (most recent call last)") == 2, log
    for job in jobs:
        route = f"{job['origin']}-{job['destination']}"
        assert f"KeyError: '{route}'" in log
        assert f"job {job['id']} attempt 1: {TRANSIENT}: KeyError: '{route}'" in log
    assert f": {PERMANENT}:" not in log


class IndexErrorAirline:
    """A backend whose parser runs off the end of a list."""

    def __init__(self, settings: object) -> None:
        self.rows: list[str] = []

    def search(self, job: SearchJob, http: object) -> list:
        """Raise ``IndexError``, as a parser that expected a row does."""
        return [self.rows[0]]


@pytest.fixture
def worker(make_settings, tmp_path: Path, airline_url: str) -> Iterator:
    """A real worker, not running its loops: its ``search`` is called directly."""
    from voe.worker.loop import Worker

    settings = make_settings(voe_demo_airline_url=airline_url, voe_data_dir=str(tmp_path),
                             voe_curve="off", voe_http_retries=0)
    built = Worker(settings, concurrency=1, name="test-worker")
    yield built
    built.dealer.close(0)
    built.push.close(0)
    built.http.close()


def job(backend: str) -> SearchJob:
    return SearchJob(id=f"{backend}:GRU-REC:2026-12-01", cycle=1, attempt=1, backend=backend,
                     origin="GRU", destination="REC", date="2026-12-01")


def test_only_an_unknown_backend_is_permanent(worker, caplog) -> None:
    register("test-indexerror", IndexErrorAirline)
    with caplog.at_level(logging.INFO, logger="voe.worker"):
        crashed = worker.search(job("test-indexerror"))
        unknown = worker.search(job("no-such-backend"))
    assert crashed.status == TRANSIENT
    assert crashed.error == "IndexError: list index out of range"
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1 and tracebacks[0].exc_info[0] is IndexError
    assert unknown.status == PERMANENT
    assert unknown.error.startswith("unknown backend 'no-such-backend'; available: ")
