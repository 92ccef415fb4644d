"""The master's control API (issue 9): a real master, sink and worker on loopback, driven over
HTTP; bad input answered 4xx JSON; the bearer token; and schemathesis against the OpenAPI
document FastAPI generates from the routes."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.cluster import SMALL_PLAN, Cluster, free_port, wait_for
from tests.test_publish import SECRET, Receiver
from voe.model import Fare, Result, SearchJob
from voe.store import SqliteStore
from voe.web import auth
from voe.web.app import redacted_store
from voe.web.control import Command, CommandRefused, Control

# A plan that follows a daily cycle, so the master stays up between cycles; XYZ is no
# airport of the demo airline, so its 4 routes fail at once (dead letters), 2 succeed.
DAILY_PLAN = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"')
PLAN_VALUES = {"max_attempts": 2, "lease_seconds": 20, "days": 1, "backend": "demo",
               "airports": '["GRU", "REC", "XYZ"]'}
TOKEN = "t0ken-for-tests-only"
# Hypothesis's seed for schemathesis: the same requests on every run.
SCHEMATHESIS_SEED = 15
# Every endpoint of the control API, as the OpenAPI document must describe it.
ENDPOINTS = {
    "/api/status": ["GET"], "/api/master": ["GET"], "/api/jobs": ["GET"],
    "/api/jobs/{cycle}/{job_id}/retry": ["POST"], "/api/retry": ["POST"],
    "/api/outbox/retry": ["POST"], "/api/cycles": ["POST"], "/api/pause": ["POST"],
    "/api/resume": ["POST"], "/api/check": ["GET"], "/api/routes": ["GET"],
    "/api/prices": ["GET"], "/metrics": ["GET"]}


def call(port: int, method: str, path: str, headers: dict[str, str | bytes] | None = None,
         body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTP request to 127.0.0.1:``port`` (plain http.client: no proxies, no retries);
    the answer's headers are looked up by any case, as HTTP names them."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def call_json(port: int, method: str, path: str, **kwargs) -> tuple[int, dict]:
    """An API call whose answer must be JSON (refusals included)."""
    status, headers, body = call(port, method, path, **kwargs)
    assert headers["Content-Type"] == "application/json", (status, headers, body)
    return status, json.loads(body)


def api_up(port: int, headers: dict[str, str] | None = None) -> bool:
    """Whether the master's HTTP port answers /api/master yet."""
    try:
        return call(port, "GET", "/api/master", headers=headers)[0] == 200
    except OSError:
        return False


class Running:
    """A master (daily plan), a sink and one worker, with the master's HTTP port."""

    def __init__(self, tmp: Path, airline_url: str) -> None:
        self.cluster = Cluster(tmp, airline_url, plan=DAILY_PLAN.format(**PLAN_VALUES))
        self.port = int(self.cluster.env["VOE_HTTP_PORT"])
        self.cluster.sink()
        self.master = self.cluster.spawn("master", "master", "--plan",
                                         str(self.cluster.plan_path))
        wait_for(lambda: api_up(self.port), 30, "the master's HTTP port")
        assert call_json(self.port, "POST", "/api/pause") == (200, {"paused": True})
        self.cluster.worker("w1")

    def get(self, path: str) -> dict:
        """GET an endpoint that must answer 200."""
        status, body = call_json(self.port, "GET", path)
        assert status == 200, body
        return body

    def post(self, path: str, expect: int = 200) -> dict:
        """POST to an endpoint that must answer ``expect``."""
        status, body = call_json(self.port, "POST", path)
        assert status == expect, body
        return body

    def finish(self, done: int = 2, failed: int = 4) -> None:
        """Resume leasing and wait for the latest cycle to end with these counts."""
        self.post("/api/resume")
        wait_for(lambda: self.cluster.jobs() == {"pending": 0, "leased": 0, "done": done,
                                                 "failed": failed}, 60, "the cycle to end")
        wait_for(lambda: self.get("/api/master")["cycles"] == [], 30, "the master to close it")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, airline_url: str) -> Iterator[Running]:
    cluster = None
    try:
        running = Running(tmp_path_factory.mktemp("control"), airline_url)
        cluster = running.cluster
        yield running
    finally:
        if cluster is not None:
            cluster.stop()


def test_pause_leases_nothing_until_resume(running):
    assert running.get("/api/master")["paused"] is True
    wait_for(lambda: running.get("/api/status")["workers"], 30, "the worker to join")
    deadline = time.monotonic() + 2.0  # the worker has credit: a lease would come at once
    while time.monotonic() < deadline:
        assert running.get("/api/master")["stats"]["leased"] == 0
        assert {row["state"] for row in running.cluster.ledger_rows()} <= {"pending"}
        time.sleep(0.2)
    assert running.post("/api/resume") == {"paused": False}
    running.finish()
    assert running.get("/api/master")["stats"]["leased"] == 6


