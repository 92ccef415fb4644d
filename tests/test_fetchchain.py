"""The fetch chain (voe/worker/fetch/) against the real demo airline, through a real
worker's session:
a deadline per fetch and a body cap while it streams, blocks as their own outcome, the
middleware order (built-ins, entry points, VOE_FETCH_MIDDLEWARES), and a whole cluster
against an airline that soft-blocks a share of its searches."""

from __future__ import annotations

import datetime
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO

from tests.cluster import Airline, Cluster, wait_for
from voe import protocol
from voe.backends.base import BlockedError
from voe.demo.airline.fares import fares_for
from voe.demo.airline.faults import Faults
from voe.model import BLOCKED, OK, TRANSIENT, Result, SearchJob
from voe.worker.fetch import FetchRequest, chain, middleware_classes
from voe.worker.http import new_session
from voe.worker.loop import Worker

MIB = 1 << 20


def job(backend: str = "demo", date: str = "2026-12-01") -> SearchJob:
    return SearchJob(id=f"{backend}:GRU-REC:{date}", cycle=1, attempt=1, backend=backend,
                     origin="GRU", destination="REC", date=date)


def airline_stats(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/stats", timeout=5).json()


def wait_streams_closed(url: str, timeout: float = 10.0) -> None:
    """The airline stops sending a trickled or endless body once its client has left."""
    deadline = time.monotonic() + timeout
    while airline_stats(url)["streaming"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert airline_stats(url)["streaming"] == 0


@pytest.fixture
def worker(make_settings, tmp_path) -> Iterator[Callable[..., Worker]]:
    """Factory: a real ``Worker`` (not running its loops) whose ``search`` runs one job, with
    its session, backends and kept pages, as it does for a job from the master."""
    made: list[Worker] = []

    def build(airline_url: str, **overrides: Any) -> Worker:
        values = {"voe_demo_airline_url": airline_url, "voe_curve": "off",
                  "voe_data_dir": tmp_path, "voe_http_retries": 1,
                  "voe_http_backoff": 0.01} | overrides
        made.append(Worker(make_settings(**values), concurrency=4, name="test-worker"))
        return made[-1]

    yield build
    for built in made:
        built.http.close()
        built.dealer.close(0)
        built.push.close(0)


def peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_kib(field: str, pid: int | str = "self") -> int:
    """A memory figure of a process (this one by default) from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# Deadline and body cap ----------------------------------------------------------------------

def test_a_trickled_body_fails_as_transient_within_the_deadline(demo_airline, worker):
    url = demo_airline(trickle_rate=1.0)
    searcher = worker(url, voe_fetch_deadline=1.5, voe_http_timeout=10)
    started = time.monotonic()
    result = searcher.search(job())
    elapsed = time.monotonic() - started
    assert result.status == TRANSIENT and result.fares == ()
    assert "no complete answer within 1.5s (VOE_FETCH_DEADLINE)" in result.error
    assert 1.4 <= elapsed < 1.5 + 0.5, elapsed  # one byte a second could not hold it longer
    assert airline_stats(url)["faults"] == {"trickle": 1}  # abandoned, not retried inside
    wait_streams_closed(url)


GEVENT_TRICKLE = """
from gevent import monkey; monkey.patch_all()
import json, sys, time, gevent
from voe.demo.backends.page import DemoBackend
from voe.worker.http import new_session
from voe.model import SearchJob
from voe.settings import load

settings = load("/nonexistent/.env")
http, backend = new_session(settings), DemoBackend(settings)
def search(day):
    job = SearchJob(f"demo:GRU-REC:2026-12-{day:02d}", 1, 1, "demo", "GRU", "REC",
                    f"2026-12-{day:02d}")
    started = time.monotonic()
    try:
        with http.fetching_for("demo", backend):
            backend.search(job, http)
    except Exception as error:
        return type(error).__name__, getattr(error, "kind", ""), time.monotonic() - started
    return "ok", "", time.monotonic() - started
greenlets = [gevent.spawn(search, day) for day in range(1, 9)]
gevent.joinall(greenlets, timeout=60)
print(json.dumps([g.value for g in greenlets]))
"""


def test_the_deadline_holds_under_gevent_for_every_greenlet(demo_airline):
    url = demo_airline(trickle_rate=1.0)
    env = {"VOE_DEMO_AIRLINE_URL": url, "VOE_FETCH_DEADLINE": "1.5", "VOE_HTTP_TIMEOUT": "10",
           "VOE_CONCURRENCY": "8", "PYTHONPATH": str(REPO)}
    output = subprocess.run([sys.executable, "-c", GEVENT_TRICKLE], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    outcomes = json.loads(output)
    assert [(name, kind) for name, kind, _ in outcomes] == [("DeadlinePassed", "transient")] * 8
    assert all(1.4 <= elapsed < 1.5 + 0.5 for _, _, elapsed in outcomes), outcomes
    wait_streams_closed(url)


def test_an_endless_body_fails_as_transient_and_memory_stays_under_the_cap(demo_airline,
                                                                           worker):
    url = demo_airline(endless_rate=1.0)
    cap = 16 * MIB
    searcher = worker(url, voe_fetch_max_bytes=cap, voe_fetch_deadline=20)
    searcher.search(job(date="2026-12-02"))  # warm up: imports, pools, parsers
    watched = "VmHWM" if peak_rss_reset() else "VmRSS"
    before = memory_kib(watched)
    started = time.monotonic()
    result = searcher.search(job())
    elapsed = time.monotonic() - started
    grown = (memory_kib(watched) - before) * 1024
    assert result.status == TRANSIENT and result.fares == ()
    assert f"a body of more than {cap} bytes, over the {cap}-byte cap" in result.error
    assert grown < cap + 8 * MIB, (watched, grown)
    assert elapsed < 10, elapsed  # the cap is hit long before the deadline
    wait_streams_closed(url)  # the airline stopped writing when the worker hung up


def test_a_content_length_over_the_cap_fails_before_reading(demo_airline, worker):
    url = demo_airline(flights=2000)  # a page of about 1 MB, announced by its Content-Length
    searcher = worker(url, voe_fetch_max_bytes=64 * 1024)
    result = searcher.search(job())
    assert result.status == TRANSIENT
    assert re.search(r"a body of \d{6,} bytes \(its Content-Length\), over the 65536-byte cap",
                     result.error), result.error


# Blocks --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "status", "said"), [
    ("soft_block", "200", r"the page says 'acesso temporariamente bloqueado' \(HTTP 200"),
    ("block", "403", r"blocked by the airline \(HTTP 403\): .*Acesso negado"),
    ("captcha", "302", r"the page says 'captcha' \(HTTP 200, http://[^ ]+/captcha\?continue="),
])
def test_blocks_come_out_as_blocked_with_the_page_kept(demo_airline, worker, fault, status,
                                                       said):
    url = demo_airline(**{f"{fault}_rate": 1.0})
    searcher = worker(url)
    result = searcher.search(job())
    assert result.status == BLOCKED and result.fares == ()
    assert re.search(said, result.error), result.error
    kept = re.match(r"page kept at (\S+\.page): blocked by the airline", result.error)
    assert kept, result.error
    page = Path(kept[1]).read_bytes()
    assert re.search(rb"bloqueado|Acesso negado|captcha", page)
    stats = airline_stats(url)
    assert stats["faults"] == {fault: 1} and stats["statuses"] == {status: 1}
    if fault != "soft_block":  # the JSON backend meets the same blocks (the soft one is HTML)
        assert searcher.search(job("demo-api")).status == BLOCKED


def test_a_soft_block_is_never_an_empty_result(demo_airline, worker):
    """The soft block's page is a well-formed results page with no flights: only its banner
    tells it from a route without flights, so a backend must declare its markers."""
    url = demo_airline(soft_block_rate=1.0)
    searcher = worker(url)
    page = requests.get(f"{url}/search?origin=GRU&destination=REC&date=2026-12-01",
                        timeout=5).text
    assert '<p class="summary">0 voos' in page and 'id="results"' in page
    assert searcher.search(job()).status == BLOCKED
    assert searcher.http.throttled.take() == {"demo": 1}  # a page-borne block slows us too


def test_a_429_still_there_after_the_retries_is_a_block(demo_airline, worker):
    url = demo_airline(throttle_rate=1.0, retry_after=0)
    searcher = worker(url, voe_http_retries=2)
    result = searcher.search(job())
    assert result.status == BLOCKED
    assert result.error.startswith("page kept at ") and "(HTTP 429): slow down" in result.error
    assert airline_stats(url)["statuses"] == {"429": 3}  # the try and 2 retries, then blocked


def test_an_answer_is_fares_when_nothing_blocks(airline_url, worker):
    result = worker(airline_url).search(job())
    assert result.status == OK
    assert sorted(result.fares) == sorted(fares_for("GRU", "REC", "2026-12-01"))


# The chain's order ---------------------------------------------------------------------------

SEEN: list[tuple[str, str, Any]] = []


class Early:
    """Runs before every built-in: no deadline yet, requests' own User-Agent."""

    def process_request(self, request: FetchRequest) -> None:
        SEEN.append(("Early", "request", (request.deadline is not None,
                                          request.request.headers.get("User-Agent"))))

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        SEEN.append(("Early", "response", response.status_code))
        return response

    def process_exception(self, request: FetchRequest, error: Exception) -> None:
        SEEN.append(("Early", "exception", getattr(error, "kind", type(error).__name__)))


class Late:
    """Runs after every built-in: the deadline is set, voe's User-Agent too."""

    order = 950

    @classmethod
    def from_session(cls, session: Any) -> Late:
        SEEN.append(("Late", "built", session.settings.voe_fetch_deadline))
        return cls()

    def process_request(self, request: FetchRequest) -> None:
        SEEN.append(("Late", "request", (request.deadline is not None,
                                         request.request.headers.get("User-Agent"))))

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        SEEN.append(("Late", "response", response.status_code))
        return response


def test_plugin_middlewares_run_in_their_order(airline_url, make_settings, demo_airline):
    module = __name__
    SEEN.clear()
    http = new_session(make_settings(
        voe_demo_airline_url=airline_url, voe_user_agent="FareBot/3",
        voe_fetch_middlewares=f"{module}:Early=10, {module}:Late=950, "
                              "voe.worker.fetch.proxy:Proxy=none"))
    names = [type(middleware).__name__ for middleware in http.chain.middlewares]
    assert names[0] == "Early" and names[-1] == "Late" and "Proxy" not in names
    assert names.index("Deadline") < names.index("BlockDetection") < names.index("UserAgent") \
        < names.index("Throttle")
    assert http.get(f"{airline_url}/api/search?origin=GRU&destination=REC&date=2026-12-01",
                    timeout=5).status_code == 200
    assert SEEN == [("Late", "built", 20.0),
                    ("Early", "request", (False, "FareBot/3")),
                    ("Late", "request", (True, "FareBot/3")),
                    ("Late", "response", 200),
                    ("Early", "response", 200)]
    SEEN.clear()
    blocking = demo_airline(block_rate=1.0)
    with pytest.raises(BlockedError):
        http.get(f"{blocking}/search?origin=GRU&destination=REC&date=2026-12-01", timeout=5)
    # Late saw the 403 before block detection; Early, nearer the backend, learns of the block.
    assert SEEN[2:] == [("Late", "response", 403), ("Early", "exception", "blocked")]
    http.close()


class Nearest:
    """Runs nearest the network: sees every try of a fetch."""

    def process_request(self, request: FetchRequest) -> None:
        SEEN.append(("Nearest", "request", request.meta.get("again", False)))

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        SEEN.append(("Nearest", "response", response.status_code))
        return response

    def process_exception(self, request: FetchRequest, error: Exception) -> None:
        SEEN.append(("Nearest", "exception", type(error).__name__))


class Again:
    """Sends a request once more after a 5xx or a connection error, through the chain."""

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response | FetchRequest:
        if response.status_code >= 500 and not request.meta.get("again"):
            request.meta["again"] = True
            return request
        return response

    def process_exception(self, request: FetchRequest, error: Exception) -> FetchRequest | None:
        if isinstance(error, requests.ConnectionError) and not request.meta.get("again"):
            request.meta["again"] = True
            return request
        return None


class Impostor:
    """Asks the chain to send a request that is not the one it was given."""

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> FetchRequest:
        return FetchRequest(request.request, dict(request.options), request.host)


class Interrupted(BaseException):
    """What a fetch may be cut short by that is no ``Exception`` (as gevent.Timeout)."""


class Interrupting:
    """Cuts the fetch short once its answer is back."""

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        raise Interrupted


class Finished:
    """Records every fetch that ends."""

    def fetch_finished(self, request: FetchRequest) -> None:
        SEEN.append(("Finished", "fetch", request.request.url))


def chain_session(make_settings: Callable[..., Any], orders: str) -> Any:
    """A session without retries whose chain adds this module's middlewares, as ``orders``
    says (``Class=ORDER`` pairs)."""
    named = ",".join(f"{__name__}:{pair.strip()}" for pair in orders.split(","))
    return new_session(make_settings(voe_http_retries=0, voe_fetch_middlewares=named))


def test_a_middleware_sends_a_request_again_through_the_chain(demo_airline, make_settings):
    url = demo_airline(error_rate=1.0)
    http = chain_session(make_settings, "Early=10, Again=600, Nearest=990")
    SEEN.clear()
    answer = http.get(f"{url}/api/search?origin=GRU&destination=REC&date=2026-12-01",
                      timeout=5)
    assert answer.status_code >= 500
    # Nearer the network every try is seen; nearer the backend only the last answer.
    assert [(who, what) for who, what, _ in SEEN] == [
        ("Early", "request"), ("Nearest", "request"), ("Nearest", "response"),
        ("Nearest", "request"), ("Nearest", "response"), ("Early", "response")]
    assert SEEN[3][2] is True  # the try sent again carries what the middleware set
    assert airline_stats(url)["requests"] == 2
    SEEN.clear()
    from conftest import free_port

    with pytest.raises(requests.ConnectionError):  # nothing listens: the error, sent again
        http.get(f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert [(who, what) for who, what, _ in SEEN] == [
        ("Early", "request"), ("Nearest", "request"), ("Nearest", "exception"),
        ("Nearest", "request"), ("Nearest", "exception"), ("Early", "exception")]
    http.close()


def test_only_the_request_given_can_be_sent_again(airline_url, make_settings):
    http = chain_session(make_settings, "Impostor=600")
    with pytest.raises(TypeError, match="only the one it was given can be sent again"):
        http.get(f"{airline_url}/stats", timeout=5)
    http.close()


def test_fetch_finished_is_told_once_however_a_fetch_ends(airline_url, make_settings):
    http = chain_session(make_settings, "Finished=10, Again=600, Interrupting=990")
    SEEN.clear()
    with pytest.raises(Interrupted):
        http.get(f"{airline_url}/stats", timeout=5)
    assert SEEN == [("Finished", "fetch", f"{airline_url}/stats")]
    http.close()
    http = chain_session(make_settings, "Finished=10, Again=600")
    SEEN.clear()
    assert http.get(f"{airline_url}/stats", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        from conftest import free_port

        http.get(f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert [what for _, what, _ in SEEN] == ["fetch", "fetch"]
    http.close()


def test_entry_point_middlewares_take_their_order(tmp_path, monkeypatch):
    info = tmp_path / "voe_test_middleware-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: voe-test-middleware\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[voe.fetch_middlewares]\nlate = {__name__}:Late\n"
                                           f"early = {__name__}:Early\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    chosen = {path: order for order, path, _ in middleware_classes("")}
    assert chosen[f"{__name__}:Late"] == 950  # its ``order`` attribute
    assert chosen[f"{__name__}:Early"] == 500  # none: the default
    chosen = {path: order for order, path, _ in
              middleware_classes(f"{__name__}:Early=none,voe.worker.fetch.deadline:Deadline=10")}
    assert f"{__name__}:Early" not in chosen and chosen["voe.worker.fetch.deadline:Deadline"] == 10
    with pytest.raises(ValueError, match="no_such_module"):
        middleware_classes("no_such_module:Thing=5")


# A whole cluster against an airline that soft-blocks ---------------------------------------

AIRPORTS = ("GRU", "REC", "SSA")  # tests/cluster.py's small plan: 6 routes x 2 days


def plan_urls() -> list[str]:
    today = datetime.date.today()
    return [f"/search?origin={o}&destination={d}&date={today + datetime.timedelta(days=n)}"
            for o, d in itertools.permutations(AIRPORTS, 2) for n in (1, 2)]


def choose_seed(rate: float) -> int:
    """A seed under which today's plan meets soft blocks on several first tries, and some
    job on all its three attempts: both ends of the test happen, on any day."""
    urls = plan_urls()
    for seed in range(1, 5000):
        faults = Faults(seed=seed, soft_block_rate=rate)
        first = sum(faults.hits("soft_block", url, 1) for url in urls)
        always = sum(all(faults.hits("soft_block", url, n) for n in (1, 2, 3)) for url in urls)
        if first >= 3 and always >= 1:
            return seed
    raise AssertionError("no seed fits")


def test_a_worker_process_survives_endless_bodies_within_the_cap(tmp_path):
    cap = 8 * MIB
    airline = Airline(tmp_path, options=("--endless-rate", "1"))
    cluster = Cluster(tmp_path, airline.url, max_attempts=1, days=1,
                      airports='["GRU", "REC"]')  # 2 jobs, both endless
    cluster.env.update({"VOE_FETCH_MAX_BYTES": str(cap), "VOE_FETCH_DEADLINE": "30"})
    try:
        worker = cluster.worker("w1", concurrency=2)
        wait_for(lambda: "concurrency 2" in cluster.log("worker"), 30, "the worker to start")
        before = memory_kib("VmRSS", worker.pid)
        cluster.sink()
        assert cluster.wait_master(cluster.master(), timeout=60) == 0
        peak = memory_kib("VmHWM", worker.pid)
        assert worker.poll() is None  # the worker survives
        jobs = cluster.ledger_rows()
    finally:
        cluster.stop()
        airline.stop()
    assert len(jobs) == 2 and all(job["state"] == "failed" for job in jobs)
    assert all(f"over the {cap}-byte cap" in job["last_error"] for job in jobs), jobs
    grown = (peak - before) * 1024
    assert grown < 2 * cap + 32 * MIB, grown  # two bodies at once, each cut at the cap


def test_a_cluster_against_soft_blocks_stores_only_right_fares(tmp_path):
    seed = choose_seed(0.3)
    airline = Airline(tmp_path, options=("--soft-block-rate", "0.3", "--seed", str(seed)))
    cluster = Cluster(tmp_path, airline.url, max_attempts=3)
    try:
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1", concurrency=4)
        assert cluster.wait_master(master, timeout=90) == 0
        jobs = cluster.ledger_rows()
        fares = cluster.store_rows("fares")
        outcomes = cluster.store_rows("outcomes")
        stats = json.loads(requests.get(f"{airline.url}/stats", timeout=5).text)
        expected = {job["id"]: sorted(tuple(fare.values()) for fare in airline.api_fares(
            job["origin"], job["destination"], job["date"])) for job in jobs}
    finally:
        cluster.stop()
        airline.stop()
    stored: dict[str, list[tuple]] = {}
    for fare in fares:
        stored.setdefault(fare["job_id"], []).append(
            (fare["flight"], fare["departure"], fare["arrival"], fare["price"], fare["currency"]))
    assert len(jobs) == 12
    done = [job for job in jobs if job["state"] == "done"]
    failed = [job for job in jobs if job["state"] != "done"]
    for row in done:
        assert sorted(stored[row["id"]]) == expected[row["id"]], row["id"]
    for row in failed:
        assert row["state"] == "failed" and row["attempt"] == 3, row
        assert "blocked by the airline" in row["last_error"], row["last_error"]
        assert row["id"] not in stored  # never "no flights"
    assert done and failed
    blocked = [row for row in outcomes if row["status"] == BLOCKED]
    assert len(blocked) == stats["faults"]["soft_block"] >= 3
    assert {row["status"] for row in outcomes} == {OK, BLOCKED}
    assert not any(row["status"] == OK and not stored.get(row["job_id"]) for row in outcomes)
    assert len(list((cluster.data_dir / "pages").glob("*.page"))) == len(
        {row["job_id"] for row in blocked})


def test_blocked_travels_to_the_sink_and_back_to_the_master():
    result = Result(job(), BlockedError.kind, (), "blocked by the airline (HTTP 403)", "w", 0.1)
    assert protocol.decode(protocol.encode_result(result)) == result
    ack = protocol.Ack(1, job().id, 1, BLOCKED, "blocked by the airline (HTTP 403)")
    assert list(protocol.decode(protocol.encode_acks([ack])).acks) == [ack]


@pytest.mark.parametrize(("url", "key"), [
    ("http://127.0.0.1:8080/search?origin=GRU", "http://127.0.0.1:8080"),
    ("HTTPS://Example.COM/a", "https://example.com:443"),
    ("http://a.b:99", "http://a.b:99"),
    ("http://user@h.example/x", "http://h.example:80"),
    ("http://h.example:bad/x", "http://h.example:80"),
    ("http://a\tb.example/x", "http://ab.example:80"),
    ("http://h.example:0/x", "http://h.example:80"),
    ("//h.example/x", "http://h.example:80"),
])
def test_host_keys_are_the_same_asked_once_or_again(url, key):
    assert [chain.host_key(url) for _ in range(3)] == [key] * 3


def test_host_keys_kept_by_origin_stay_bounded():
    for number in range(chain.MAX_KEPT_HOSTS + 50):
        assert chain.host_key(f"http://h{number}.example:81/p") == f"http://h{number}.example:81"
        assert len(chain._host_keys) <= chain.MAX_KEPT_HOSTS
