"""Identities that rotate (voe/worker/fetch/identities.py): the pool with an injected clock, cookies
kept per identity through a real session, the counts on the wire, and a real cluster that
gets through an airline blocking each address after a few searches, by four loopback
proxies of the test's own."""

from __future__ import annotations

import http.client
import http.server
import itertools
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.cluster import SMALL_PLAN, Airline, Cluster, assert_stored_exactly_once, wait_for
from voe import protocol
from voe.backends.base import BlockedError
from voe.worker.fetch.identities import (
    AllProxiesCooling,
    Identities,
    IdentityPool,
    parse_proxies,
    parse_user_agents,
    proxy_name,
    read_proxies_file,
)
from voe.worker.http import new_session

P1, P2 = "http://127.0.0.2:3128", "http://user:secret@127.0.0.3:3128"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(proxies: list[str] = (P1, P2), max_uses: int = 3, cooldown: float = 60.0,
         clock: Clock | None = None, user_agents: list[str] = ("UA-1", "UA-2")) -> IdentityPool:
    return IdentityPool(list(proxies), list(user_agents), max_uses, cooldown,
                        clock=clock or Clock())


# The pool -------------------------------------------------------------------------------------

def test_routes_are_named_by_host_and_port_without_credentials():
    assert proxy_name(P2) == "127.0.0.3:3128"
    assert proxy_name("https://proxy.example") == "proxy.example:443"
    assert proxy_name(None) == "direct"
    assert parse_proxies(f"{P1}, {P2}") == [P1, P2]
    with pytest.raises(ValueError):
        parse_proxies("socks5://127.0.0.2:1080")
    assert parse_user_agents("A (X, Y) | B ||") == ["A (X, Y)", "B"]


def test_a_proxies_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "proxies.txt"
    path.write_text(f"# the fleet's proxies\n{P1}  # first\n\n{P2}\n")
    assert read_proxies_file(str(path)) == [P1, P2]
    with pytest.raises(ValueError, match="VOE_PROXIES_FILE"):
        read_proxies_file(str(tmp_path / "absent.txt"))


def test_an_identity_is_sticky_for_a_job_and_jobs_take_the_proxies_in_turn():
    identities = pool()
    first = identities.for_job("a#1")
    assert identities.for_job("a#1") is first  # every request of the job
    second = identities.for_job("b#2")
    assert {first.route.name, second.route.name} == {"127.0.0.2:3128", "127.0.0.3:3128"}
    assert first.user_agent != second.user_agent  # User-Agents taken in turn
    assert identities.for_job("c#3") is first  # its proxy's turn again, same identity


def test_an_identity_retires_after_max_uses_jobs():
    identities = pool(proxies=[P1], max_uses=3)
    first = identities.for_job("j#1")
    identities.job_finished("j#1")
    for key in ("j#2", "j#3"):
        assert identities.for_job(key) is first
    identities.job_finished("j#2")
    assert not first.retired  # its third job still runs
    fourth = identities.for_job("j#4")
    assert fourth is not first  # handed out three times: new jobs get a fresh one
    identities.job_finished("j#3")
    assert first.retired
    identities.job_finished("j#4")
    assert identities.counts() == {"127.0.0.2:3128": (0, 4, 1)}


def test_a_block_retires_the_identity_at_once_and_cools_its_proxy_down():
    clock = Clock()
    identities = pool(clock=clock, cooldown=60)
    blocked = identities.for_job("a#1")
    identities.blocked(blocked)
    assert blocked.retired
    identities.job_finished("a#1")
    assert identities.counts()[blocked.route.name] == (1, 1, 1)
    for key in ("b#2", "c#3", "d#4"):  # only the other proxy, while the first cools down
        assert identities.for_job(key).route is not blocked.route
    clock.now += 61
    routes = {identities.for_job(key).route.name for key in ("e#5", "f#6")}
    assert blocked.route.name in routes
    again = next(identities.for_job(key) for key in ("e#5", "f#6")
                 if identities.for_job(key).route is blocked.route)
    assert again is not blocked  # a new identity on the rested proxy