def test_status_is_voe_status_json(running):
    running.finish()

    def both() -> tuple[dict, dict]:
        by_http, by_cli = running.get("/api/status"), running.cluster.status()
        for answer in (by_http, by_cli):
            for worker in answer["workers"]:
                worker.pop("last_seen")  # the master rewrites it every second
        return by_http, by_cli

    # The CLI reads the workers' snapshot the master saves every second: a worker's last
    # finished job may reach it a second after the HTTP port shows it.
    answers: list[tuple[dict, dict]] = []
    wait_for(lambda: answers.append(both()) or answers[-1][0] == answers[-1][1], 10,
             "voe status to show what /api/status shows")
    by_http, by_cli = answers[-1]
    assert by_http == by_cli
    assert by_http["jobs"] == {"pending": 0, "leased": 0, "done": 2, "failed": 4}


def test_jobs_are_listed_by_state_and_paged(running):
    running.finish()
    first = running.get("/api/jobs?state=failed&limit=3")
    rest = running.get("/api/jobs?state=failed&limit=3&offset=3")
    assert (first["total"], len(first["jobs"]), len(rest["jobs"])) == (4, 3, 1)
    failed = first["jobs"] + rest["jobs"]
    assert len({job["job_id"] for job in failed}) == 4
    assert all(job["state"] == "failed" and "unknown airport XYZ" in job["error"]
               and "XYZ" in job["job_id"] for job in failed)
    done = running.get("/api/jobs?state=done")
    assert done["total"] == 2 and {job["state"] for job in done["jobs"]} == {"done"}
    assert running.get("/api/jobs?cycle=1")["total"] == 6
    assert running.get("/api/jobs")["total"] == 6
    assert running.get("/api/jobs?cycle=99") | {"jobs": None} == {
        "state": None, "cycle": 99, "limit": 50, "offset": 0, "total": 0, "jobs": None}


def test_retry_one_dead_letter_then_all(running):
    running.finish()
    job = running.get("/api/jobs?state=failed&limit=1")["jobs"][0]
    path = f"/api/jobs/{job['cycle']}/{quote(job['job_id'], safe='')}/retry"
    running.post("/api/pause")
    assert running.post(path) == {"retried": 1}
    pending = running.get("/api/jobs?state=pending")["jobs"]
    assert [(row["job_id"], row["attempt"]) for row in pending] == [(job["job_id"], 0)]
    assert "no failed job" in running.post(path, expect=404)["error"]
    running.finish()  # leased again, and fails again: XYZ is still no airport
    again = [row for row in running.get("/api/jobs?state=failed")["jobs"]
             if row["job_id"] == job["job_id"]]
    assert again[0]["updated_at"] > job["updated_at"]

    running.post("/api/pause")
    assert running.post("/api/retry?cycle=1") == {"retried": 4}
    assert running.get("/api/jobs?state=pending")["total"] == 4
    running.finish()
    assert running.post("/api/retry?cycle=99") == {"retried": 0}


def test_start_a_cycle_now(running):
    running.finish()
    running.post("/api/pause")
    assert running.post("/api/cycles", expect=201) == {"cycle": 2, "total": 6}
    assert "still running" in running.post("/api/cycles", expect=409)["error"]
    running.finish()
    status = running.get("/api/status")
    assert status["cycle"]["number"] == 2 and status["cycle"]["finished_at"] is not None


