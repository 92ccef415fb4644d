"""The protocol module: every message round-trips; anything else is a counted reason."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import FRAMES, SEED, mutate, seeds
from voe import protocol
from voe.model import Fare, Result, SearchJob

JOB = SearchJob("demo:GRU-REC:2026-12-01", 3, 2, "demo", "GRU", "REC", "2026-12-01", None)
FARE = Fare("G3 1234", "07:15", "09:40", "1234.56", "BRL")


@pytest.mark.parametrize("frame, message", [
    (protocol.encode_hello("w1", 8, 2, [(1, "a")]), protocol.Hello("w1", 8, 2, ((1, "a"),))),
    (protocol.encode_finished([(1, "a"), (2, "b")]), protocol.Finished(((1, "a"), (2, "b")))),
    (protocol.encode_heartbeat("abc"), protocol.Heartbeat("abc")),
    (protocol.encode_bye(), protocol.Bye()),
    (protocol.encode_jobs([JOB]), protocol.Jobs((JOB,))),
    (protocol.encode_result(Result(JOB, "ok", (FARE,), None, "w1", 0.25)),
     Result(JOB, "ok", (FARE,), None, "w1", 0.25)),
    (protocol.encode_acks([protocol.Ack(3, JOB.id, 2, "transient", "HTTP 503")]),
     protocol.Acks((protocol.Ack(3, JOB.id, 2, "transient", "HTTP 503"),))),
])
def test_round_trip(frame, message):
    assert protocol.decode(frame) == message


def test_a_hello_tells_the_address_and_an_older_hello_without_it_stays_valid():
    told = protocol.encode_hello("w1", 8, 2, [], "10.0.0.7 (ip-10-0-0-7)")
    assert protocol.decode(told) == protocol.Hello("w1", 8, 2, (), "10.0.0.7 (ip-10-0-0-7)")
    older = _frame(t="hello", w="w1", c=8, p=2, k=[[1, "a"]])  # a worker of before the field
    assert protocol.decode(older) == protocol.Hello("w1", 8, 2, ((1, "a"),), "")
    longest = "x" * protocol.MAX_ADDRESS
    assert protocol.decode(_frame(t="hello", w="w1", c=8, p=2, k=[], a=longest)).address == longest
    clipped = protocol.encode_hello("w1", 8, 2, [], "y" * (protocol.MAX_ADDRESS + 50))
    assert protocol.decode(clipped).address == "y" * protocol.MAX_ADDRESS


@pytest.mark.parametrize(("address", "reason"), [
    (None, "bad-schema"), (7, "bad-schema"), (["10.0.0.7"], "bad-schema"),
    ("x" * (protocol.MAX_ADDRESS + 1), "bad-schema"),
    (b"10.0.0.7", "undecodable")])  # no binary field is accepted anywhere
def test_a_hello_with_a_bad_address_is_rejected(address, reason):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(msgpack.packb({"v": protocol.VERSION, "t": "hello", "w": "w1", "c": 8,
                                       "p": 2, "k": [], "a": address}, use_bin_type=True))
    assert caught.value.reason == reason


def test_results_join_encoded_results_without_reencoding():
    results = [Result(JOB._replace(id=f"demo:GRU-REC:{n}"), "ok", (FARE,) * n, None, "w1", 0.1)
               for n in range(3)]
    frame = protocol.encode_results([protocol.encode_result(r) for r in results])
    assert protocol.decode(frame) == protocol.Results(tuple(results))
    bad = protocol.encode_results([protocol.encode_result(results[0]), protocol.encode_bye()])
    with pytest.raises(protocol.ProtocolError, match="bad-schema"):
        protocol.decode(bad)


def _frame(**body):
    return msgpack.packb({"v": protocol.VERSION, **body})


@pytest.mark.parametrize("frame, reason", [
    (b"", "undecodable"),
    (b"\xc1garbage", "undecodable"),
    (msgpack.packb([1, 2, 3]), "not-a-map"),
    (msgpack.packb({"v": 99, "t": "bye"}), "bad-version"),
    (_frame(t="launch-missiles"), "unknown-type"),
    (_frame(t="jobs", j=[[1, 2]]), "bad-schema"),
    (_frame(t="jobs"), "bad-schema"),
    (_frame(t="hello", w="w", c=0, p=1, k=[]), "bad-schema"),
    (_frame(t="result", j=[JOB.id, 1, 1, "demo", "GRU", "REC", "d", None], s="maybe",
            f=[], e=None, w="w", d=0.1), "bad-schema"),
    (_frame(t="acks", a=[[1, "id", 1, "stolen", None]]), "bad-schema"),
    (msgpack.packb({"v": 1, "t": "bye", "x": "y" * 10_000}), "undecodable"),
    (b"\x00" * (protocol.MAX_MESSAGE_BYTES + 1), "oversized"),
])
def test_rejections_name_their_reason(frame, reason):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(frame)
    assert caught.value.reason == reason


def test_deeply_nested_frame_is_rejected():
    nested = b"\x91" * 5000 + b"\xc0"
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(nested)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_as_anything_but_protocol_error(frame):
    try:
        protocol.decode(frame)
    except protocol.ProtocolError:
        pass


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["hello", "finished", "heartbeat", "jobs", "result", "acks"]),
       st.dictionaries(st.sampled_from(list("wcpkjsfedaet")), values, max_size=8))
def test_random_schemas_are_rejected_or_valid(kind, body):
    frame = msgpack.packb({"v": 1, "t": kind, **body})
    try:
        message = protocol.decode(frame)
    except protocol.ProtocolError:
        return
    assert type(message).__name__.lower() in {kind, kind.rstrip("s") + "s", "result"}


def test_a_hundred_thousand_mutated_frames_decode_or_are_rejected():
    rng = random.Random(SEED)
    pool = seeds()
    decoded = 0
    for _ in range(FRAMES):
        try:
            protocol.decode(mutate(rng, rng.choice(pool)))
        except protocol.ProtocolError:
            continue
        decoded += 1
    assert 0 < decoded < FRAMES // 2  # mostly rejected, and nothing else escaped
