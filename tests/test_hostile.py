"""Garbage, oversized and wrong-schema frames on every bound port: counted, logged, survived."""

from __future__ import annotations

import re
import socket

import msgpack
import pytest
import zmq

from tests.cluster import Airline, Cluster, assert_stored_exactly_once, wait_for
from voe import protocol

LIMIT = 64 * 1024  # VOE_MAX_MESSAGE_BYTES for this test


def hostile_frames() -> list[bytes]:
    return [
        b"",
        b"\xc1\xc1 not msgpack",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 99, "t": "hello"}),
        msgpack.packb({"v": 1, "t": "hello", "w": 7}),
        msgpack.packb({"v": 1, "t": "no-such-type"}),
        b"\x91" * 3000 + b"\xc0",
        b"\x00" * (LIMIT + 10),  # over the limit, under ZeroMQ's hard cap: counted
        protocol.encode_acks([]),  # valid, but nobody sends acks to these ports
    ]


def rejected(log: str) -> set[str]:
    return set(re.findall(r"rejected message on [^:]+: (\S+)", log))


@pytest.fixture
def airline(tmp_path):
    airline = Airline(tmp_path)
    yield airline
    airline.stop()


def test_every_bound_port_survives_hostile_peers(tmp_path, airline):
    cluster = Cluster(tmp_path, airline.url)
    cluster.env["VOE_MAX_MESSAGE_BYTES"] = str(LIMIT)
    context = zmq.Context()
    try:
        cluster.sink()
        master = cluster.master()
        jobs_port = int(cluster.env["VOE_JOBS_PORT"])
        control_port = int(cluster.env["VOE_CONTROL_PORT"])
        results_port = int(cluster.env["VOE_RESULTS_PORT"])
        wait_for(lambda: "listening" in cluster.log("master") and "listening" in
                 cluster.log("sink"), 30, "master and sink to listen")

        # Raw TCP that is not ZeroMQ at all, and frames above ZeroMQ's hard cap.
        for port in (jobs_port, control_port, results_port):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 64)
        sockets = []
        for port, kind in ((jobs_port, zmq.DEALER), (control_port, zmq.DEALER),
                           (results_port, zmq.PUSH)):
            peer = cluster.curve_client(context.socket(kind),
                                        "sink" if port == results_port else "master")
            peer.setsockopt(zmq.LINGER, 2000)
            peer.connect(f"tcp://127.0.0.1:{port}")
            for frame in hostile_frames():
                peer.send(frame)
            if kind == zmq.DEALER:
                peer.send_multipart([b"one", b"two", b"three"])
            sockets.append(peer)
        huge = cluster.curve_client(context.socket(zmq.PUSH), "sink")
        huge.setsockopt(zmq.LINGER, 2000)
        huge.connect(f"tcp://127.0.0.1:{results_port}")
        huge.send(b"\x00" * (3 * LIMIT))  # above the hard cap: ZeroMQ drops the connection
        sockets.append(huge)

        expected = {"undecodable", "not-a-map", "bad-version", "bad-schema", "unknown-type",
                    "oversized", "unexpected-type"}
        wait_for(lambda: expected <= rejected(cluster.log("master")), 30,
                 "the master to count every kind of bad frame")
        wait_for(lambda: expected <= rejected(cluster.log("sink")), 30,
                 "the sink to count every kind of bad frame")
        assert "bad-envelope" in cluster.log("master")

        cluster.worker("w1")  # the pipeline still works, exactly once
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, airline)
        assert "Traceback" not in cluster.log("master") + cluster.log("sink")
        for peer in sockets:
            peer.close(0)
    finally:
        cluster.stop()
        context.destroy(linger=0)  # never hangs on a socket a failed test left open


FORGED = "w9\n2026-12-04 12:00:00 INFO voe.master worker admin joined"


@pytest.mark.parametrize("name", [FORGED, "w9\x1b[2J\x1b[31mred", "w9\rover", "w9\x85",
                                  "w9\u2028forged", "w9\u202egnp.exe", "w9\u200b", "w9\ue000"])
def test_a_name_with_control_characters_is_refused_at_decode(name):
    for frame in (protocol.encode_hello(name, 1, 1), protocol.encode_hello("w9", 1, 1, (), name),
                  protocol.encode_throttled({name: 1}), protocol.encode_heartbeat(name)):
        with pytest.raises(protocol.ProtocolError) as refused:
            protocol.decode(frame, LIMIT)
        assert refused.value.reason == "bad-schema"
    assert protocol.decode(protocol.encode_hello("café-w9 (host)", 1, 1), LIMIT).worker == \
        "café-w9 (host)"


def test_a_forged_worker_name_neither_writes_a_log_line_nor_reaches_the_terminal(tmp_path,
                                                                                  airline):
    cluster = Cluster(tmp_path, airline.url)
    context = zmq.Context()
    try:
        cluster.master()
        wait_for(lambda: "listening" in cluster.log("master"), 30, "the master to listen")
        peer = cluster.curve_client(context.socket(zmq.DEALER), "master")
        peer.setsockopt(zmq.LINGER, 2000)
        peer.connect(f"tcp://127.0.0.1:{cluster.env['VOE_JOBS_PORT']}")
        for name in (FORGED, "w9\x1b[2J\x1b[31mred", "w9\u2028" + FORGED[3:]):
            peer.send(protocol.encode_hello(name, 4, 1))
        peer.send(protocol.encode_hello("honest-w9", 4, 1))
        wait_for(lambda: "worker honest-w9 joined" in cluster.log("master"), 30,
                 "the honest hello to be heard")
        log = cluster.log("master")
        assert "bad-schema" in log
        assert "worker admin joined" not in log and "\x1b" not in log
        status = cluster.voe("status", check=False)
        assert "\x1b" not in status.stdout and "admin" not in status.stdout
        peer.close(0)
        # The worker command refuses such a name itself: a usage error, exit status 2.
        for name in ("w\nforged", "w\u2028forged", "w\x1b[31mred"):
            refused = cluster.voe("worker", "--name", name, check=False)
            assert refused.returncode == 2 and "control characters" in refused.stderr
            assert "forged" not in refused.stderr and "\x1b" not in refused.stderr
    finally:
        cluster.stop()
        context.destroy(linger=0)