def test_the_command_line_acts_through_the_running_master(running):
    running.finish()
    voe = running.cluster.voe
    assert voe("pause").stdout.startswith("leasing paused")
    assert running.get("/api/master")["paused"] is True
    assert voe("resume").stdout.strip() == "leasing resumed"
    assert running.get("/api/master")["paused"] is False

    running.post("/api/pause")
    number = running.get("/api/status")["cycle"]["number"]
    assert voe("cycle", "start").stdout.strip() == f"cycle {number + 1} started: 6 jobs"
    refused = voe("cycle", "start", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("voe cycle start: error: the master answered 409") and \
        f"cycle {number + 1} is still running" in line
    running.finish()

    for spelling in (["failed", "retry"], ["failed", "--retry"]):  # --retry: the older one
        dead = running.get("/api/jobs?state=failed")["total"]
        running.post("/api/pause")
        retried = voe(*spelling).stdout.strip()
        assert retried == (f"{dead} failed job(s) sent back to pending; the running master "
                           "leases them now")
        assert running.get("/api/jobs?state=pending")["total"] == dead
        assert (f"{dead} failed job(s) sent back to pending through the HTTP port"
                in running.cluster.log("master"))
        running.finish()


def test_workers_show_their_address_and_errors(running):
    running.finish()  # 4 jobs of XYZ fail at once: 4 errors on the only worker
    def settled() -> list[dict]:
        workers = running.get("/api/status")["workers"]
        return workers if workers and workers[0]["errors"] >= 4 else []

    [worker] = wait_for(settled, 30, "the worker's errors in the status")
    assert worker["worker"].startswith("w1@") and worker["finished"] >= 6
    assert worker["address"].startswith("127.0.0.1 (") and worker["address"].endswith(")")
    shown = running.cluster.voe("status").stdout
    assert f"worker {worker['worker']} at 127.0.0.1 (" in shown
    assert f"{worker['errors']} error(s)" in shown
    assert f"from {worker['address']}" in running.cluster.log("master")


def test_outbox_dead_letters_are_sent_again_over_http(tmp_path, airline_url):
    receiver = Receiver()
    receiver.failing = True
    cluster = Cluster(tmp_path, airline_url, plan=DAILY_PLAN.format(**PLAN_VALUES))
    cluster.env.update({"VOE_WEBHOOK_URLS": receiver.url, "VOE_WEBHOOK_SECRET": SECRET,
                        "VOE_WEBHOOK_MAX_ATTEMPTS": "1", "VOE_WEBHOOK_BACKOFF": "0.01"})
    port = int(cluster.env["VOE_HTTP_PORT"])
    destination = f"webhook:{receiver.url}"
    jobs = [SearchJob(f"demo:GRU-REC:2026-05-0{n}", 1, 1, "demo", "GRU", "REC",
                      f"2026-05-0{n}") for n in (1, 2, 3)]
    with SqliteStore(cluster.data_dir / "fares.db") as store:  # three events in the outbox
        store.save([Result(job, "ok", (Fare("VO1", "a", "b", "10.00", "BRL"),), None, "w", 0)
                    for job in jobs])
    try:
        cluster.sink()  # publishes them to the failing receiver: three dead letters
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))  # no worker
        wait_for(lambda: api_up(port), 30, "the master's HTTP port")

        def outbox() -> dict:
            status, body = call_json(port, "GET", "/api/status")
            assert status == 200, body
            return body["outbox"]

        wait_for(lambda: outbox()["dead_letters"] == 3, 30, "three dead letters")
        assert outbox()["destinations"] == {destination: {
            "backlog": 0, "dead": 3, "retrying": 0, "configured": True}}
        assert call_json(port, "POST", "/api/outbox/retry?destination=webhook%3Aelsewhere") == (
            200, {"retried": 0})
        receiver.failing = False
        assert call_json(port, "POST", "/api/outbox/retry?destination="
                         + quote(destination, safe="")) == (200, {"retried": 3})
        wait_for(lambda: len(receiver.bodies) == 3, 30, "the events sent again")
        wait_for(lambda: outbox()["dead_letters"] == 0, 30, "no dead letters left")
        assert call_json(port, "POST", "/api/outbox/retry") == (200, {"retried": 0})
    finally:
        cluster.stop()
        receiver.close()
    assert {body["job"]["id"] for body in receiver.bodies} == {job.id for job in jobs}
    assert receiver.refused == 3 and receiver.bad_signatures == 0


