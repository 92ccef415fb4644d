"""The protocol module: every message round-trips; anything else is a counted reason."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import FRAMES, SEED, mutate, seeds
from voe import protocol, protocol_rows
from voe.fields import MAX_FIELD_COUNT
from voe.model import CalendarDay, Fare, FieldCount, MultiCityFare, Result, RoundTripFare, SearchJob

JOB = SearchJob("demo:GRU-REC:2026-12-01", 3, 2, "demo", "GRU", "REC", "2026-12-01", None)
FARE = Fare("G3 1234", "07:15", "09:40", "1234.56", "BRL")


@pytest.mark.parametrize("frame, message", [
    (protocol.encode_hello("w1", 8, 2, [(1, "a")]), protocol.Hello("w1", 8, 2, ((1, "a"),))),
    (protocol.encode_finished([(1, "a"), (2, "b")]), protocol.Finished(((1, "a"), (2, "b")))),
    (protocol.encode_finished([(1, "a")], prefetch=40), protocol.Finished(((1, "a"),), 40)),
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


# Per-field counts of a result (issue 12) -------------------------------------------

COUNTS = (FieldCount("flight", 2, 1), FieldCount("price", 3, 0))


def _result_body(**extra):
    return {"v": protocol.VERSION, "t": "result", "j": list(JOB), "s": "parse", "f": [],
            "e": "fare 3: flight '??' is not a flight code", "w": "w1", "d": 0.2, **extra}


def test_a_result_carries_its_field_counts_and_an_older_one_without_them_stays_valid():
    counted = Result(JOB, "parse", (), "refused", "w1", 0.2, COUNTS)
    assert protocol.decode(protocol.encode_result(counted)) == counted
    assert protocol.decode(protocol.encode_result(counted)).field_counts[0].field == "flight"
    plain = Result(JOB, "ok", (FARE,), None, "w1", 0.2)
    assert "c" not in msgpack.unpackb(protocol.encode_result(plain))  # no counts, no key
    older = msgpack.packb(_result_body())  # a worker of before the field
    assert protocol.decode(older).field_counts == ()
    every = tuple(FieldCount(field, MAX_FIELD_COUNT, 0) for field in Fare._fields)
    assert protocol.decode(msgpack.packb(_result_body(c=[list(c) for c in every]))
                           ).field_counts == every
    joined = protocol.encode_results([protocol.encode_result(counted),
                                      protocol.encode_result(plain)])
    assert protocol.decode(joined) == protocol.Results((counted, plain))


@pytest.mark.parametrize("counts", [
    None, 3, "flight", {"flight": [1, 0]}, [["flight", 1]], [["flight", 1, 0, 0]],
    [("flight", 1, 0)] * 2,  # a field counted twice
    [["seat", 1, 0]], [["Flight", 1, 0]], [["", 1, 0]], [["flight\n", 1, 0]],
    [["\x1b[2Jflight", 1, 0]], [["x" * 5000, 1, 0]], [[["flight"], 1, 0]],
    [["flight", -1, 0]], [["flight", 0, -1]], [["flight", MAX_FIELD_COUNT + 1, 0]],
    [["flight", 1.0, 0]], [["flight", True, 0]], [["flight", None, 0]], [["flight", "1", 0]],
    [["flight", 2**64 - 1, 0]],
    [[name, 1, 0] for name in Fare._fields] + [["flight", 1, 0]],  # more rows than fields
])
def test_bad_field_counts_are_rejected(counts):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(msgpack.packb(_result_body(c=counts)))
    assert caught.value.reason in {"bad-schema", "undecodable"}


def test_a_remembered_field_count_lets_no_look_alike_pass():
    """Validated rows are remembered; 1.0 and True equal 1 in Python, but are no count."""
    good = protocol.decode(msgpack.packb(_result_body(c=[["price", 1, 0]])))
    assert good.field_counts == (FieldCount("price", 1, 0),)
    for look_alike in ([["price", 1.0, 0]], [["price", True, 0]], [["price", 1, False]],
                       [["price", 1, 0], ["price", 1, 0]]):
        with pytest.raises(protocol.ProtocolError, match="bad-schema"):
            protocol.decode(msgpack.packb(_result_body(c=look_alike)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(st.sampled_from([*Fare._fields, "seat", "Price"]),
                                   st.integers(-5, MAX_FIELD_COUNT + 5), st.none(),
                                   st.text(max_size=4)), max_size=4), max_size=7))
def test_random_field_counts_are_rejected_or_valid(counts):
    try:
        result = protocol.decode(msgpack.packb(_result_body(c=counts)))
    except protocol.ProtocolError:
        return
    fields = [count.field for count in result.field_counts]
    assert len(set(fields)) == len(fields) and set(fields) <= set(Fare._fields)
    assert all(0 <= n <= MAX_FIELD_COUNT for count in result.field_counts
               for n in count[1:])


def test_mutated_results_with_field_counts_decode_or_are_rejected():
    rng = random.Random(SEED)
    frame = protocol.encode_result(Result(JOB, "parse", (FARE,), "x", "w1", 0.1, COUNTS))
    for _ in range(20_000):
        try:
            message = protocol.decode(mutate(rng, frame))
        except protocol.ProtocolError:
            continue
        if isinstance(message, Result):
            assert all(count.field in Fare._fields for count in message.field_counts)


@pytest.mark.parametrize("frame, reason", [
    (b"", "undecodable"),
    (b"\xc1garbage", "undecodable"),
    (msgpack.packb([1, 2, 3]), "not-a-map"),
    (msgpack.packb({"v": 99, "t": "bye"}), "bad-version"),
    (_frame(t="launch-missiles"), "unknown-type"),
    (_frame(t="jobs", j=[[1, 2]]), "bad-schema"),
    (_frame(t="jobs"), "bad-schema"),
    (_frame(t="hello", w="w", c=0, p=1, k=[]), "bad-schema"),
    (_frame(t="finished", k=[[1, "a"]], p=-1), "bad-schema"),
    (_frame(t="finished", k=[[1, "a"]], p="many"), "bad-schema"),
    (_frame(t="finished", k=[[1, "a"]], p=100_001), "bad-schema"),
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


@pytest.mark.parametrize("job", [
    JOB._replace(backend="demo\nINFO forged"), JOB._replace(id="demo:GRU-REC:\x1b[2J"),
    JOB._replace(origin="GRU\r"), JOB._replace(date="2026-12-01\x85"),
    JOB._replace(return_date="2026-12-09\x00"),
])
@pytest.mark.parametrize("encode", [
    lambda job: protocol.encode_jobs([job]),
    lambda job: protocol.encode_result(Result(job, "ok", (FARE,), None, "w1", 0.25)),
])
def test_a_job_with_control_characters_is_rejected_from_master_and_worker(job, encode):
    """A job's texts reach logs and terminals (the sink's yield lines, voe status, voe
    failed): none may carry a control character, whoever sent it."""
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(encode(job))
    assert caught.value.reason == "bad-schema"


def test_a_result_from_a_worker_named_with_control_characters_is_rejected():
    frame = protocol.encode_result(Result(JOB, "ok", (FARE,), None, "w1\x1b[31m", 0.25))
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(frame)
    assert caught.value.reason == "bad-schema"


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


def test_a_round_trip_fare_travels_with_its_return_leg_and_a_one_way_fare_as_before():
    back = RoundTripFare(*FARE, "AD 4321", "19:00", "20:10")
    result = Result(JOB._replace(return_date="2026-12-27"), "ok", (FARE, back), None, "w1", 0.25)
    frame = protocol.encode_result(result)
    assert protocol.decode(frame) == result
    body = msgpack.unpackb(frame, raw=False)
    assert [len(row) for row in body["f"]] == [5, 8]  # one-way fares as before round trips
    for row, why in (([*back[:5], "AD 4321", 5, "20:10"], "strings"),
                     ([*back[:5], "", "19:00", "20:10"], "return flight is set"),
                     ([*back[:5], "AD 4321"], "a multi-city fare has 1 to 5 later legs"),
                     ([*back[:5], "AD 4321", "19:00"], "5 fields .8 for a round trip")):
        body["f"] = [row]
        with pytest.raises(protocol.ProtocolError, match=why):
            protocol.decode(msgpack.packb(body))


def test_a_job_carries_its_search_options_and_bad_ones_are_rejected():
    party = JOB._replace(id=f"{JOB.id}/adults=2,pos=US", options="adults=2,pos=US")
    frame = protocol.encode_jobs([JOB, party])
    rows = msgpack.unpackb(frame)["j"]
    assert [len(row) for row in rows] == [8, 9]  # no options, no 9th field
    assert protocol.decode(frame) == protocol.Jobs((JOB, party))
    for options in ("adults=two", "pos=US,adults=2", "cabin=coach", "adults=2\n", "x" * 200,
                    "adults=0", 3):
        body = {"v": protocol.VERSION, "t": "jobs", "j": [[*JOB[:8], options]]}
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.decode(msgpack.packb(body))
        assert caught.value.reason == "bad-schema"


def test_a_calendars_days_travel_as_three_fields_and_odd_ones_are_rejected():
    days = (CalendarDay("2026-12-01", "412.30", "BRL"), CalendarDay("2026-12-02", "380.00", "BRL"))
    result = Result(JOB._replace(id="demo-api:GRU-REC:2026-12", date="2026-12"), "ok", days,
                    None, "w1", 0.25)
    frame = protocol.encode_result(result)
    assert protocol.decode(frame) == result
    body = msgpack.unpackb(frame, raw=False)
    for row, why in ((["2026-12-01", 412.3, "BRL"], "strings"),
                     (["2026-12-1", "412.30", "BRL"], "a date"),
                     (["2026-12-01", "", "BRL"], "a price"),
                     (["2026-12-01", "412.30"], "3 for a calendar's day")):
        body["f"] = [row]
        with pytest.raises(protocol.ProtocolError, match=why):
            protocol.decode(msgpack.packb(body))


def test_a_multi_city_job_and_its_fares_travel_with_every_leg():
    legs = "GRU-REC:2026-12-01,REC-SSA:2026-12-04"
    trip = JOB._replace(id=f"demo:{legs}", destination="SSA", legs=legs)
    frame = protocol.encode_jobs([trip])
    assert len(msgpack.unpackb(frame)["j"][0]) == 10
    assert protocol.decode(frame) == protocol.Jobs((trip,))
    fare = MultiCityFare(*FARE, (("AD 4321", "09:00", "10:30"),))
    result = Result(trip, "ok", (fare,), None, "w1", 0.25)
    assert protocol.decode(protocol.encode_result(result)) == result
    body = msgpack.unpackb(protocol.encode_result(result), raw=False)
    for later, why in (([], "1 to 5 later legs"), ([["AD 4321", "09:00"]], "a later leg is"),
                       ([["", "09:00", "10:30"]], "later leg's flight is set"),
                       ([["AD 4321", 9, "10:30"]], "strings")):
        body["f"] = [[*FARE, later]]
        with pytest.raises(protocol.ProtocolError, match=why):
            protocol.decode(msgpack.packb(body))
    for bad in ("GRU-REC:2026-12-01", "GRU-REC:2026-12-04,REC-SSA:2026-12-01", "GRU:2026-12-01,x"):
        jobs = {"v": protocol.VERSION, "t": "jobs", "j": [[*JOB[:8], "", bad]]}
        with pytest.raises(protocol.ProtocolError, match="bad-schema"):
            protocol.decode(msgpack.packb(jobs))


def test_an_ack_carries_a_stored_calendars_days_and_odd_ones_are_rejected():
    days = (("2026-12-01", "412.30"), ("2026-12-02", "380"))
    acks = [protocol.Ack(1, "demo-api:GRU-REC:2026-12", 1, "done", None, days),
            protocol.Ack(1, "demo:GRU-REC:2026-12-01", 1, "done", None)]
    frame = protocol.encode_acks(acks)
    assert [len(row) for row in msgpack.unpackb(frame)["a"]] == [6, 5]
    assert protocol.decode(frame) == protocol.Acks(tuple(acks))
    for bad in ([["2026-12-01", "NaN"]], [["2026-12-01", "1e9"]], [["tomorrow", "1.00"]],
                [["2026-12-01"]], [["2026-12-01", 1.0]], [["2026-12-01", "1.00"]] * 32):
        body = {"v": protocol.VERSION, "t": "acks",
                "a": [[1, "demo-api:GRU-REC:2026-12", 1, "done", None, bad]]}
        with pytest.raises(protocol.ProtocolError, match="bad-schema"):
            protocol.decode(msgpack.packb(body))


def test_only_days_an_ack_can_carry_go_into_it():
    days = [CalendarDay("2026-12-01", "412.30", "BRL"), CalendarDay("2026-12-02", "1e9", "BRL"),
            CalendarDay("2026-12-03", "380", "BRL"), FARE]
    assert protocol.ack_days(days) == (("2026-12-01", "412.30"), ("2026-12-03", "380"))
    ack = protocol.Ack(1, "demo-api:GRU-REC:2026-12", 1, "done", None, protocol.ack_days(days))
    assert protocol.decode(protocol.encode_acks([ack])).acks == (ack,)


_JOB_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**63), st.sampled_from([-1, 0, 2**62, 2**62 + 1]),
    st.floats(allow_nan=False),
    st.text(max_size=3), st.text(min_size=15, max_size=40), st.sampled_from(
        ["a" * 16, "a" * 17, "a" * 32, "a" * 33, "a" * 64, "a" * 65, "a" * 200, "a" * 201,
         "GRU", "2026-01-01", "x\ny", "\u202e", ""]),
    st.lists(st.integers(), max_size=2))


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), _JOB_VALUES), max_size=3))
def test_the_quick_job_check_accepts_exactly_what_the_field_checks_accept(changes):
    row = ["null:GRU-REC:2026-01-01", 1, 1, "null", "GRU", "REC", "2026-01-01", None]
    for index, value in changes:  # a well-formed job with up to three fields changed
        row[index] = value
    try:
        expected = protocol_rows.checked_job(list(row))
    except (ValueError, TypeError, IndexError) as error:
        with pytest.raises(type(error)):
            protocol_rows.job_from_row(list(row))
    else:
        assert protocol_rows.job_from_row(list(row)) == expected


_EDGES = [None, True, 0, -1, 1.0, 2**32 - 1, 2**32, 2**62, 2**62 + 1, "", "done", "DONE",
          "transient", "x" * 200, "x" * 201, "e" * protocol.MAX_ERROR,
          "e" * (protocol.MAX_ERROR + 1), [], [[]], [["a", "1"]]]


def _same_ack_answer(row: list) -> None:
    """The quick ack check says None or exactly what the field-by-field check says."""
    quick = protocol_rows.quick_ack(list(row))
    try:
        expected = protocol_rows.checked_ack(list(row))
    except (ValueError, TypeError):
        assert quick is None, row
    else:
        assert quick is None or quick == expected, row


def test_the_quick_ack_check_accepts_exactly_what_the_field_checks_accept_at_the_edges():
    for index in range(7):
        for value in _EDGES:
            row = [1, "null:GRU-REC:2026-01-01", 1, "done", None, [], 12345]
            row[index] = value
            _same_ack_answer(row)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), _JOB_VALUES | st.sampled_from(_EDGES)),
                max_size=3))
def test_the_quick_ack_check_accepts_exactly_what_the_field_checks_accept(changes):
    row = [1, "null:GRU-REC:2026-01-01", 1, "done", None, [], 12345]
    for index, value in changes:  # a well-formed ack with up to three fields changed
        row[index] = value
    _same_ack_answer(row)


def test_acks_that_are_their_own_wire_rows_encode_as_the_row_by_row_form_does():
    acks = [protocol.Ack(1, "a", 1, "done", None, (), 5),
            protocol.Ack(1, "b", 2, "done", None, (("2026-01-01", "10.00"),), 7),
            protocol.Ack(1, "c", 1, "transient", "x" * 3000, (), None),
            protocol.Ack(2, "d", 1, "done", "e" * (protocol.MAX_ERROR + 1), (), 3),
            protocol.Ack(2, "e", 1, "done", "short", (), None)]
    row_by_row = protocol._pack(protocol.ACKS, {"a": [protocol._ack_row(a) for a in acks]})
    assert protocol.encode_acks(acks) == row_by_row
    assert len(protocol.decode(row_by_row).acks[3].error) == protocol.MAX_ERROR


def test_the_quick_key_check_accepts_exactly_what_the_field_checks_accept():
    for first in _EDGES:
        for second in _EDGES:
            pair = [first, second]
            try:
                expected = protocol_rows.checked_key(list(pair))
            except (ValueError, TypeError):
                with pytest.raises((ValueError, TypeError)):
                    protocol_rows.key_pairs([list(pair)])
            else:
                assert protocol_rows.key_pairs([list(pair)]) == (expected,)
    for odd in ([1], [1, "a", 2], (1, "a"), "1a", None):
        with pytest.raises((ValueError, TypeError)):
            protocol_rows.key_pairs([odd])
