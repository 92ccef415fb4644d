"""Browser backends on Playwright under the fetch chain's policy (issue 17), with headless
Chromium and a real demo airline: a page of 200 sub-resources, a context per job (no
cookie crosses identities), a consent wall passed, a hung render ended within the deadline,
a blocked render retiring its identity, a killed Chromium restarted mid-run."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import time

import pytest
from conftest import http_get

from tests.cluster import Airline, Cluster, assert_stored_exactly_once, wait_for
from tests.test_identities import _loopback_aliases_work, proxies  # noqa: F401 (a fixture)
from voe.backends.base import BlockedError, ParseError, TransientError
from voe.demo.airline.fares import fares_for
from voe.demo.airline.faults import Faults
from voe.demo.backends.js import DemoJsBackend
from voe.model import SearchJob
from voe.worker.browser.client import HOST_GRACE

pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="headless Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the browser extra is not installed (pip install -e '.[browser]')"),
]


def job(destination: str = "REC", date: str = "2026-12-01") -> SearchJob:
    return SearchJob(id=f"demo-js:GRU-{destination}:{date}", cycle=1, attempt=1,
                     backend="demo-js", origin="GRU", destination=destination, date=date)


def gone_or_zombie(pid: int) -> bool:
    """Whether process ``pid`` has exited (reaped, or a zombie not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:  # reaped, even between two looks
        return True


def stats(url: str) -> dict:
    return json.loads(http_get(f"{url}/stats")[2])


def backend_for(url: str, make_settings, **settings) -> DemoJsBackend:
    values = {"voe_demo_airline_url": url, "voe_browser_pages": 1, "voe_fetch_deadline": 20}
    return DemoJsBackend(make_settings(**(values | settings)))


def test_a_page_with_200_sub_resources_renders_without_images_and_fonts(demo_airline,
                                                                        make_settings):
    url = demo_airline(js_assets=200)
    backend = backend_for(url, make_settings)
    try:
        answer = backend.search(job(), None)
    finally:
        backend.close()
    assert answer == fares_for("GRU", "REC", "2026-12-01")
    seen = stats(url)["js_page"]
    # 50 stylesheets and 50 scripts fetched; 99 images and the font blocked (VOE_BROWSER_BLOCK).
    assert seen["assets"] == {"css": 50, "js": 50} and seen["fares"] == 1


def test_a_consent_wall_is_passed_once_per_identity(demo_airline, make_settings):
    url = demo_airline(consent_wall_rate=1.0)
    backend = backend_for(url, make_settings, voe_identity_max_uses=10)
    try:
        first = backend.search(job(date="2026-12-01"), None)
        second = backend.search(job(date="2026-12-02"), None)
    finally:
        backend.close()
    assert first == fares_for("GRU", "REC", "2026-12-01")
    assert second == fares_for("GRU", "REC", "2026-12-02")
    seen = stats(url)
    # One consent click: the identity kept the consent cookie for its next job.
    assert seen["js_page"]["consents"] == 1 and seen["faults"] == {"consent_wall": 1}
    assert seen["requests"] == 3  # the wall, the page after consent, the second page


def _hangs(faults: Faults, destination: str) -> bool:
    query = f"origin=GRU&destination={destination}&date=2026-12-01"
    return faults.hits("slow", f"/js/search?{query}", 1)


def test_a_hung_render_fails_as_transient_within_the_deadline(demo_airline, make_settings):
    faults = Faults(seed=3, slow_rate=0.5, slow_ms=60_000)
    codes = ("REC", "SSA", "POA", "BSB", "CNF", "FOR", "SDU", "CWB")
    hung = next(code for code in codes if _hangs(faults, code))
    first, after = [code for code in codes if not _hangs(faults, code)][:2]
    url = demo_airline(seed=3, slow_rate=0.5, slow_ms=60_000)
    backend = backend_for(url, make_settings, voe_fetch_deadline=8)
    try:
        backend.search(job(first), None)  # the browser runs: the deadline is the render's own
        started = time.monotonic()
        with pytest.raises(TransientError) as failed:
            backend.search(job(hung), None)
        took = time.monotonic() - started
        answer = backend.search(job(after), None)
    finally:
        backend.close()
    assert took < 8 + 2, took
    assert "timeout" in str(failed.value).lower(), failed.value
    assert answer == fares_for("GRU", after, "2026-12-01")


def test_a_blocked_render_retires_its_identity_and_counts_as_throttling(demo_airline,
                                                                       make_settings):
    for faults in ({"block_rate": 1.0}, {"captcha_rate": 1.0}):
        url = demo_airline(**faults)
        backend = backend_for(url, make_settings)
        try:
            with pytest.raises(BlockedError) as blocked:
                backend.search(job(), None)
            session = backend._session
            assert session is not None
            blocks, _, retired = session.identities.counts()["direct"]
        finally:
            backend.close()
        assert blocks == 1 and retired == 1, (faults, session.identities.counts())
        assert session.throttled.total >= 1
        assert blocked.value.page and (b"captcha" in blocked.value.page.lower()
                                       or b"acesso negado" in blocked.value.page.lower())


def test_two_jobs_on_one_worker_never_see_each_others_cookies(tmp_path):
    airline = Airline(tmp_path, latency_ms=50)
    cluster = Cluster(tmp_path, airline.url, backend="demo-js")  # 12 jobs
    cluster.env.update({"VOE_BROWSER_PAGES": "2", "VOE_IDENTITY_MAX_USES": "1"})
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=4)
        assert cluster.wait_master(master, timeout=120) == 0
        seen = stats(airline.url)  # before the check below asks the airline's API
        assert_stored_exactly_once(cluster, airline)
    finally:
        cluster.stop()
        airline.stop()
    # Every page gave its visitor a cookie; with an identity per job none came back.
    assert seen["requests"] == 12 and seen["js_page"]["returning"] == 0