def test_metrics_and_openapi_are_served(running):
    status, headers, body = call(running.port, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"process_" in body
    document = running.get("/openapi.json")
    assert document["openapi"].startswith("3.")
    described = {path: sorted(method.upper() for method in operations)
                 for path, operations in document["paths"].items()}
    assert described == ENDPOINTS
    for path in ("/api/status", "/metrics", "/"):  # every GET answers HEAD, without a body
        status, headers, body = call(running.port, "HEAD", path)
        assert (status, body) == (200, b"") and headers["X-Frame-Options"] == "DENY", path


BAD = [
    ("GET", "/api/jobs?state=bogus", 400),
    ("GET", "/api/jobs?limit=0", 400),
    ("GET", "/api/jobs?limit=1001", 400),
    ("GET", "/api/jobs?limit=abc", 400),
    ("GET", "/api/jobs?offset=-1", 400),
    ("GET", "/api/jobs?cycle=0", 400),
    ("GET", "/api/jobs?state=done&state=failed", 400),
    ("GET", "/api/jobs?colour=red", 400),
    ("GET", "/api/jobs?state=%ff", 400),
    ("GET", "/api/prices", 400),
    ("GET", "/api/prices?route=gru-rec", 400),
    ("GET", "/api/prices?route=GRU-REC&date=2026-02-30", 400),
    ("GET", "/api/check?limit=x", 400),
    ("POST", "/api/jobs/abc/some-job/retry", 400),
    ("POST", "/api/jobs/1/no-such-job/retry", 404),
    ("POST", "/api/retry?cycle=-3", 400),
    ("POST", "/api/outbox/retry?destination=", 400),
    ("POST", "/api/outbox/retry?destination=a&destination=b", 400),
    ("POST", "/api/outbox/retry?colour=red", 400),
    ("GET", "/api/outbox/retry", 405),
    ("GET", "/api/nothing", 404),
    ("GET", "/api/jobs/1", 404),
    ("GET", "/api/pause", 405),
    ("DELETE", "/api/pause", 405),
    ("POST", "/api/status", 405),
    ("PATCH", "/api/jobs", 405),
]


@pytest.mark.parametrize(("method", "path", "expected"), BAD, ids=[f"{m} {p}" for m, p, _ in BAD])
def test_bad_input_is_a_4xx_json_error(running, method, path, expected):
    status, body = call_json(running.port, method, path)
    assert status == expected and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]


def test_foreign_origins_hosts_and_bodies_are_refused(running):
    status, body = call_json(running.port, "POST", "/api/pause",
                             headers={"Origin": "http://evil.example"})
    assert status == 403 and "origin" in body["error"]
    status, body = call_json(running.port, "GET", "/api/status",
                             headers={"Host": "evil.example:13180"})
    assert status == 403 and "Host" in body["error"]
    status, body = call_json(running.port, "POST", "/api/resume", body=b"",
                             headers={"Content-Length": str(10 * 1024 * 1024)})
    assert status == 413 and "body" in body["error"]
    assert running.get("/api/master")["paused"] is False  # none of them paused it


def test_a_busy_port_is_a_one_line_error(tmp_path, airline_url):
    cluster = Cluster(tmp_path, airline_url, **PLAN_VALUES)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cluster.env["VOE_HTTP_PORT"] = str(busy.getsockname()[1])
        result = cluster.voe("master", "--once", "--plan", str(cluster.plan_path), check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "VOE_HTTP_PORT" in lines[-1] and "in use" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_a_public_address_without_a_token_is_refused(tmp_path, airline_url):
    cluster = Cluster(tmp_path, airline_url, **PLAN_VALUES)
    cluster.env["VOE_HTTP_HOST"] = "0.0.0.0"
    result = cluster.voe("master", "--once", "--plan", str(cluster.plan_path), check=False)
    assert result.returncode == 2, result.stderr
    assert "VOE_HTTP_TOKEN" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_the_token_is_required_when_bound_to_every_address(tmp_path, airline_url):
    cluster = Cluster(tmp_path, airline_url, **PLAN_VALUES)
    port = int(cluster.env["VOE_HTTP_PORT"])
    cluster.env.update({"VOE_HTTP_HOST": "0.0.0.0", "VOE_HTTP_TOKEN": TOKEN,
                        "VOE_SINK_HTTP_PORT": "0"})
    try:
        cluster.master()  # no worker: the cycle stays open, the master up
        good = {"Authorization": f"Bearer {TOKEN}"}
        wait_for(lambda: api_up(port, good), 30, "the master's HTTP port")
        for path in ("/api/status", "/api/jobs", "/metrics", "/openapi.json"):
            status, headers, _ = call(port, "GET", path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        assert call(port, "POST", "/api/pause")[0] == 401
        assert call(port, "GET", "/api/status",
                    headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(port, "GET", "/api/status", headers={"Authorization": TOKEN})[0] == 401
        assert call(port, "GET", "/api/status", headers=good)[0] == 200
        assert call_json(port, "POST", "/api/pause", headers=good) == (200, {"paused": True})
        # The command line reaches a master bound to every address on loopback, with the token.
        assert cluster.voe("resume").stdout.strip() == "leasing resumed"
        assert json.loads(call(port, "GET", "/api/master", headers=good)[2])["paused"] is False
        cluster.env["VOE_HTTP_TOKEN"] = "a-wrong-token-of-enough-length"
        refused = cluster.voe("pause", check=False)
        assert refused.returncode == 1 and "the master answered 401" in refused.stderr, refused
        cluster.env["VOE_HTTP_TOKEN"] = TOKEN
        assert call(port, "GET", "/")[0] == 200  # the dashboard's files are public
        settings = cluster.voe("settings").stdout
        assert TOKEN not in settings and "VOE_HTTP_TOKEN=********" in settings
        assert TOKEN not in cluster.log("master")
    finally:
        cluster.stop()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
    ("example.com", False), ("", False)])
def test_is_loopback(host, loopback):
    assert auth.is_loopback(host) is loopback


def test_the_auth_decision():
    assert auth.authorized("", None, "127.0.0.1:13180", None) is None
    assert auth.authorized("", None, "localhost:13180", "http://localhost:13180") is None
    assert auth.authorized("", None, "evil.example", None)[0] == 403
    assert auth.authorized("", None, None, None)[0] == 403
    assert auth.authorized("", None, "127.0.0.1:1", "http://evil.example")[0] == 403
    assert auth.authorized("", None, "127.0.0.1:1", "null")[0] == 403
    assert auth.authorized(TOKEN, None, "10.0.0.5:13180", None)[0] == 401
    assert auth.authorized(TOKEN, f"Basic {TOKEN}", "10.0.0.5", None)[0] == 401
    assert auth.authorized(TOKEN, f"Bearer {TOKEN}x", "10.0.0.5", None)[0] == 401
    assert auth.authorized(TOKEN, f"Bearer {TOKEN}", "10.0.0.5:13180", None) is None
    assert auth.authorized(TOKEN, f"bearer  {TOKEN} ", "anything", None) is None
    with pytest.raises(auth.WebError, match="VOE_HTTP_TOKEN"):
        auth.check_binding("0.0.0.0", "")
    auth.check_binding("0.0.0.0", TOKEN)
    auth.check_binding("127.0.0.1", "")


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://voe:s3cret@db.example:5432/fares?sslpassword=x",
     "postgresql://voe@db.example:5432/fares"),
    ("postgresql://db.example/fares?password=s3cret", "postgresql://db.example/fares"),
    ("sqlite:///srv/voe/fares.db", "sqlite:///srv/voe/fares.db")])