def test_when_every_proxy_cools_down_a_fetch_fails_as_transient():
    clock = Clock()
    identities = pool(clock=clock, cooldown=30)
    for key in ("a#1", "b#2"):
        identities.blocked(identities.for_job(key))
    with pytest.raises(AllProxiesCooling, match="every proxy is cooling down") as failure:
        identities.for_job("c#3")
    assert failure.value.kind == "transient"
    clock.now += 31
    assert identities.for_job("c#3").route.url in (P1, P2)


def test_connection_errors_through_a_proxy_cool_it_down():
    clock = Clock()
    identities = pool(clock=clock)
    first = identities.for_job("a#1")
    identities.connection_failed(first)
    identities.answered(first)  # a good answer eases the score by half a point
    identities.connection_failed(first)
    identities.connection_failed(first)
    assert not first.retired
    identities.connection_failed(first)
    assert first.retired and first.route.cool_until > clock.now
    assert identities.counts()[first.route.name] == (0, 0, 1)  # retired, not a block


def test_without_proxies_one_direct_route_that_never_cools_down():
    identities = pool(proxies=[], max_uses=1)
    first = identities.for_job("a#1")
    assert first.route.name == "direct" and first.route.proxies is None
    identities.blocked(first)
    second = identities.for_job("b#2")  # no cool-down: there is nowhere else to go
    assert second is not first and second.route is first.route
    identities.connection_failed(second)  # the airline's trouble, not a proxy's
    assert not second.retired


def test_cookies_stay_within_an_identity():
    identities = pool(proxies=[P1], max_uses=2)
    first = identities.for_job("a#1")
    first.cookies.set("visitor", "1", domain="127.0.0.1", path="/")
    assert identities.for_job("b#2").cookies is first.cookies  # same identity, same jar
    identities.job_finished("a#1")
    identities.job_finished("b#2")
    fresh = identities.for_job("c#3")
    assert fresh is not first and len(fresh.cookies) == 0
    assert len(first.cookies) == 0  # a retired identity's cookies are gone


# Through a real session ------------------------------------------------------------------------

class _CookieSite(http.server.BaseHTTPRequestHandler):
    """Sets a numbered ``visitor`` cookie on a request without one; answers with the Cookie
    header and User-Agent it got, as JSON; ``/block`` answers 403."""

    counter = itertools.count(1)
    protocol_version = "HTTP/1.1"
    timeout = 5

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"cookie": self.headers.get("Cookie", ""),
                           "agent": self.headers.get("User-Agent", "")}).encode()
        self.send_response(403 if self.path.startswith("/block") else 200)
        if "visitor=" not in self.headers.get("Cookie", ""):
            self.send_header("Set-Cookie", f"visitor={next(self.counter)}; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the answers."""


@pytest.fixture
def cookie_site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CookieSite)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_session_keeps_cookies_per_identity_and_never_in_its_own_jar(cookie_site,
                                                                       make_settings):
    session = new_session(make_settings(voe_identity_max_uses=1, voe_user_agents="UA-1|UA-2",
                                        voe_http_retries=0))
    try:
        seen = []
        for job in ("a", "b"):
            with session.fetching_for("demo", None, job):
                first = session.get(cookie_site + "/search", timeout=5).json()
                second = session.get(cookie_site + "/search", timeout=5).json()
            seen.append((first, second))
        (a1, a2), (b1, b2) = seen
        assert a1["cookie"] == "" and a2["cookie"] == "visitor=1"  # kept within job a
        assert b1["cookie"] == "" and b2["cookie"] == "visitor=2"  # b's identity is new
        assert (a1["agent"], b1["agent"]) == ("UA-1", "UA-2")
        assert len(session.cookies) == 0  # the session's own jar never saw them
        assert session.identities.counts() == {"direct": (0, 2, 2)}
    finally:
        session.close()


