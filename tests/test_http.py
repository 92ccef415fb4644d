"""The HTTP policy (voe/http.py) against the real demo airline and small loopback servers:
retries with backoff, Retry-After, throttling counts, per-host limits, proxy, User-Agent."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import REPO, http_get

from voe.backends.base import BlockedError, ParseError, TransientError
from voe.backends.demo import DemoBackend
from voe.backends.demo_api import DemoApiBackend
from voe.demoairline.fares import fares_for
from voe.fetch.deadline import BodyTooLarge
from voe.http import HostLimits, ThrottleCounter, host_key, new_session
from voe.model import SearchJob


def job(date: str = "2026-12-01", destination: str = "REC") -> SearchJob:
    return SearchJob(id=f"demo:GRU-{destination}:{date}", cycle=1, attempt=1, backend="demo",
                     origin="GRU", destination=destination, date=date)


def stats(url: str) -> dict:
    return json.loads(http_get(f"{url}/stats")[2])


@pytest.fixture
def policy(make_settings):
    """Factory: (backend, session) for an airline URL with quick retries."""
    sessions = []

    def build(url: str, backend: type = DemoBackend, **overrides: object):
        values = {"voe_demo_airline_url": url, "voe_http_retries": 3,
                  "voe_http_backoff": 0.01} | overrides
        settings = make_settings(**values)
        session = new_session(settings)
        sessions.append(session)
        return backend(settings), session

    yield build
    for session in sessions:
        session.close()


DATES = [f"2026-12-{day:02d}" for day in range(1, 11)]


@pytest.mark.parametrize(("faults", "count"), [
    ({"error_rate": 0.5}, "error"),
    ({"reset_rate": 0.5}, "reset"),
    ({"throttle_rate": 0.3, "retry_after": 0}, "throttle"),
])
def test_transient_answers_are_retried_until_the_fares_come(demo_airline, policy, faults,
                                                            count):
    url = demo_airline(seed=11, **faults)
    for backend_class in (DemoBackend, DemoApiBackend):
        backend, session = policy(url, backend_class, voe_http_retries=5)
        for date in DATES:
            assert backend.search(job(date), session) == fares_for("GRU", "REC", date)
    assert stats(url)["faults"][count] >= 3


def test_read_timeouts_are_retried(demo_airline, policy):
    url = demo_airline(seed=2, slow_rate=0.5, slow_ms=1000)
    backend, session = policy(url, voe_http_timeout=0.3)
    for date in DATES[:6]:
        assert backend.search(job(date), session) == fares_for("GRU", "REC", date)
    assert stats(url)["faults"]["slow"] >= 1


def test_a_request_without_a_timeout_gets_the_settings_timeouts(demo_airline, make_settings):
    url = demo_airline(slow_rate=1.0, slow_ms=1000)
    search = f"{url}/api/search?origin=GRU&destination=REC&date=2026-12-01"
    session = new_session(make_settings(voe_http_timeout=0.3, voe_http_retries=0))
    started = time.monotonic()
    # The backend gave no timeout: VOE_HTTP_TIMEOUT is the read timeout.
    with pytest.raises(requests.RequestException, match=r"Read timed out. \(read timeout=0.3\)"):
        session.get(search)
    assert time.monotonic() - started < 0.9
    assert session.get(search, timeout=5).status_code == 200  # one it gives is kept
    session.close()
    session = new_session(make_settings(  # without the middleware: the deadline's alone
        voe_http_timeout=0.3, voe_http_retries=0,
        voe_fetch_middlewares="voe.fetch.timeouts:Timeouts=none"))
    assert session.get(search).status_code == 200
    session.close()


def test_a_request_fails_after_its_retries_with_backoff(demo_airline, policy):
    url = demo_airline(error_rate=1.0)
    backend, session = policy(url, voe_http_backoff=0.05)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"internal error \(injected\) \(HTTP 50[023]\)"):
        backend.search(job(), session)
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2  # doubled after each failure
    assert stats(url)["requests"] == 4  # the try and 3 retries


def test_an_airline_down_fails_after_retries_as_transient(policy):
    from conftest import free_port

    backend, session = policy(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="unreachable"):
        backend.search(job(), session)


def test_429_honours_retry_after_and_counts_as_throttling(demo_airline, policy):
    url = demo_airline(throttle_rate=1.0, retry_after=1)
    backend, session = policy(url, voe_http_retries=1)
    started = time.monotonic()
    with session.throttled.counting_for("demo"), pytest.raises(TransientError, match="429"):
        backend.search(job(), session)
    assert time.monotonic() - started >= 1.0
    assert stats(url)["statuses"] == {"429": 2}
    assert session.throttled.take() == {"demo": 2}
    assert session.throttled.take() == {}
    assert session.throttled.total == 2
    started = time.monotonic()
    with pytest.raises(TransientError):  # outside counting_for: counted by host
        backend.search(job(), session)
    # The last 429 held the host back for its Retry-After too: 1 s before, 1 s between tries.
    assert time.monotonic() - started >= 2.0
    assert session.throttled.take() == {host_key(url): 2}


def test_parse_faults_end_as_parse_errors_and_sloppy_pages_still_read(demo_airline, policy):
    backend, session = policy(demo_airline(truncate_rate=1.0))
    with pytest.raises(ParseError, match="cut short|no results table|no flight count|row"):
        backend.search(job(), session)
    api, session = policy(demo_airline(truncate_rate=1.0), DemoApiBackend)
    with pytest.raises(ParseError, match="not JSON"):
        api.search(job(), session)
    backend, session = policy(demo_airline(layout="new"))
    with pytest.raises(ParseError, match="no results table") as caught:
        backend.search(job(), session)
    assert b'class="offer"' in caught.value.page
    backend, session = policy(demo_airline(malformed_rate=1.0))
    for date in DATES[:3]:
        assert backend.search(job(date), session) == fares_for("GRU", "REC", date)


def test_a_per_client_rate_limit_is_waited_out(demo_airline, policy):
    url = demo_airline(rate_limit=4)
    backend, session = policy(url, voe_http_retries=5)
    started = time.monotonic()
    for date in DATES[:8]:
        assert backend.search(job(date), session) == fares_for("GRU", "REC", date)
    assert time.monotonic() - started >= 0.9  # 8 searches at 4/s after a burst of 4
    assert stats(url)["faults"]["rate_limit"] >= 1


def test_host_pause_holds_back_new_requests() -> None:
    hosts = HostLimits(limit=0)
    hosts.pause("http://a:80", 0.3)
    hosts.pause("http://a:80", 0.1)  # a shorter pause does not cut the longer one
    started = time.monotonic()
    with hosts.slot("http://b:80"):
        assert time.monotonic() - started < 0.1  # other hosts are not held back
    with hosts.slot("http://a:80"):
        assert time.monotonic() - started >= 0.3


def test_throttle_counter_labels_per_greenlet_and_resets() -> None:
    import gevent

    counter = ThrottleCounter()

    def search(label: str | None, count: int) -> None:
        if label is None:
            for _ in range(count):
                counter.add("http://h:80")
            return
        with counter.counting_for(label):
            for _ in range(count):
                counter.add("http://h:80")
                gevent.sleep(0)

    gevent.joinall([gevent.spawn(search, "demo", 3), gevent.spawn(search, "demo-api", 2),
                    gevent.spawn(search, None, 1)])
    assert counter.take() == {"demo": 3, "demo-api": 2, "http://h:80": 1}
    assert counter.take() == {} and counter.total == 6


HOST_LIMIT = """
from gevent import monkey; monkey.patch_all()
import json, sys, gevent
from voe.http import new_session
from voe.settings import load