def test_the_store_is_shown_without_secrets(make_settings, url, shown):
    assert redacted_store(make_settings(voe_store_url=url)) == shown


def test_commands_run_in_the_draining_thread_and_failures_go_back_to_the_caller():
    control = Control()
    answers = [control.submit("ok", n=1), control.submit("refused"), control.submit("broken")]

    def run(command: Command) -> dict:
        if command.name == "refused":
            raise CommandRefused("not now")
        if command.name == "broken":
            raise KeyError("bug")
        return {"n": command.args["n"], "thread": threading.current_thread().name}

    worker = threading.Thread(target=control.drain, args=(run,), name="master-loop")
    worker.start()
    worker.join(10)
    assert answers[0].result(timeout=1) == {"n": 1, "thread": "master-loop"}
    with pytest.raises(CommandRefused, match="not now"):
        answers[1].result(timeout=1)
    with pytest.raises(KeyError):
        answers[2].result(timeout=1)
    control.publish({"paused": True}, done=3, failed=1)
    control.publish({"paused": False}, done=4, failed=1)  # too soon for a second sample
    snapshot = control.snapshot()
    assert snapshot["paused"] is False and [row[1:] for row in snapshot["samples"]] == [[3, 1]]


def test_schemathesis_finds_no_server_error(tmp_path, airline_url):
    """Property-based: ~120 generated requests over every operation, valid and invalid ones,
    checked against the generated OpenAPI document (status codes, content types, response
    schemas, invalid input refused) and for 5xx; seeded, so every run sends the same."""
    schemathesis = pytest.importorskip("schemathesis")
    import requests
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from schemathesis import GenerationMode

    cluster = Cluster(tmp_path, airline_url, plan=DAILY_PLAN.format(**PLAN_VALUES))
    port = free_port()
    cluster.env["VOE_HTTP_PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    try:
        cluster.master()
        wait_for(lambda: api_up(port), 30, "the master's HTTP port")
        status, served = call_json(port, "GET", "/openapi.json")
        assert status == 200
        schema = schemathesis.openapi.from_dict(served)
        session = requests.Session()
        session.trust_env = False  # loopback only, never through a proxy
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == sum(len(methods) for methods in ENDPOINTS.values())
        examples = 10  # per operation and mode: about 110 requests in all
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        sent: list[int] = []
        for operation, mode in itertools.product(operations, modes):
            if mode is GenerationMode.NEGATIVE and not (operation.query or
                                                        operation.path_parameters):
                continue  # nothing to get wrong
            @seed(SCHEMATHESIS_SEED)
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call(base_url=base, session=session, timeout=20)
                sent.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.text)
                case.validate_response(response)

            check()
        assert len(sent) >= 60 and any(400 <= status < 500 for status in sent), sent
    finally:
        cluster.stop()