def test_a_job_run_without_a_fetch_serves_no_identity_and_runs_nest(cookie_site,
                                                                      make_settings):
    """A run that fetched nothing tells the chain nothing (no identity served a job); a run
    inside another gives the outer one back, its identity and throttle label with it."""
    session = new_session(make_settings(voe_identity_max_uses=1, voe_user_agents="UA-1|UA-2",
                                        voe_http_retries=0))
    try:
        with session.fetching_for("demo", None, "idle"):
            pass
        assert set(session.identities.counts().values()) <= {(0, 0, 0)}
        with session.fetching_for("demo", None, "outer"):
            first = session.get(cookie_site + "/search", timeout=5).json()
            with session.fetching_for("other", None, "inner"):
                inner = session.get(cookie_site + "/search", timeout=5).json()
            again = session.get(cookie_site + "/search", timeout=5).json()
        assert (first["agent"], inner["agent"], again["agent"]) == ("UA-1", "UA-2", "UA-1")
        assert inner["cookie"] == "" and again["cookie"].startswith("visitor=")  # outer's jar
        assert session.identities.counts() == {"direct": (0, 2, 2)}
        assert session.throttled.swap_label(None) is None  # no label left behind
    finally:
        session.close()


def test_cookies_an_answer_sets_go_back_and_a_requests_own_go_along(cookie_site,
                                                                    make_settings):
    """Outside a job too: an answer's cookies are filed and sent back, the response carries
    those it set (none when it set none), and a request's own cookies are sent with them."""
    session = new_session(make_settings(voe_http_retries=0))
    try:
        first = session.get(cookie_site + "/search", timeout=5)
        visitor = first.cookies.get("visitor")
        assert first.json()["cookie"] == "" and visitor
        second = session.get(cookie_site + "/search", timeout=5)
        assert second.json()["cookie"] == f"visitor={visitor}"
        assert len(second.cookies) == 0  # it set none
        third = session.get(cookie_site + "/search", cookies={"consent": "yes"}, timeout=5)
        assert sorted(third.json()["cookie"].split("; ")) == ["consent=yes",
                                                              f"visitor={visitor}"]
    finally:
        session.close()


def test_a_user_agent_the_backend_chose_is_kept(cookie_site, make_settings):
    session = new_session(make_settings(voe_user_agents="UA-1|UA-2", voe_http_retries=0))
    try:
        with session.fetching_for("demo", None, "a"):
            assert session.get(cookie_site + "/search", timeout=5).json()["agent"] == "UA-1"
        session.headers["User-Agent"] = "Backend/1.0"  # a backend's own, on the session
        with session.fetching_for("demo", None, "b"):
            assert session.get(cookie_site + "/search", timeout=5).json()["agent"] == \
                "Backend/1.0"
    finally:
        session.close()


def test_a_block_seen_by_the_chain_retires_the_identity(cookie_site, make_settings):
    session = new_session(make_settings(voe_http_retries=0))
    try:
        with session.fetching_for("demo", None, "a"):
            session.get(cookie_site + "/search", timeout=5)
            with pytest.raises(BlockedError):
                session.get(cookie_site + "/block", timeout=5)
            third = session.get(cookie_site + "/search", timeout=5).json()
        assert third["cookie"] == ""  # a new identity, without the blocked one's cookie
        assert session.identities.counts() == {"direct": (1, 1, 1)}
    finally:
        session.close()


def test_an_identity_proxy_wins_over_voe_http_proxy():
    class Settings:
        voe_proxies, voe_proxies_file, voe_user_agents, voe_user_agent = P1, "", "", ""
        voe_identity_max_uses, voe_proxy_cooldown, voe_fetch_block_statuses = 5, 60.0, "403"

    class Session:
        settings, headers = Settings(), {}

    session = Session()
    middleware = Identities.from_session(session)
    assert session.identities is middleware.pool
    request = requests.Request("GET", "http://127.0.0.1:9/search").prepare()
    from voe.worker.fetch import FetchRequest
    from voe.worker.fetch.proxy import Proxy

    fetch = FetchRequest(request, {}, "http://127.0.0.1:9", job="a#1")
    middleware.process_request(fetch)
    Proxy("http://127.0.0.9:8080").process_request(fetch)
    assert fetch.options["proxies"] == {"http": P1, "https": P1}
    middleware.process_exception(fetch, requests.ConnectionError("refused"))
    assert middleware.pool.routes[0].errors == 1.0


