"""The HTTP policy (voe/worker/http.py) against the real demo airline and small loopback servers:
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
from voe.demo.airline.fares import fares_for
from voe.demo.backends.api import DemoApiBackend
from voe.demo.backends.page import DemoBackend
from voe.model import SearchJob
from voe.worker.fetch.chain import FetchRequest, host_key
from voe.worker.fetch.deadline import BodyTooLarge, DeadlinePassed
from voe.worker.fetch.hosts import HostLimits
from voe.worker.fetch.retry import never_sent
from voe.worker.fetch.throttle import ThrottleCounter
from voe.worker.http import new_session


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
        voe_fetch_middlewares="voe.worker.fetch.timeouts:Timeouts=none"))
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
    first_ended = time.monotonic()  # just after the last 429, whose Retry-After holds the host
    assert first_ended - started >= 1.0
    assert stats(url)["statuses"] == {"429": 2}
    assert session.throttled.take() == {"demo": 2}
    assert session.throttled.take() == {}
    assert session.throttled.total == 2
    with pytest.raises(TransientError):  # outside counting_for: counted by host
        backend.search(job(), session)
    # The last 429 held the host back for its Retry-After too: 1 s before, 1 s between tries
    # (without the hold, 1 s in all; the margin is the moments between that 429's arrival
    # and first_ended).
    assert time.monotonic() - first_ended >= 1.9
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


def test_retries_are_a_middleware_a_user_can_remove(demo_airline, policy):
    url = demo_airline(error_rate=1.0)
    backend, session = policy(url, voe_fetch_middlewares="voe.worker.fetch.retry:Retries=none")
    with pytest.raises(TransientError, match=r"\(HTTP 50[023]\)"):
        backend.search(job(), session)
    assert stats(url)["requests"] == 1


def test_host_pause_holds_back_new_requests() -> None:
    hosts = HostLimits(limit=0)
    hosts.pause("http://a:80", 0.3)
    hosts.pause("http://a:80", 0.1)  # a shorter pause does not cut the longer one
    started = time.monotonic()
    with hosts.slot("http://b:80"):
        assert time.monotonic() - started < 0.1  # other hosts are not held back
    with hosts.slot("http://a:80"):
        assert time.monotonic() - started >= 0.3
    hosts.pause("http://a:80", 5)  # a pause past the deadline: given up at once
    assert not hosts.enter("http://a:80", deadline=time.monotonic() + 1)
    assert time.monotonic() - started < 1.0 and hosts.in_flight("http://a:80") == 0


def test_a_slot_wait_ends_at_the_deadline() -> None:
    hosts = HostLimits(limit=1)
    assert hosts.enter("http://a:80")
    started = time.monotonic()
    assert not hosts.enter("http://a:80", deadline=started + 0.2)
    assert 0.15 <= time.monotonic() - started < 1.0
    hosts.leave("http://a:80")
    assert hosts.in_flight("http://a:80") == 0 and hosts.enter("http://a:80", deadline=started)


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
from voe.worker.http import new_session
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
    cookies: list[str] = field(default_factory=list)  # each request's Cookie header


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server_state = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
            server_state.requests.append((self.path, self.headers.get("User-Agent", "")))
            server_state.cookies.append(self.headers.get("Cookie", ""))
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

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.do_GET()

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


def test_a_retry_never_waits_past_the_deadline(recorder, policy):
    _, session = policy(recorder.url, voe_http_retries=3, voe_http_backoff=2.0,
                        voe_fetch_deadline=1.5)
    started = time.monotonic()
    recorder.replies = [(503, {}, b"busy")]
    answer = session.get(recorder.url, timeout=5)  # a backoff of 2 s would pass the deadline
    assert answer.status_code == 503 and answer.content == b"busy"  # the last answer
    from conftest import free_port

    with pytest.raises(requests.ConnectionError):  # the last error, not "deadline passed"
        session.get(f"http://127.0.0.1:{free_port()}/", timeout=5)
    recorder.replies = [(429, {"Retry-After": "5"}, b"slow down")]
    with pytest.raises(BlockedError, match="HTTP 429"):  # a 429 still there is a block
        session.get(recorder.url, timeout=5)
    assert time.monotonic() - started < 1.0 and len(recorder.requests) == 2
    with pytest.raises(DeadlinePassed):  # the host's 5 s pause would outlast the deadline
        session.get(recorder.url, timeout=5)
    assert time.monotonic() - started < 1.0 and len(recorder.requests) == 2


def test_a_request_that_reached_the_airline_is_sent_again_only_if_idempotent(recorder,
                                                                              policy):
    _, session = policy(recorder.url, voe_http_retries=2, voe_http_backoff=0.2)
    recorder.replies = [(503, {}, b"busy"), (200, {}, b"fares")]
    started = time.monotonic()
    assert session.post(recorder.url, data=b"q=GRU", timeout=5).status_code == 503
    assert time.monotonic() - started < 0.2 and len(recorder.requests) == 1  # not sent twice
    assert session.get(recorder.url, timeout=5).content == b"fares"
    from conftest import free_port

    started = time.monotonic()
    with pytest.raises(requests.ConnectionError) as refused:  # never sent: tried again
        session.post(f"http://127.0.0.1:{free_port()}/", data=b"q=GRU", timeout=5)
    assert never_sent(refused.value)
    assert time.monotonic() - started >= 0.2 + 0.4  # two retries, their backoff doubled


class Interrupted(BaseException):
    """What may cut a fetch short that is no ``Exception``, as ``gevent.Timeout`` does."""


class Interrupting:
    """Nearest the network: cuts short the fetch of ``/interrupt`` once its answer is back."""

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        if request.request.url.endswith("/interrupt"):
            raise Interrupted
        return response


class Failing:
    """Between the host limit and the network: fails ``/fail`` before it leaves."""

    def process_request(self, request: FetchRequest) -> None:
        if request.request.url.endswith("/fail"):
            raise RuntimeError("a middleware failed")


def test_a_redirect_files_the_cookies_it_sets_and_the_next_request_sends_them(
        recorder, make_settings):
    session = new_session(make_settings(voe_http_retries=0))
    recorder.replies = [(302, {"Location": "/b", "Set-Cookie": "seen=1; Path=/"}, b""),
                        (200, {}, b"ok")]
    response = session.get(f"{recorder.url}/a", timeout=5)
    assert (response.content, [r.status_code for r in response.history]) == (b"ok", [302])
    assert response.history[0].cookies.get("seen") == "1"
    assert not response.cookies  # the last answer set none
    assert [path for path, _ in recorder.requests] == ["/a", "/b"]
    assert recorder.cookies == ["", "seen=1"]
    session.close()


def test_a_host_slot_is_given_back_on_every_path(recorder, demo_airline, make_settings):
    from conftest import free_port

    trickled = demo_airline(trickle_rate=1.0)
    session = new_session(make_settings(
        voe_host_concurrency=1, voe_http_retries=1, voe_http_backoff=0.01,
        voe_fetch_deadline=1.5, voe_fetch_max_bytes=10_000,
        voe_fetch_middlewares=f"{__name__}:Failing=850,{__name__}:Interrupting=990"))
    site, busy, fine = recorder.url, (503, {}, b"busy"), (200, {}, b"ok")
    paths = [  # (URL, the airline's answers, what the fetch ends with)
        (site, [busy, busy], None),  # retried, then the last answer
        (site, [(403, {}, b"no")], BlockedError),
        (site, [(200, {}, b"x" * 20_000)], BodyTooLarge),
        (f"{site}/interrupt", [fine], Interrupted),
        (f"{site}/fail", [], RuntimeError),
        (f"{trickled}/search?origin=GRU&destination=REC&date=2026-12-01", [], DeadlinePassed),
        (f"http://127.0.0.1:{free_port()}/", [], requests.ConnectionError),
    ]
    for url, answers, ending in paths:
        recorder.replies = list(answers)
        if ending is None:
            assert session.get(url, timeout=5).status_code == 503
        else:
            with pytest.raises(ending):
                session.get(url, timeout=5)
        assert session.hosts.in_flight(host_key(url)) == 0, (url, ending)
        assert recorder.replies == []
    recorder.replies = [fine]  # one slot per host: a leaked one would hold this past its deadline
    assert session.get(site, timeout=5).content == b"ok"
    session.close()


HOST_SLOT_CUT = """
from gevent import monkey; monkey.patch_all()
import json, sys, gevent
from voe.worker.fetch.chain import host_key
from voe.worker.http import new_session
from voe.settings import load

url = sys.argv[1]
http = new_session(load("/nonexistent/.env"))
search = f"{url}/api/search?origin=GRU&destination=REC&date=2026-12-01"
def get(cut):
    try:
        with gevent.Timeout(cut):
            return http.get(search).status_code
    except gevent.Timeout:
        return "cut"
first = gevent.spawn(get, 10)  # holds the host's one slot for 0.5 s
gevent.sleep(0.05)
waiting = gevent.spawn(get, 0.2)  # cut while waiting for the slot
gevent.joinall([first, waiting])
sent = gevent.spawn(get, 0.2)  # cut while its answer is on the way
sent.join()
held = http.hosts.in_flight(host_key(url))
last = gevent.spawn(get, 10)  # a leaked slot would hold it
last.join(timeout=15)
print(json.dumps([first.value, waiting.value, sent.value, held, last.value]))
"""


def test_a_fetch_cut_short_under_gevent_gives_its_slot_back(demo_airline):
    url = demo_airline(latency_ms=500)
    env = {"VOE_HOST_CONCURRENCY": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", HOST_SLOT_CUT, url], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == [200, "cut", "cut", 0, 200]


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
