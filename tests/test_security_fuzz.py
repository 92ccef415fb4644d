"""Generated frames against the live master's and sink's ports (as an authorized client).

Hypothesis generates raw bytes and MessagePack maps shaped like voe's messages;
the corpus in tests/fuzz_corpus/ (frames that once found bugs, or nearly) is
replayed every run. Master and sink must survive, log no traceback, and still
store every fare of the plan exactly once afterwards.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import NamedTuple

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cluster import Airline, Cluster, assert_stored_exactly_once, wait_for
from tests.fuzzing import FRAMES, SEED, mutate, seeds
from voe import protocol
from voe.processes import Child

CORPUS = Path(__file__).parent / "fuzz_corpus"
EXAMPLES = 400  # per port kind; each example is a batch of frames
ROUND = 10_000  # mutated frames sent between two memory readings
KINDS = [protocol.HELLO, protocol.FINISHED, protocol.HEARTBEAT, protocol.BYE, protocol.JOBS,
         protocol.RESULT, protocol.RESULTS, protocol.ACKS, protocol.THROTTLED, "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                    st.text(max_size=40), st.binary(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=3), inner, max_size=5)),
    max_leaves=20)
messages = st.builds(
    lambda kind, version, body: msgpack.packb({**body, "v": version, "t": kind},
                                              use_bin_type=True),
    st.sampled_from(KINDS), st.sampled_from([1, 1, 1, 0, 2, "1"]),
    st.dictionaries(st.sampled_from(list("wcpkejrsia") + ["id"]), values, max_size=6))
frames = st.lists(st.one_of(st.binary(max_size=512), messages), min_size=1, max_size=8)


@pytest.fixture
def airline(tmp_path):
    airline = Airline(tmp_path)
    yield airline
    airline.stop()


class Target(NamedTuple):
    """A live master and sink, and one authorized raw peer per bound port."""

    cluster: Cluster
    master: Child
    sink: Child
    peers: list[zmq.Socket]


@pytest.fixture
def target(tmp_path, airline):
    # Mutated hellos that stay valid join as workers that never finish: their leases
    # expire and cost attempts, so give the jobs enough of them for the real worker.
    cluster = Cluster(tmp_path, airline.url, max_attempts=100)
    context = zmq.Context()
    try:
        sink = cluster.sink()
        master = cluster.master()
        wait_for(lambda: "listening" in cluster.log("master") and "listening" in
                 cluster.log("sink"), 30, "master and sink to listen")
        peers = []
        for name, kind, server in (("VOE_JOBS_PORT", zmq.DEALER, "master"),
                                   ("VOE_CONTROL_PORT", zmq.DEALER, "master"),
                                   ("VOE_RESULTS_PORT", zmq.PUSH, "sink")):
            peer = cluster.curve_client(context.socket(kind), server)
            peer.setsockopt(zmq.LINGER, 0)
            peer.setsockopt(zmq.SNDHWM, 0)
            peer.connect(f"tcp://127.0.0.1:{cluster.env[name]}")
            peers.append(peer)
        yield Target(cluster, master, sink, peers)
    finally:
        cluster.stop()
        context.destroy(linger=0)  # never hangs on a socket a failed test left open


def test_generated_frames_crash_neither_master_nor_sink(target, airline):
    cluster, master, sink, peers = target
    sent = 0
    corpus = [path.read_bytes() for path in sorted(CORPUS.glob("*.bin"))]
    assert corpus, "the fuzz corpus is missing"
    for peer in peers:
        for frame in corpus:
            peer.send(frame)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(frames)
    def send(batch: list[bytes]) -> None:
        nonlocal sent
        for peer in peers:
            for frame in batch:
                peer.send(frame, zmq.NOBLOCK)
                sent += 1

    send()
    wait_for(lambda: "rejected message" in cluster.log("master")
             and "rejected message" in cluster.log("sink"), 30, "the rejections")
    assert master.poll() is None and sink.poll() is None, "a server died"
    cluster.worker("w1")
    assert cluster.wait_master(master) == 0
    assert_stored_exactly_once(cluster, airline)
    assert sink.poll() is None
    assert "Traceback" not in cluster.log("master") + cluster.log("sink")
    assert sent > EXAMPLES


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_idle(*pids: int, timeout: float = 60) -> None:
    """Wait until the processes have worked through their input (nearly no CPU used)."""
    deadline = time.monotonic() + timeout
    last = [cpu_ticks(pid) for pid in pids]
    quiet = 0
    while quiet < 2:
        assert time.monotonic() < deadline, f"{pids} still busy after {timeout}s"
        time.sleep(0.5)
        now = [cpu_ticks(pid) for pid in pids]
        quiet = quiet + 1 if all(b - a <= 3 for a, b in zip(last, now, strict=True)) else 0
        last = now


def test_a_hundred_thousand_mutated_frames_leave_memory_bounded(target, airline):
    cluster, master, sink, peers = target
    rng = random.Random(SEED)
    pool = seeds()

    def blast(count: int) -> None:
        for number in range(count):
            peers[number % 3].send(mutate(rng, rng.choice(pool)))

    # In rounds, each drained before the next: what libzmq buffers for a burst is
    # the same every round, so only a leak (growth per bad frame) shows between the
    # first round and the last.
    rounds = FRAMES // ROUND
    blast(ROUND)
    wait_for(lambda: "rejected message" in cluster.log("sink"), 30, "the first rejections")
    wait_idle(master.pid, sink.pid)
    before = {"master": rss_kib(master.pid), "sink": rss_kib(sink.pid)}
    for _ in range(rounds - 1):
        blast(ROUND)
        wait_idle(master.pid, sink.pid)
    wait_for(lambda: master.poll() is None and sink.poll() is None, 1, "servers alive")
    after = {"master": rss_kib(master.pid), "sink": rss_kib(sink.pid)}
    for role in before:  # bounded: no growth with the number of bad frames
        assert after[role] - before[role] < 30 * 1024, (role, before, after)
    cluster.worker("w1")
    assert cluster.wait_master(master) == 0
    assert_stored_exactly_once(cluster, airline)
    assert "Traceback" not in cluster.log("master") + cluster.log("sink")
