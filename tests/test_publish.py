"""Publishing the outbox to real RabbitMQ, NATS JetStream and webhook receivers, from real runs.

RabbitMQ (127.0.0.1:5672, guest/guest) and NATS with JetStream (127.0.0.1:4222) run on
this machine; each test uses its own exchange, queue, stream and subjects and deletes
them. A broker connection is cut by a TCP proxy of the test's own between sink and broker.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import inspect
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import Airline, Cluster, free_port, wait_for
from tests.postgres import fresh_schema
from voe.model import Fare, Result, SearchJob
from voe.settings import load
from voe.sink.publish import Publishing
from voe.sink.publish.outbox import Drainer
from voe.sink.publish.webhook import SIGNATURE_TOLERANCE, WebhookPublisher, signature
from voe.store import SqliteStore
from voe.store.rows import FARES_COLLECTED, PRICE_CHANGED, event_id

AMQP_URL = os.environ.get("VOE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
NATS_HOST, NATS_PORT = "127.0.0.1", 4222
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
SECRET = "test-secret"
ROOT = Path(__file__).resolve().parent.parent
# The comment that marks README's verification example, the python block right after it.
VERIFY_MARK = "<!-- tests/test_publish.py executes the python block below"
# An X-Voe-Signature as voe sends it: the signing time, then the hex HMAC-SHA256.
SIGNATURE_FORMAT = re.compile(r"t=(\d+),v1=[0-9a-f]{64}")


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


# ---- a real AMQP consumer ----------------------------------------------------------------


class AmqpQueue:
    """A queue of the test bound to every event of a new exchange; deleted by ``close``."""

    def __init__(self, url: str = AMQP_URL) -> None:
        pika = pytest.importorskip("pika", reason="pika is not installed (voe[publish])")
        if not _reachable(RABBIT_HOST, RABBIT_PORT):
            pytest.skip(f"RabbitMQ does not answer at {RABBIT_HOST}:{RABBIT_PORT}")
        name = f"voe-test-{secrets.token_hex(4)}"
        self.exchange, self.queue = name, name
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        self.channel.queue_declare(self.queue, durable=True)
        self.channel.queue_bind(self.queue, self.exchange, routing_key="#")
        self.messages: list[tuple[str, dict, dict]] = []  # (routing key, properties, body)

    def drain(self) -> list[tuple[str, dict, dict]]:
        """Take every message waiting in the queue (acknowledged); return all taken so far."""
        for _ in range(100_000):
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                break
            self.messages.append((method.routing_key,
                                  {"message_id": properties.message_id, "type": properties.type,
                                   "delivery_mode": properties.delivery_mode},
                                  json.loads(body)))
        return self.messages

    def bodies(self) -> list[dict]:
        return [body for _, _, body in self.drain()]

    def close(self) -> None:
        self.channel.queue_delete(self.queue)
        self.channel.exchange_delete(self.exchange)
        self.connection.close()


# ---- a real JetStream consumer -----------------------------------------------------------


class NatsStream:
    """A stream name and subject prefix of the test; ``bodies`` reads the stream's messages."""

    def __init__(self) -> None:
        pytest.importorskip("nats", reason="nats-py is not installed (voe[publish])")
        if not _reachable(NATS_HOST, NATS_PORT):
            pytest.skip(f"NATS does not answer at {NATS_HOST}:{NATS_PORT}")
        token = secrets.token_hex(4)
        self.stream, self.prefix = f"VOETEST_{token}", f"voetest{token}"
        self.url = f"nats://{NATS_HOST}:{NATS_PORT}"

    async def _read(self) -> list[dict]:
        import nats

        client = await nats.connect(self.url, connect_timeout=3, allow_reconnect=False)
        try:
            jetstream = client.jetstream()
            info = await jetstream.stream_info(self.stream)
            bodies = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                message = await jetstream.get_msg(self.stream, seq)
                bodies.append(json.loads(message.data))
            return bodies
        finally:
            await client.close()

    def bodies(self) -> list[dict]:
        """Every message in the stream (none if the stream does not exist yet)."""
        import nats.js.errors

        try:
            return asyncio.run(self._read())
        except nats.js.errors.NotFoundError:
            return []

    async def _delete(self) -> None:
        import nats
        import nats.js.errors

        client = await nats.connect(self.url, connect_timeout=3, allow_reconnect=False)
        try:
            await client.jetstream().delete_stream(self.stream)
        except nats.js.errors.NotFoundError:
            pass  # the sink never created it: nothing to clean
        finally:
            await client.close()

    def close(self) -> None:
        asyncio.run(self._delete())


