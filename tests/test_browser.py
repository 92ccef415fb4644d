"""The demo-js page, whose fares exist only once its script runs, collected through headless
Chromium (Debian's `chromium`, started and stopped by PID)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil

import pytest
from conftest import http_get

from tests.cluster import Airline, Cluster
from voe.backends.base import ParseError, PermanentError
from voe.demo.airline.fares import fares_for
from voe.demo.backends.js import DemoJsBackend
from voe.demo.backends.parse import parse_results
from voe.model import SearchJob

pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="headless Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the browser extra is not installed (pip install -e '.[browser]')"),
]

QUERY = "origin=GRU&destination=REC&date=2026-12-01"


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_js_page_holds_no_fares_until_its_script_runs(airline_url):
    status, headers, page = http_get(f"{airline_url}/js/search?{QUERY}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<script" in page and b"fares-data" in page
    with pytest.raises(ParseError, match="no results table"):
        parse_results(page)


def test_the_backend_renders_fares_and_maps_errors(airline_url, make_settings):
    backend = DemoJsBackend(make_settings(voe_demo_airline_url=airline_url, voe_http_timeout=15,
                                          voe_browser_pages=1))
    try:
        job = SearchJob(id="demo-js:GRU-REC:2026-12-01", cycle=1, attempt=1, backend="demo-js",
                        origin="GRU", destination="REC", date="2026-12-01")
        assert backend.search(job, None) == fares_for("GRU", "REC", "2026-12-01")
        unknown = SearchJob(id="demo-js:GRU-XXX:2026-12-01", cycle=1, attempt=1,
                            backend="demo-js", origin="GRU", destination="XXX", date="2026-12-01")
        with pytest.raises(PermanentError, match=r"unknown airport XXX \(HTTP 404\)"):
            backend.search(unknown, None)
        pid = backend.browser.pid
        assert pid is not None and not pid_gone(pid)
    finally:
        backend.close()
    assert pid_gone(pid) and backend.browser.pid is None


def test_a_worker_collects_the_js_page_through_chromium(tmp_path):
    airline = Airline(tmp_path, latency_ms=50)
    cluster = Cluster(tmp_path, airline.url, backend="demo-js")  # 12 jobs
    cluster.env.update({"VOE_BROWSER_PAGES": "2", "VOE_HTTP_TIMEOUT": "20"})
    try:
        cluster.sink()
        master = cluster.master()
        worker = cluster.worker("w1", concurrency=4)
        assert cluster.wait_master(master, timeout=90) == 0
        jobs = cluster.ledger_rows()
        fares = cluster.store_rows("fares")
        worker.stop()
        log = cluster.log("worker")
        stats = json.loads(http_get(f"{airline.url}/stats")[2])
    finally:
        cluster.stop()
        airline.stop()
    assert [job["state"] for job in jobs] == ["done"] * 12, [j["last_error"] for j in jobs]
    by_job: dict[str, list] = {}
    for fare in fares:
        by_job.setdefault(fare["job_id"], []).append(
            (fare["flight"], fare["departure"], fare["arrival"], fare["price"], fare["currency"]))
    for job in jobs:
        expected = [tuple(fare) for fare in fares_for(job["origin"], job["destination"],
                                                      job["date"])]
        assert sorted(by_job[job["id"]]) == sorted(expected), job["id"]
    started = re.search(r"browser started: \S+ \(pid (\d+), 2 pages\)", log)
    assert started, log
    assert f"browser stopped (pid {started[1]})" in log
    assert pid_gone(int(started[1]))
    assert stats["requests"] == 12 and stats["max_in_flight"] <= 2  # the pool of 2 pages