url = sys.argv[1]
http = new_session(load("/nonexistent/.env"))
def get(day):
    answer = http.get(f"{url}/api/search?origin=GRU&destination=REC&date=2026-12-{day:02d}")
    return answer.status_code
greenlets = [gevent.spawn(get, day) for day in range(1, 21)]
gevent.joinall(greenlets, timeout=60)
print(json.dumps([g.value for g in greenlets]))
"""


def test_per_host_concurrency_holds_under_gevent(demo_airline):
    url = demo_airline(latency_ms=100)
    env = {"VOE_HOST_CONCURRENCY": "3", "VOE_CONCURRENCY": "20", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", HOST_LIMIT, url], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == [200] * 20
    seen = stats(url)
    assert seen["max_in_flight"] == 3, seen
    assert seen["requests"] == 20


@dataclass
class Recorder:
    """A loopback HTTP server that records what it gets and answers from ``replies``."""

    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    relay: bool = False


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server_state = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
            server_state.requests.append((self.path, self.headers.get("User-Agent", "")))
            if server_state.relay:  # act as a forward proxy: fetch the absolute URL
                status, headers, body = http_get(self.path)
                headers = {"Content-Type": headers.get("Content-Type", "text/html")}
            else:
                status, headers, body = server_state.replies.pop(0)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server_state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_proxy_and_user_agent_come_from_settings(airline_url, recorder, policy):
    recorder.relay = True
    backend, session = policy(airline_url, voe_http_proxy=recorder.url,
                              voe_user_agent="FareBot/2.0 (+https://example.invalid/bot)")
    assert backend.search(job(), session) == fares_for("GRU", "REC", "2026-12-01")
    ((path, agent),) = recorder.requests
    assert path.startswith(f"{airline_url}/search?")  # an absolute URL: it went via the proxy
    assert agent == "FareBot/2.0 (+https://example.invalid/bot)"


def test_odd_retry_after_and_blocks(recorder, policy):
    backend, session = policy(recorder.url, voe_http_retries=1)
    error = json.dumps({"error": "blocked"}).encode()
    recorder.replies = [(429, {"Retry-After": "soon"}, error), (429, {"Retry-After": "1e9"}, error)]
    started = time.monotonic()
    with pytest.raises(TransientError, match="blocked"):  # not a crash, not permanent
        backend.search(job(), session)
    assert time.monotonic() - started < 1.0  # an unreadable Retry-After falls back to backoff
    recorder.replies = [(403, {}, error)]
    with pytest.raises(BlockedError, match=r"blocked by the airline \(HTTP 403\): blocked"):
        backend.search(job(), session)  # retried by the master, not failed at once
    recorder.replies = [(503, {}, error), (503, {}, error)]
    with pytest.raises(TransientError):
        backend.search(job(), session)
    # 429s and the 403 count as throttling; a 503 without Retry-After is just an error.
    assert session.throttled.take() == {host_key(recorder.url): 3}


def test_a_compressed_body_is_capped_by_what_it_decodes_to(recorder, make_settings):
    page = b"<p>" + b"voos " * 200_000 + b"</p>"  # 1 MB, a few KB once gzipped
    recorder.replies = [(200, {"Content-Encoding": "gzip"}, gzip.compress(page))] * 2
    sessions = [new_session(make_settings(voe_fetch_max_bytes=size))
                for size in (len(page), len(page) - 1)]
    assert sessions[0].get(recorder.url, timeout=5).content == page
    with pytest.raises(BodyTooLarge, match=f"more than {len(page) - 1} bytes"):
        sessions[1].get(recorder.url, timeout=5)
    for session in sessions:
        session.close()