# On the wire ----------------------------------------------------------------------------------

def test_the_identities_counts_travel_with_the_throttled_message():
    frame = protocol.encode_throttled({"demo": 2}, {"127.0.0.2:3128": (1, 5, 2),
                                                    "direct": (0, 1, 0)})
    message = protocol.decode(frame)
    assert message.counts == (("demo", 2),)
    assert message.identities == (("127.0.0.2:3128", 1, 5, 2), ("direct", 0, 1, 0))
    older = protocol.decode(protocol.encode_throttled({"demo": 1}))  # an older worker's
    assert older.identities == ()
    import msgpack

    for bad in ([["x", 1, 2]], [["x", -1, 0, 0]], [[1, 0, 0, 0]], "x",
                [["x", 0, 0, 0]] * (protocol.MAX_ROUTES + 1)):
        body = {"v": protocol.VERSION, "t": "throttled", "c": [], "i": bad}
        with pytest.raises(protocol.ProtocolError, match="bad-schema"):
            protocol.decode(msgpack.packb(body))


# The demo airline's quota per address -----------------------------------------------------------

def _search_status(app: Any, client: str) -> str:
    """The status the airline's WSGI app answers a search from ``client`` with."""
    answered: list[str] = []
    environ = {"PATH_INFO": "/api/search", "REQUEST_METHOD": "GET", "REMOTE_ADDR": client,
               "QUERY_STRING": "origin=GRU&destination=REC&date=2026-12-01"}
    body = b"".join(app(environ, lambda status, headers, *more: answered.append(status)))
    assert answered[0].startswith("200") or "Acesso negado" in body.decode()
    return answered[0]


def test_the_airline_blocks_an_address_after_its_searches_for_a_while():
    from voe.demo.airline.server import make_app

    app = make_app(block_after=2, block_seconds=0.3)
    statuses = [_search_status(app, "127.0.0.2") for _ in range(4)]
    assert [status[:3] for status in statuses] == ["200", "200", "403", "403"]
    assert _search_status(app, "127.0.0.3").startswith("200")  # per address
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _search_status(app, "127.0.0.2").startswith("403"):
        time.sleep(0.05)
    assert _search_status(app, "127.0.0.2").startswith("200")  # over: a fresh quota
    assert app.stats.as_dict()["faults"]["block_after"] >= 2


# A real cluster through four loopback proxies ------------------------------------------------

class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A forward HTTP proxy for absolute-URI GETs, connecting out from its own address."""

    protocol_version = "HTTP/1.1"
    timeout = 10
    hop_by_hop = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                            "te", "trailers", "transfer-encoding", "upgrade"})

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        target = urlsplit(self.path)
        if target.scheme != "http" or target.hostname != "127.0.0.1":
            self.send_error(400, "only absolute http://127.0.0.1 URLs")
            return
        source = (self.server.server_address[0], 0)
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10,
                                              source_address=source)
        try:
            headers = {name: value for name, value in self.headers.items()
                       if name.lower() not in self.hop_by_hop}
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request("GET", path, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
        except OSError as error:
            self.send_error(502, f"upstream: {error}")
            return
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in self.hop_by_hop and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the airline's stats tell what went through."""


@pytest.fixture
def proxies() -> Iterator[Callable[[list[str]], list[str]]]:
    """Factory: a forward proxy on each of the given loopback addresses -> their URLs.
    Every proxy is shut down and its thread joined when the test ends."""
    started: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(addresses: list[str]) -> list[str]:
        urls = []
        for address in addresses:
            assert address.startswith("127.")  # loopback only
            server = http.server.ThreadingHTTPServer((address, 0), _ForwardProxy)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever,
                                      kwargs={"poll_interval": 0.05}, name=f"proxy-{address}")
            thread.start()
            started.append((server, thread))
            urls.append(f"http://{address}:{server.server_address[1]}")
        return urls

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _loopback_aliases_work() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.5", 0))
    except OSError:
        return False
    return True


