"""CURVE on every socket: strangers refused and counted, late keys admitted, secrets kept."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from tests.cluster import Airline, Cluster, assert_stored_exactly_once, free_port, wait_for
from voe import protocol
from voe.processes import Child


@pytest.fixture
def airline(tmp_path):
    airline = Airline(tmp_path)
    yield airline
    airline.stop()


def secret_keys(*directories: Path) -> list[str]:
    """The z85 text of every secret key in ``directories``."""
    found = []
    for directory in directories:
        for path in directory.glob("*.key_secret"):
            _, secret = zmq.auth.load_certificate(str(path))
            assert secret
            found.append(secret.decode())
    return found


def keys_dir_for(tmp: Path, name: str, source: Path, secret: Path) -> Path:
    """A worker's own keys dir: the servers' public keys and its client key pair."""
    directory = tmp / name
    directory.mkdir()
    for server in ("master", "sink"):
        shutil.copyfile(source / f"{server}.key", directory / f"{server}.key")
    shutil.copyfile(secret, directory / "client.key_secret")
    return directory


def test_curve_run_refuses_strangers_admits_late_keys_and_keeps_secrets(tmp_path, airline):
    cluster = Cluster(tmp_path, airline.url)
    cloud_secrets = {"AWS_ACCESS_KEY": "AKIAVOETESTSECRET01", "KEY_PASS": "pass-phrase-7c1d",
                     "AWS_SECRET_KEY": "aws-secret-key-9f3e2b"}
    cluster.env.update(cloud_secrets)  # every role runs with them in its environment
    keys = cluster.data_dir / "keys"
    other = tmp_path / "other"
    context = zmq.Context()
    plain = []
    try:
        sink = cluster.sink()
        master = cluster.master()
        wait_for(lambda: "listening" in cluster.log("master") and "listening" in
                 cluster.log("sink"), 30, "master and sink to listen")
        assert "CURVE is on" in cluster.log("master") and "CURVE is on" in cluster.log("sink")

        # A worker with keys from another data dir, and plain pyzmq clients without CURVE.
        subprocess.run([sys.executable, "-m", "voe", "keys", "init"], check=True, timeout=60,
                       env=cluster.env | {"VOE_DATA_DIR": str(other)}, capture_output=True)
        stranger = cluster.spawn("stranger", "worker", "--name", "stranger",
                                 env=cluster.env | {"VOE_KEYS_DIR": str(other / "keys")})
        wrong = keys_dir_for(tmp_path, "wrong-keys", keys, other / "keys/client.key_secret")
        intruder = cluster.spawn("intruder", "worker", "--name", "intruder",
                                 env=cluster.env | {"VOE_KEYS_DIR": str(wrong)})
        hello = protocol.encode_hello("plain", 4, 1)
        for port, kind in ((cluster.env["VOE_JOBS_PORT"], zmq.DEALER),
                           (cluster.env["VOE_CONTROL_PORT"], zmq.DEALER),
                           (cluster.env["VOE_RESULTS_PORT"], zmq.PUSH)):
            peer = context.socket(kind)
            peer.setsockopt(zmq.LINGER, 0)
            peer.connect(f"tcp://127.0.0.1:{port}")
            if kind == zmq.DEALER:
                peer.send(hello, zmq.NOBLOCK)
            plain.append(peer)

        intruder_public = zmq.auth.load_certificate(str(other / "keys/client.key"))[0]
        refused_key = f"refused peer with client key {intruder_public.decode()}"
        wait_for(lambda: refused_key in cluster.log("master"), 30, "the master to refuse "
                 "the wrong key")
        wait_for(lambda: refused_key in cluster.log("sink") or intruder.poll() is not None, 30,
                 "the sink to refuse the wrong key")
        wait_for(lambda: "refused peer without CURVE" in cluster.log("master"), 30,
                 "the master to refuse plain clients")
        wait_for(lambda: "refused peer without CURVE" in cluster.log("sink"), 30,
                 "the sink to refuse plain clients")
        wait_for(lambda: "refused peer with foreign keys" in cluster.log("master"), 30,
                 "the master to refuse a worker with another cluster's keys")
        jobs = cluster.jobs()
        assert jobs["done"] == 0 and jobs["leased"] == 0, jobs
        assert "intruder" not in cluster.log("master")
        assert "stranger" not in cluster.log("master")

        # A worker key added while the servers run is admitted without a restart.
        added = cluster.voe("keys", "add", "late-worker")
        assert "late-worker.key_secret" in added.stdout
        late = keys_dir_for(tmp_path, "late-keys", keys, keys / "late-worker.key_secret")
        worker = cluster.spawn("w1", "worker", "--name", "w1",
                               env=cluster.env | {"VOE_KEYS_DIR": str(late)})
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, airline)
        outcomes = cluster.store_rows("outcomes")
        assert {row["worker"] for row in outcomes} == {"w1"}
        # Each refused peer is logged once, however often it came back.
        assert cluster.log("master").count(refused_key) == 1
        assert sink.poll() is None, "the sink died"

        # Secrets: never in process arguments, logs, status or settings.
        secrets = secret_keys(keys, other / "keys", late)
        assert len(set(secrets)) == 7  # master, sink, client, late-worker; other: 3
        secrets += list(cloud_secrets.values())
        for child in (sink, worker, intruder, stranger):
            if child.poll() is None:
                arguments = Path(f"/proc/{child.pid}/cmdline").read_bytes().decode()
                assert not any(secret in arguments for secret in secrets)
        outputs = [cluster.voe("status", "--json").stdout, cluster.voe("settings").stdout]
        logs = [path.read_text(errors="replace") for path in
                [*cluster.data_dir.glob("*.log"), *tmp_path.glob("*.err")]]
        assert logs and all(not re.search("|".join(map(re.escape, secrets)), text)
                            for text in logs + outputs)
    finally:
        for peer in plain:
            peer.close(0)
        cluster.stop()
        context.destroy(linger=0)  # never hangs on a socket a failed test left open


def test_keys_init_modes_missing_keys_and_curve_off(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VOE_DATA_DIR": str(tmp_path / "data"),
           "HOME": str(tmp_path), "VOE_JOBS_PORT": str(free_port()),
           "VOE_CONTROL_PORT": str(free_port()), "VOE_RESULTS_PORT": str(free_port())}

    def voe(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "voe", *args], env=env | extra,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    for role in ("master", "worker", "sink"):
        result = voe(role, "--no-console")
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and "voe keys init" in result.stderr
    assert voe("keys", "init").returncode == 0
    assert "nothing changed" in voe("keys", "init").stdout
    keys = tmp_path / "data" / "keys"
    for path in [*keys.iterdir(), *(keys / "authorized").iterdir()]:
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o600, path
    assert keys.stat().st_mode & 0o777 == 0o700
    assert voe("keys", "add", "master").returncode == 2
    settings = voe("settings").stdout
    assert "VOE_CURVE=True" in settings
    assert not any(secret in settings for secret in secret_keys(keys))

    # Off takes an explicit setting and warns at start.
    off_log = tmp_path / "off" / "master.log"
    master = Child("master", ["master", "--no-console"],
                   env | {"VOE_CURVE": "off", "VOE_DATA_DIR": str(tmp_path / "off")},
                   tmp_path, tmp_path / "off.err")
    try:
        wait_for(lambda: off_log.exists() and "listening" in off_log.read_text(), 30,
                 "the master to start without CURVE")
        assert "CURVE is OFF" in off_log.read_text()
    finally:
        master.stop(timeout=10)


def test_a_worker_bundle_carries_its_own_key_under_the_shared_names(tmp_path):
    from voe import keys

    folder = tmp_path / "keys"
    keys.init(folder)
    assert keys.ensure_client(folder, "worker-i-1") is True
    assert keys.ensure_client(folder, "worker-i-1") is False  # made once, then kept
    own = keys.bundle(folder, "worker", "worker-i-1")
    shared = keys.bundle(folder, "worker")
    assert sorted(own) == sorted(shared) == ["client.key", "client.key_secret", "master.key",
                                             "sink.key"]
    assert own["client.key_secret"] == (folder / "worker-i-1.key_secret").read_text()
    assert own["client.key"] != shared["client.key"]
    assert own["master.key"] == shared["master.key"]
    assert keys.admitted_key(folder, "worker-i-1") == own["client.key"]
    for server in ("master", "sink"):  # servers admit it, and never get its secret
        files = keys.bundle(folder, server)
        assert files["authorized/worker-i-1.key"] == own["client.key"]
        assert own["client.key_secret"] not in files.values()


def test_a_key_removed_from_the_authorized_folder_is_refused_at_the_next_handshake(tmp_path):
    from voe import keys
    from voe.sockets import AuthorizedKeys

    folder = tmp_path / "keys"
    keys.init(folder)
    keys.add_client(folder, "worker-a")
    public = zmq.auth.load_certificate(str(folder / "worker-a.key"))[0]
    authorized = AuthorizedKeys(keys.authorized_dir(folder), "master")
    assert authorized.callback("global", public)
    (keys.authorized_dir(folder) / "worker-a.key").unlink()
    assert not authorized.callback("global", public)
    shared = zmq.auth.load_certificate(str(folder / "client.key"))[0]
    assert authorized.callback("global", shared)


class _Callback:
    """A ZAP callback that admits one key, refuses the others, and fails on ``broken``."""

    def __init__(self, admitted: bytes, broken: bytes) -> None:
        self.admitted, self.broken = admitted, broken

    def callback(self, domain: str, key: bytes) -> bool:
        if key == self.broken:
            raise RuntimeError("a bug in the callback")
        return key == self.admitted


def test_the_zap_thread_answers_admits_refuses_and_survives_a_failing_request(caplog):
    from voe.sockets import PeerAuthenticator

    context = zmq.Context()
    admitted, refused, broken = (bytes([n]) * 32 for n in (1, 2, 3))
    authenticator = PeerAuthenticator(context)
    authenticator.start()
    asker = context.socket(zmq.REQ)
    asker.linger = 0
    asker.rcvtimeo = 5000
    asker.connect("inproc://zeromq.zap.01")
    try:
        authenticator.configure_curve_callback(
            "master", _Callback(zmq.utils.z85.encode(admitted), zmq.utils.z85.encode(broken)))

        def ask(key: bytes, request: bytes) -> list[bytes]:
            asker.send_multipart([b"1.0", request, b"master", b"10.1.2.3", b"", b"CURVE", key])
            return asker.recv_multipart()

        with caplog.at_level("ERROR", logger="voe.security"):
            assert ask(admitted, b"r1")[1:3] == [b"r1", b"200"]
            assert ask(refused, b"r2")[1:3] == [b"r2", b"400"]
            assert ask(broken, b"r3")[1:3] == [b"r3", b"500"]  # refused, not left unanswered
            assert ask(admitted, b"r4")[1:3] == [b"r4", b"200"]  # and the thread goes on
        assert "ZAP request failed" in caplog.text
    finally:
        asker.close(0)
        authenticator.stop()
        context.term()
    assert authenticator._thread is None


def test_a_zap_handler_that_waits_is_an_error_not_a_hang():
    import asyncio

    from voe.sockets import _run_to_end

    async def waits() -> None:
        await asyncio.sleep(0)

    async def answers() -> None:
        return None

    _run_to_end(answers())
    with pytest.raises(RuntimeError, match="waited"):
        _run_to_end(waits())


def test_refusal_bookkeeping_is_bounded_in_memory_and_lines(caplog):
    from voe.sockets import Refusals

    now = [0.0]
    refusals = Refusals(remembered=10, interval=5.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="voe.security"):
        for n in range(1000):
            refusals.refuse("with client key", f"key-{n} from 10.0.0.{n % 7}", "not authorized")
        assert len(refusals.peers) == 10 and refusals.total == 1000
        assert refusals.peers.popitem(last=False)[0][1].startswith("key-990 ")
        refusals.timer.cancel()
        refusals.summarize()
        refusals.refuse("without CURVE", "on the master's tcp://0.0.0.0:1", "failed handshake")
        assert refusals.timer is None
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("refused peer with client key key-0 from 10.0.0.0: "
                               "not authorized (1 refusals in all)")
    assert lines[1].startswith("refused 999 more connection(s) in the last 5 s "
                               "(999 with client key); 1000 refusals in all")
    # Another kind of refusal has its own line even within the interval.
    assert lines[2].startswith("refused peer without CURVE on the master's")
    assert len(lines) == 3


def test_a_thousand_random_keys_leave_master_memory_and_log_bounded(tmp_path):
    import psutil

    cluster = Cluster(tmp_path, "http://127.0.0.1:9")  # no worker ever asks the airline
    context = zmq.Context()
    try:
        master = cluster.master()
        wait_for(lambda: "listening" in cluster.log("master"), 30, "the master to listen")
        server_public = zmq.auth.load_certificate(str(cluster.data_dir / "keys/master.key"))[0]
        process = psutil.Process(master.pid)

        def flood(count: int) -> None:
            """``count`` connections, each with a fresh random client key, 200 at a time.

            Each batch is held open 1.5 s, for its handshakes, then closed; nobody
            reconnects, so every key is refused once.
            """
            for start in range(0, count, 200):
                peers = []
                for _ in range(min(200, count - start)):
                    peer = context.socket(zmq.DEALER)
                    peer.linger = 0
                    peer.reconnect_ivl = -1
                    peer.curve_serverkey = server_public
                    peer.curve_publickey, peer.curve_secretkey = zmq.curve_keypair()
                    peer.connect(f"tcp://127.0.0.1:{cluster.env['VOE_CONTROL_PORT']}")
                    peers.append(peer)
                time.sleep(1.5)
                for peer in peers:
                    peer.close(0)

        def refused(log: str) -> int:
            return max(map(int, re.findall(r"(\d+) refusals in all", log)), default=0)

        # A first thousand warms ZeroMQ's and the allocator's pools up and fills the
        # memory of refused peers; the second must not grow the master any further.
        flood(1000)
        wait_for(lambda: refused(cluster.log("master")) >= 900, 20, "900 refusals counted")
        baseline, refused_before = process.memory_info().rss, refused(cluster.log("master"))
        started = time.monotonic()
        flood(1000)
        # A loaded machine may close a few connections before their handshake.
        wait_for(lambda: refused(cluster.log("master")) >= refused_before + 900, 20,
                 "at least 900 of the 1,000 keys refused")
        assert time.monotonic() - started < 40
        growth = process.memory_info().rss - baseline
        log = cluster.log("master")
        lines = [line for line in log.splitlines() if "refused" in line]
        assert len(lines) < 30, lines[:40]
        assert "from 127.0.0.1" in log  # the peer's address, not the master's endpoint
        assert growth < 4 * 1024 * 1024, f"master RSS grew by {growth} bytes"
        assert master.poll() is None
    finally:
        cluster.stop()
        context.destroy(linger=0)