def test_a_killed_chromium_is_restarted_and_every_job_is_stored_once(tmp_path):
    airline = Airline(tmp_path, latency_ms=400)
    cluster = Cluster(tmp_path, airline.url, backend="demo-js")  # 12 jobs
    cluster.env.update({"VOE_BROWSER_PAGES": "2"})
    started = re.compile(r"browser started: \S+ \(pid (\d+), 2 pages\)")
    try:
        cluster.sink()
        master = cluster.master()
        worker = cluster.worker("w1", concurrency=4)
        wait_for(lambda: started.search(cluster.log("worker")), 60, "the browser to start")
        first = int(started.search(cluster.log("worker"))[1])
        wait_for(lambda: stats(airline.url)["in_flight"] > 0, 30, "a render under way")
        os.kill(first, signal.SIGKILL)
        assert cluster.wait_master(master, timeout=150) == 0
        assert_stored_exactly_once(cluster, airline)
        worker.stop()
        log = cluster.log("worker")
    finally:
        cluster.stop()
        airline.stop()
    pids = [int(pid) for pid in started.findall(log)]
    assert len(pids) >= 2 and pids[0] == first and first not in pids[1:], pids
    # The renders under way failed at once as transient (retried), not at their deadline.
    assert "transient: browser (browser): the browser exited during the render" in log


def test_a_hung_chromium_is_killed_and_the_next_render_gets_another(demo_airline,
                                                                    make_settings):
    url = demo_airline()
    backend = backend_for(url, make_settings, voe_fetch_deadline=5)
    try:
        backend.search(job("REC"), None)
        hung = backend.browser.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # Chromium stops answering, as a hung one does
        started = time.monotonic()
        with pytest.raises(TransientError, match="timeout"):
            backend.search(job("SSA"), None)
        assert time.monotonic() - started < 5 + 2
        # The render host cannot close the page in a hung browser: it kills it by its PID.
        wait_for(lambda: gone_or_zombie(hung), 30, "the hung Chromium to be killed")
        answer = backend.search(job("POA"), None)
        assert backend.browser.pid not in (None, hung)
    finally:
        backend.close()
    assert answer == fares_for("GRU", "POA", "2026-12-01")


def test_a_stuck_render_host_is_killed_and_the_next_render_gets_another(demo_airline,
                                                                       make_settings):
    url = demo_airline()
    backend = backend_for(url, make_settings, voe_fetch_deadline=3)
    try:
        backend.search(job("REC"), None)
        host = backend.browser.host
        assert host is not None
        os.kill(host.pid, signal.SIGSTOP)  # the render host itself stops answering
        started = time.monotonic()
        with pytest.raises(TransientError, match="did not answer"):
            backend.search(job("SSA"), None)
        assert time.monotonic() - started < 3 + HOST_GRACE + 2
        assert host.poll() is not None  # killed by its PID
        answer = backend.search(job("POA"), None)
        assert backend.browser.host is not host
    finally:
        backend.close()
    assert answer == fares_for("GRU", "POA", "2026-12-01")


def test_each_identity_renders_through_its_own_proxy(demo_airline, make_settings,
                                                     proxies):  # noqa: F811 (the fixture)
    if not _loopback_aliases_work():
        pytest.skip("this machine cannot bind 127.0.0.2 and 127.0.0.3")
    url = demo_airline()
    routes = proxies(["127.0.0.2", "127.0.0.3"])
    backend = backend_for(url, make_settings, voe_proxies=",".join(routes),
                          voe_identity_max_uses=1)
    try:
        answers = [backend.search(job(code), None) for code in ("REC", "SSA")]
        counts = backend._session.identities.counts()
    finally:
        backend.close()
    assert answers == [fares_for("GRU", code, "2026-12-01") for code in ("REC", "SSA")]
    clients = stats(url)["clients"]
    # One job through each proxy: the airline saw each page come from the proxy's address.
    assert {address: seen["requests"] for address, seen in clients.items()} == {
        "127.0.0.2": 1, "127.0.0.3": 1}
    assert sum(jobs for _, jobs, _ in counts.values()) == 2, counts


def test_a_throttled_render_waits_out_retry_after_and_is_counted(demo_airline, make_settings):
    url = demo_airline(throttle_rate=1.0, retry_after=1)
    backend = backend_for(url, make_settings, voe_http_retries=2)
    try:
        started = time.monotonic()
        with pytest.raises(BlockedError, match="HTTP 429"):
            backend.search(job(), None)
        took = time.monotonic() - started
        session = backend._session
    finally:
        backend.close()
    # Three renders (two retries), each after the airline's Retry-After of one second;
    # every 429 counted as throttling for the master, and the last one is a block.
    assert stats(url)["statuses"] == {"429": 3}
    assert took >= 2.0, took
    assert session.throttled.total >= 3
    assert session.identities.counts()["direct"][0] == 1


def test_types_without_an_extension_are_blocked_by_type(demo_airline, make_settings):
    url = demo_airline()
    backend = backend_for(url, make_settings, voe_browser_block="image,font,fetch",
                          voe_fetch_deadline=8)
    try:
        with pytest.raises(ParseError, match="did not render its fares"):
            backend.search(job(), None)  # the page's fetch of its fares never leaves
    finally:
        backend.close()
    seen = stats(url)["js_page"]
    assert seen["fares"] == 0 and seen["assets"] == {"css": 10, "js": 10}