# ---- a webhook receiver ------------------------------------------------------------------


@functools.cache
def readme_verify() -> Callable[..., bool]:
    """README's ``verify`` (section "Verifying a webhook"), run from the README's own text."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(VERIFY_MARK):].split("```python\n", 1)[1].split("\n```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "README.md (Verifying a webhook)", "exec"), namespace)
    return namespace["verify"]


class Receiver:
    """A loopback HTTP server counting POSTs signed as README's example checks them (at
    ``clock``'s time); ``failing`` makes it answer 500; ``signed_at`` keeps each event's
    signature times, one per attempt."""

    def __init__(self, secret: str = SECRET, port: int = 0) -> None:
        self.secret = secret
        self.failing = False
        self.clock: Callable[[], float] = time.time
        self.bodies: list[dict] = []
        self.signed_at: dict[str, list[int]] = {}
        self.bad_signatures = 0
        self.refused = 0
        receiver = self
        verify = readme_verify()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("X-Voe-Signature", "")
                sent = SIGNATURE_FORMAT.fullmatch(header)
                if sent:
                    receiver.signed_at.setdefault(self.headers["X-Voe-Event-Id"], []).append(
                        int(sent.group(1)))
                if not sent or not verify(receiver.secret, header, body,
                                          now=receiver.clock()):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.failing:
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    event = json.loads(body)
                    assert self.headers["X-Voe-Event-Id"] == event["id"]
                    receiver.bodies.append(event)
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: the test counts requests instead."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/voe"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# ---- a TCP proxy that can be cut --------------------------------------------------------


class Proxy:
    """Forwards a loopback port to ``target``; ``cut`` drops every connection and refuses new
    ones until ``restore``. Threads of the test, stopped by ``close``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.threads: list[threading.Thread] = []
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self.listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pipe, args=(source, sink), daemon=True)
                thread.start()
                self.threads.append(thread)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other side was cut: this direction ends too
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

    def cut(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            cut, self.sockets = self.sockets, []
        for end in cut:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer
            end.close()

    def close(self) -> None:
        self.cut()
        for thread in self.threads:
            thread.join(2)


# ---- helpers -----------------------------------------------------------------------------


def _unique(bodies: list[dict], kind: str) -> dict[str, dict]:
    """Events of ``kind`` de-duplicated by id, as a consumer does."""
    return {body["id"]: body for body in bodies if body["kind"] == kind}


def _expected_collected(cluster: Cluster) -> set[str]:
    return {event_id(row["id"], row["cycle"], FARES_COLLECTED) for row in cluster.ledger_rows()}


def _expected_changes(cluster: Cluster) -> set[tuple]:
    """(job id, flight, old price, new price) between cycles 1 and 2 of the stored fares."""
    prices: dict[tuple, dict[int, str]] = {}
    for fare in cluster.store_rows("fares"):
        prices.setdefault((fare["job_id"], fare["flight"]), {})[fare["cycle"]] = fare["price"]
    return {(job, flight, seen[1], seen[2]) for (job, flight), seen in prices.items()
            if 1 in seen and 2 in seen and seen[1] != seen[2]}


@pytest.fixture
def amqp() -> Iterator[AmqpQueue]:
    queue = AmqpQueue()
    yield queue
    queue.close()


@pytest.fixture
def stream() -> Iterator[NatsStream]:
    found = NatsStream()
    yield found
    found.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def _publish_env(cluster: Cluster, amqp: AmqpQueue, stream: NatsStream, receiver: Receiver,
                 amqp_url: str = AMQP_URL, nats_url: str | None = None) -> None:
    cluster.env.update({
        "VOE_AMQP_URL": amqp_url, "VOE_AMQP_EXCHANGE": amqp.exchange,
        "VOE_NATS_URL": nats_url or stream.url, "VOE_NATS_STREAM": stream.stream,
        "VOE_NATS_SUBJECT": stream.prefix,
        "VOE_WEBHOOK_URLS": receiver.url, "VOE_WEBHOOK_SECRET": SECRET,
        "VOE_WEBHOOK_BACKOFF": "0.01", "VOE_PUBLISH_MAX_BACKOFF": "1",
    })


# ---- the tests ---------------------------------------------------------------------------


def test_a_run_publishes_each_job_once_and_price_changes_everywhere(
        tmp_path: Path, amqp: AmqpQueue, stream: NatsStream, receiver: Receiver) -> None:
    airline = Airline(tmp_path)
    cluster = Cluster(tmp_path, airline.url, airports='["GRU", "REC", "SSA"]', days=2)  # 12 jobs
    _publish_env(cluster, amqp, stream, receiver)
    drifted = None
    consumers = {"amqp": amqp.bodies, "nats": stream.bodies, "webhook": lambda: receiver.bodies}
    try:
        cluster.sink()
        cluster.worker("w1")
        assert cluster.wait_master(cluster.master()) == 0
        first = _expected_collected(cluster)
        assert len(first) == 12
        for name, bodies in consumers.items():
            wait_for(lambda bodies=bodies: set(_unique(bodies(), FARES_COLLECTED)) >= first, 30,
                     f"every fares.collected event on {name}")
        airline.stop()  # the airline moves its prices before the second cycle
        drifted = Airline(tmp_path, port=airline.port,
                          options=("--price-drift", "0.5", "--seed", "3"))
        assert cluster.wait_master(cluster.master()) == 0
        collected = _expected_collected(cluster)
        changes = _expected_changes(cluster)
        assert len(collected) == 24 and changes
        for name, bodies in consumers.items():
            wait_for(lambda bodies=bodies: len(_unique(bodies(), FARES_COLLECTED)) == 24
                     and len(_unique(bodies(), PRICE_CHANGED)) == len(changes), 30,
                     f"every event of cycle 2 on {name}")
        status = cluster.status()["outbox"]
        metrics_url = f"http://127.0.0.1:{cluster.env['VOE_SINK_HTTP_PORT']}/metrics"
        with urllib.request.urlopen(metrics_url, timeout=10) as answer:
            metrics = answer.read().decode()
    finally:
        cluster.stop()
        airline.stop()
        if drifted is not None:
            drifted.stop()
    for name, bodies in consumers.items():
        events = bodies()
        assert set(_unique(events, FARES_COLLECTED)) == collected, name
        changed = _unique(events, PRICE_CHANGED).values()
        assert {(c["job"]["id"], c["flight"], c["old_price"], c["new_price"])
                for c in changed} == changes, name
        assert {(c["old_cycle"], c["new_cycle"]) for c in changed} == {(1, 2)}
    assert len(stream.bodies()) == 24 + len(changes)  # JetStream kept each event once
    assert receiver.bad_signatures == 0
    key, properties, body = amqp.messages[0]
    assert properties == {"message_id": body["id"], "type": body["kind"], "delivery_mode": 2}
    assert key == f"{body['kind']}.demo.{body['job']['origin']}.{body['job']['destination']}"
    # Per route, events arrive in the order they were stored: cycle 1 before cycle 2.
    cycles: dict[tuple, list[int]] = {}
    for body in amqp.bodies():
        cycles.setdefault((body["job"]["origin"], body["job"]["destination"]), []).append(
            body["job"]["cycle"])
    assert all(seen == sorted(seen) for seen in cycles.values())
    assert status["dead_letters"] == 0
    assert {name: found["backlog"] for name, found in status["destinations"].items()} == {
        f"amqp:{amqp.exchange}": 0, f"nats:{stream.stream}": 0,
        f"webhook:{receiver.url}": 0}
    assert f'voe_outbox_backlog{{destination="amqp:{amqp.exchange}"}}' in metrics
    assert "publishing outbox events to amqp:" in cluster.log("sink")


def test_a_cut_broker_connection_loses_no_event(
        tmp_path: Path, amqp: AmqpQueue, stream: NatsStream, receiver: Receiver) -> None:
    rabbit, nats_proxy = Proxy((RABBIT_HOST, RABBIT_PORT)), Proxy((NATS_HOST, NATS_PORT))
    airline = Airline(tmp_path, latency_ms=150)
    cluster = Cluster(tmp_path, airline.url, airports='["GRU", "REC", "SSA", "POA"]',
                      days=3)  # 36 jobs, a few seconds with one slow worker
    _publish_env(cluster, amqp, stream, receiver,
                 amqp_url=f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F",
                 nats_url=f"nats://127.0.0.1:{nats_proxy.port}")
    try:
        cluster.sink()
        cluster.worker("w1", concurrency=2, prefetch=0)
        master = cluster.master()
        wait_for(lambda: len(amqp.bodies()) >= 3 and len(stream.bodies()) >= 3, 60,
                 "the first events through the proxies")
        rabbit.cut()
        nats_proxy.cut()
        time.sleep(2.5)  # jobs keep being stored meanwhile; their events wait in the outbox
        rabbit.restore()
        nats_proxy.restore()
        assert cluster.wait_master(master) == 0
        expected = _expected_collected(cluster)
        assert len(expected) == 36
        for name, bodies in (("amqp", amqp.bodies), ("nats", stream.bodies)):
            wait_for(lambda bodies=bodies: set(_unique(bodies(), FARES_COLLECTED)) == expected,
                     60, f"every event on {name} after the cut")
        log = cluster.log("sink")
    finally:
        cluster.stop()
        airline.stop()
        rabbit.close()
        nats_proxy.close()
    outages = [line for line in log.splitlines() if "unreachable (" in line]
    assert 1 <= sum(f"amqp:{amqp.exchange} " in line for line in outages) <= 2, outages
    assert 1 <= sum(f"nats:{stream.stream} " in line for line in outages) <= 2, outages
    assert "reachable again" in log
    assert len(_unique(receiver.bodies, FARES_COLLECTED)) == 36  # the webhook never stopped


def test_a_run_on_postgresql_publishes_from_its_outbox(tmp_path: Path,
                                                       receiver: Receiver) -> None:
    with fresh_schema() as url:  # skips without PostgreSQL: before any process starts
        airline = Airline(tmp_path)
        cluster = Cluster(tmp_path, airline.url, airports='["GRU", "REC"]', days=2)  # 4 jobs
        cluster.env.update({"VOE_WEBHOOK_URLS": receiver.url, "VOE_WEBHOOK_SECRET": SECRET})
        cluster.env["VOE_STORE_URL"] = url
        try:
            cluster.sink()
            cluster.worker("w1")
            assert cluster.wait_master(cluster.master()) == 0
            expected = _expected_collected(cluster)
            wait_for(lambda: set(_unique(receiver.bodies, FARES_COLLECTED)) == expected, 30,
                     "the events of a PostgreSQL store")
            outbox = cluster.status()["outbox"]
        finally:
            cluster.stop()
            airline.stop()
    assert len(expected) == 4 and len(receiver.bodies) == 4 and receiver.bad_signatures == 0
    assert outbox["destinations"][f"webhook:{receiver.url}"]["backlog"] == 0


def _job(number: int) -> SearchJob:
    return SearchJob(f"demo:GRU-REC:2025-05-{number + 1:02d}", 1, 1, "demo", "GRU", "REC",
                     f"2025-05-{number + 1:02d}")


def _voe(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voe", *args], capture_output=True, text=True,
                          timeout=60, cwd=data_dir, env={**os.environ, **env})


def test_webhook_dead_letters_and_their_retry(tmp_path: Path, receiver: Receiver,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"VOE_DATA_DIR": str(tmp_path), "VOE_WEBHOOK_URLS": receiver.url,
           "VOE_WEBHOOK_SECRET": SECRET, "VOE_WEBHOOK_BACKOFF": "0.01",
           "VOE_WEBHOOK_MAX_ATTEMPTS": "5"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with SqliteStore(tmp_path / "fares.db") as store:
        store.save([Result(_job(n), "ok", (Fare("VO1", "a", "b", "10.00", "BRL"),), None, "w", 0)
                    for n in range(3)])
    receiver.failing = True
    publishing = Publishing(load(), tmp_path / "fares.db").start()
    try:
        wait_for(lambda: len(json.loads(_voe(tmp_path, env, "outbox", "--json").stdout)) == 3,
                 30, "three dead letters")
        assert receiver.refused == 15 and receiver.bodies == []  # 5 attempts each
        listed = _voe(tmp_path, env, "outbox")
        assert listed.returncode == 0 and listed.stdout.count("HTTP 500 after 5 attempt") == 3
        status = json.loads(_voe(tmp_path, env, "status", "--json").stdout)["outbox"]
        assert status["dead_letters"] == 3
        assert status["destinations"][f"webhook:{receiver.url}"] == {
            "backlog": 0, "dead": 3, "retrying": 0, "configured": True}
        assert "3 dead letter" in _voe(tmp_path, env, "status").stdout
        receiver.failing = False
        time.sleep(1.1)  # the next second: a re-sent dead letter is signed anew, not replayed
        retried = _voe(tmp_path, env, "outbox", "retry")
        assert retried.returncode == 0 and "3 dead letter(s)" in retried.stdout
        wait_for(lambda: len(receiver.bodies) == 3, 30, "the retried events")
        wait_for(lambda: _voe(tmp_path, env, "outbox", "--json").stdout.strip() == "[]", 30,
                 "no dead letters left")
    finally:
        publishing.stop()
    assert {body["job"]["id"] for body in receiver.bodies} == {_job(n).id for n in range(3)}
    assert receiver.bad_signatures == 0
    for stamps in receiver.signed_at.values():  # 5 refused attempts, then the re-sent one
        assert len(stamps) == 6 and stamps[-1] > max(stamps[:-1]), stamps
    usage = _voe(tmp_path, env, "outbox", "resend")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    assert _voe(tmp_path, env, "outbox", "--help").returncode == 0


def test_a_receiver_that_cannot_be_reached_delays_events_without_dead_letters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    monkeypatch.setenv("VOE_WEBHOOK_URLS", f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("VOE_PUBLISH_MAX_BACKOFF", "0.2")
    monkeypatch.setenv("VOE_WEBHOOK_SECRET", SECRET)
    with SqliteStore(tmp_path / "fares.db") as store:
        store.save([Result(_job(0), "ok", (), None, "w", 0)])
    name = f"webhook:http://127.0.0.1:{port}/hook"
    caplog.set_level("INFO", logger="voe.publish")
    publishing = Publishing(load(), tmp_path / "fares.db").start()
    receiver = None
    try:
        time.sleep(1.5)  # several tries, all refused
        with SqliteStore(tmp_path / "fares.db", readonly=True) as reader:
            assert reader.outbox_backlog([name])[name] == {"backlog": 1, "dead": 0, "retrying": 0}
        receiver = Receiver(port=port)
        wait_for(lambda: len(receiver.bodies) == 1, 10, "the delayed event")
    finally:
        publishing.stop()
        if receiver is not None:
            receiver.close()
    assert sum("unreachable" in record.message for record in caplog.records) == 1
    assert any("reachable again" in record.message for record in caplog.records)


def test_webhooks_without_a_secret_keep_the_sink_from_starting(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, "http://127.0.0.1:9")
    cluster.env.update({"VOE_WEBHOOK_URLS": "http://127.0.0.1:9/hook", "VOE_WEBHOOK_SECRET": ""})
    result = cluster.voe("sink", "--no-console", check=False)
    assert result.returncode == 2, result
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "VOE_WEBHOOK_SECRET" in result.stderr


def test_the_signature_signs_the_time_and_the_body() -> None:
    header = signature(SECRET, b'{"id": "e1"}', 1767225600)
    assert SIGNATURE_FORMAT.fullmatch(header) and header.startswith("t=1767225600,v1=")
    assert signature(SECRET, b'{"id": "e1"}', 1767225601) != header
    assert signature(SECRET, b'{"id": "e2"}', 1767225600) != header
    assert signature("another secret", b'{"id": "e1"}', 1767225600) != header


def test_the_readme_verification_example_accepts_fresh_signatures_only() -> None:
    readme = (ROOT / "README.md").read_text()
    events = readme.index("\n## Events\n")
    assert events < readme.index(VERIFY_MARK) < readme.index("\n## ", events + 1)
    verify = readme_verify()
    assert inspect.signature(verify).parameters["tolerance"].default == SIGNATURE_TOLERANCE
    body, now = b'{"id": "e1", "kind": "fares.collected"}', time.time()
    fresh = signature(SECRET, body, int(now))
    assert verify(SECRET, fresh, body)  # as sent: its own clock
    assert verify(SECRET, fresh, body, now=now + SIGNATURE_TOLERANCE - 1)
    assert not verify(SECRET, fresh, body.replace(b"e1", b"e2"), now=now)  # tampered body
    assert not verify("another secret", fresh, body, now=now)
    assert not verify(SECRET, fresh, body, now=now + SIGNATURE_TOLERANCE + 1)  # a late replay
    assert not verify(SECRET, fresh, body, now=now + 86400)
    assert verify(SECRET, fresh, body, now=now + 3600, tolerance=7200)
    assert not verify(SECRET, signature(SECRET, body, int(now) + 3600), body, now=now)  # future
    stamp, digest = fresh.split(",")
    replayed = f"t={int(now) + 3600},{digest}"  # an old signature given a new time
    assert not verify(SECRET, replayed, body, now=now + 3600)
    for malformed in ("", "sha256=" + digest.removeprefix("v1="), digest, stamp,
                      f"t=soon,{digest}", f"{stamp},v1=", f"{stamp},v1=é{digest[4:]}"):
        assert not verify(SECRET, malformed, body, now=now), malformed
    example = re.search(r"^X-Voe-Signature: (\S+)$", readme, re.MULTILINE)
    assert example and verify("s3cret", example.group(1), b"{}", now=1767225600)


def test_a_dead_letter_sent_again_later_is_signed_at_its_new_attempt(
        tmp_path: Path, receiver: Receiver) -> None:
    clock = [time.time()]  # the sink's and the receiver's, moved on by the test
    receiver.clock = lambda: clock[0]
    receiver.failing = True
    with SqliteStore(tmp_path / "fares.db") as store:
        store.save([Result(_job(n), "ok", (), None, "w", 0) for n in range(2)])
    publisher = WebhookPublisher(receiver.url, SECRET, 2, 0.01, 5, clock=lambda: clock[0])
    stop = threading.Event()
    drainer = Drainer(publisher, lambda: SqliteStore(tmp_path / "fares.db"), stop, 0.2)
    drainer.start()
    try:
        wait_for(lambda: drainer.dead == 2, 10, "two dead letters")
        clock[0] += 3600  # an hour on: the first signatures are far outside the tolerance
        receiver.failing = False
        with SqliteStore(tmp_path / "fares.db") as store:
            assert store.retry_dead_letters(None) == 2  # what `voe outbox retry` does
        wait_for(lambda: len(receiver.bodies) == 2, 10, "the re-sent dead letters")
    finally:
        stop.set()
        drainer.join(10)
    assert receiver.bad_signatures == 0 and receiver.refused == 4
    assert (drainer.published, drainer.dead) == (2, 2)
    first = int(clock[0]) - 3600
    assert list(receiver.signed_at.values()) == [[first, first, first + 3600]] * 2


def _hook_server(tmp_path: Path, name: str, host: str, status: int,
                 location: str | None = None) -> tuple[subprocess.Popen, Path, int]:
    """Start ``tests/hookserver.py`` on ``host``; return its process, log and port."""
    log = tmp_path / f"{name}.jsonl"
    with open(tmp_path / f"{name}.err", "ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.hookserver", host, str(log), str(status),
             *([location] if location else [])], cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=stderr)
    found = wait_for(lambda: log.exists() and _hook_log(log), 10, f"{name} listening")
    return process, log, found[0]["listening"]


def _hook_log(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_redirecting_receiver_gets_dead_letters_and_its_target_nothing(
        tmp_path: Path) -> None:
    servers: list[subprocess.Popen] = []
    cluster = None
    try:
        target, target_log, target_port = _hook_server(tmp_path, "target", "127.0.0.2", 200)
        servers.append(target)
        elsewhere = f"http://127.0.0.2:{target_port}/stolen"
        redirectors = {}
        for status in (307, 302):
            process, log, port = _hook_server(tmp_path, f"r{status}", "127.0.0.1", status,
                                              elsewhere)
            servers.append(process)
            redirectors[status] = (f"http://127.0.0.1:{port}/hooks/voe", log)
        cluster = Cluster(tmp_path, "http://127.0.0.1:9")
        cluster.env.update({
            "VOE_WEBHOOK_URLS": ",".join(url for url, _ in redirectors.values()),
            "VOE_WEBHOOK_SECRET": SECRET, "VOE_WEBHOOK_MAX_ATTEMPTS": "2",
            "VOE_WEBHOOK_BACKOFF": "0.01"})
        with SqliteStore(cluster.data_dir / "fares.db") as store:
            store.save([Result(_job(n), "ok", (), None, "w", 0) for n in range(2)])
        cluster.sink()

        def dead_letters() -> list[dict]:
            return json.loads(cluster.voe("outbox", "--json").stdout)

        wait_for(lambda: len(dead_letters()) == 4 or len(_hook_log(target_log)) > 1, 30,
                 "two dead letters per redirector (or a request at their target)")
        dead = dead_letters()
        status = cluster.status()["outbox"]
        cluster.stop()
        sink_log = cluster.log("sink")
    finally:
        if cluster is not None:
            cluster.stop()
        for process in servers:
            process.terminate()
            process.wait(10)
    for code, (url, log) in redirectors.items():
        destination = f"webhook:{url}"
        errors = {letter["error"] for letter in dead if letter["destination"] == destination}
        assert errors == {f"HTTP {code} redirect to {elsewhere} (not followed)"}
        assert status["destinations"][destination] == {
            "backlog": 0, "dead": 2, "retrying": 0, "configured": True}
        assert f"stopped publishing to {destination}: 0 events published, 2 dead letters" \
            in sink_log
        posts = [entry for entry in _hook_log(log) if "method" in entry]
        assert [entry["method"] for entry in posts] == ["POST"] * 4  # 2 attempts per event
        assert all(SIGNATURE_FORMAT.fullmatch(entry["signature"]) for entry in posts)
    assert _hook_log(target_log) == [{"listening": target_port}]  # not even a connection


def test_a_redirect_error_masks_the_url_token_and_escapes_the_receivers_text(
        tmp_path: Path) -> None:
    answers = [(301, "http://127.0.0.2/x?token=abc123\x1b[2J" + "a" * 300), (303, None)]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            self.rfile.read(int(self.headers["Content-Length"]))
            status, location = answers[0]
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: the test reads the publisher's outcome."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with SqliteStore(tmp_path / "fares.db") as store:
        store.save([Result(_job(0), "ok", (), None, "w", 0)])
        events = store.outbox_pending("test", 10)
    publisher = WebhookPublisher(f"http://127.0.0.1:{server.server_address[1]}/h?token=abc123",
                                 SECRET, 1, 0.01, 5)
    try:
        first = publisher.publish(events, threading.Event())
        answers.pop(0)
        second = publisher.publish(events, threading.Event())
    finally:
        publisher.close()
        server.shutdown()
        server.server_close()
    [(_, _, error)] = first.dead
    assert error.startswith("HTTP 301 redirect to http://127.0.0.2/x?********\\x1b[2Jaaa")
    assert error.endswith("a... (not followed)") and "\x1b" not in error and len(error) < 250
    assert second.dead == [(events[0].seq, 1, "HTTP 303 redirect without a Location "
                                               "(not followed)")]