def _all_ended(cluster: Cluster) -> bool:
    """Every job of the ledger is done or failed (False before the master made the ledger:
    reading it must not create the file under the master)."""
    if not (cluster.data_dir / "ledger.db").exists():
        return False
    try:
        rows = cluster.ledger_rows()
    except sqlite3.OperationalError:  # the master is still creating its tables
        return False
    return bool(rows) and all(row["state"] in ("done", "failed") for row in rows)


@pytest.mark.skipif(not _loopback_aliases_work(), reason="127.0.0.2-5 cannot be bound here")
def test_a_cluster_gets_through_an_airline_that_blocks_each_address(tmp_path, proxies):
    urls = proxies(["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    block_after = 2  # four addresses can do 8 searches before their first block: not 12
    (tmp_path / "airline").mkdir()
    airline = Airline(tmp_path / "airline", options=(
        "--block-after", str(block_after), "--block-seconds", "1.5"))
    # The same airline without the quota: its /api/search gives the expected fares (the
    # blocking one would refuse this test's own address after two).
    (tmp_path / "twin").mkdir()
    twin = Airline(tmp_path / "twin")
    # A daily plan: its master stays up once the cycle is over, so `voe status` shows workers.
    plan = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"').format(
        max_attempts=25, lease_seconds=20, days=2, backend="demo",
        airports='["GRU", "REC", "SSA"]')
    cluster = Cluster(tmp_path, airline.url, plan=plan)
    cluster.env.update({"VOE_PROXIES": ",".join(urls), "VOE_IDENTITY_MAX_USES": "2",
                        "VOE_PROXY_COOLDOWN": "2", "VOE_HTTP_RETRIES": "0"})
    cluster.env.pop("VOE_PROXIES_FILE", None)
    try:
        cluster.sink()
        master = cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        cluster.worker("w1", concurrency=2)
        wait_for(lambda: _all_ended(cluster), 120, "every job to end")
        assert master.poll() is None
        stats = requests.get(f"{airline.url}/stats", timeout=5).json()

        seen: list[dict] = []

        def reported() -> dict | None:
            seen[:] = cluster.status()["workers"]
            routes = seen[0]["identities"] if seen else []
            blocks = sum(route["blocks"] for route in routes)
            return seen[0] if blocks == stats["faults"].get("block_after") else None

        try:
            worker = wait_for(reported, 30, "the worker's identities in voe status --json")
        except AssertionError:
            raise AssertionError(f"status shows {seen}; the airline: {stats}") from None
        text = cluster.voe("status").stdout
        assert_stored_exactly_once(cluster, twin)
        outcomes = cluster.store_rows("outcomes")
    finally:
        cluster.stop()
        airline.stop()
        twin.stop()
    jobs = len(cluster.ledger_rows())
    assert jobs == 12 > block_after  # one address could not do the whole plan
    routes = {route["route"]: route for route in worker["identities"]}
    assert set(routes) == {url.removeprefix("http://") for url in urls}
    blocks = sum(route["blocks"] for route in routes.values())
    # Each block lets an address start over with two more searches: 12 need two at least.
    assert blocks == stats["faults"]["block_after"] >= (jobs - 4 * block_after) // block_after
    assert sum(route["retired"] for route in routes.values()) > blocks  # used up ones too
    assert sum(route["jobs"] for route in routes.values()) >= jobs
    assert set(stats["clients"]) == {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
    served = {client: counts["requests"] for client, counts in stats["clients"].items()}
    assert all(count >= 1 for count in served.values()), served
    assert {row["status"] for row in outcomes} <= {"ok", "blocked", "transient"}
    assert "identities via 127.0.0.2:" in text and "block(s)" in text and "retired" in text
