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
