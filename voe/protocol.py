"""Every message voe sends: encoding, decoding, size limits and schema validation.

Messages are MessagePack maps ``{"v": VERSION, "t": type, ...}``. Nothing else in
voe touches raw frames: senders call an ``encode_*`` function, receivers call
``decode`` and get a typed message or a ``ProtocolError`` naming the reason, which
they count and log. Jobs and fares travel as arrays to keep frames small and fast.
The message types, limits and ``ProtocolError`` are defined in ``voe.protocol_messages``
and imported from here; the arrays inside messages (a job, a key, an ack) are read by
``voe.protocol_rows``.

Message types:
  hello     worker -> master   name, concurrency, prefetch (sets the worker's credit), address
  finished  worker -> master   jobs the worker no longer holds (returns credit), new prefetch
  heartbeat both ways          liveness; the sink's (sink -> master) also says what it
                               waits for when its store is down ("" when storing)
  bye       worker -> master   the worker is leaving; its jobs go back at once
            master -> worker   the master finished its collection (--once) and is leaving
  throttled worker -> master   throttling answers (429, blocks) seen per backend, and
                               optionally its identities' counts per route (older
                               workers send none)
  jobs      master -> worker   leased jobs (a job's search options, when it has some,
                               as a 9th field, a multi-city trip's legs as a 10th:
                               older masters send neither)
  result    worker -> sink     one attempt's outcome and fares, and optionally the fare
                               pipeline's per-field counts of its answer (older workers
                               send none)
  results   worker -> sink     several encoded results in one frame (fewer sends)
  acks      sink -> master     stored (or failed) attempts, after commit (a stored
                               calendar's with its days' dates and prices)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from voe.fields import (
    MAX_STR,
    array,
    fares,
    field_counts,
    integer,
    label,
    opt_text,
    printable,
)
from voe.model import RESULT_STATUSES, Result, SearchJob

# The vocabulary, defined in voe.protocol_messages; the rest of voe imports it from here.
from voe.protocol_messages import (
    ACKS,
    BYE,
    FINISHED,
    HEARTBEAT,
    HELLO,
    JOBS,
    MAX_ADDRESS,
    MAX_ERROR,
    MAX_ITEMS,
    MAX_MESSAGE_BYTES,
    MAX_ROUTE_NAME,
    MAX_ROUTES,
    RESULT,
    RESULTS,
    THROTTLED,
    VERSION,
    Ack,
    Acks,
    Bye,
    Finished,
    Heartbeat,
    Hello,
    Jobs,
    Message,
    ProtocolError,
    Results,
    RouteCount,
    Throttled,
)

# The arrays inside messages (jobs, keys, acks), read quickly when well formed.
from voe.protocol_rows import DATE, DECIMAL, checked_ack, job_from_row, key_pairs, quick_ack

_packer = msgpack.Packer(use_bin_type=True)


def _pack(kind: str, body: dict[str, Any]) -> bytes:
    body["v"] = VERSION
    body["t"] = kind
    return _packer.pack(body)


def _job_row(job: SearchJob) -> list[Any]:
    """A job as an array: 8 fields, its search options as a 9th when it has some (or legs),
    and a multi-city trip's legs as a 10th."""
    row = [job.id, job.cycle, job.attempt, job.backend, job.origin, job.destination,
           job.date, job.return_date]
    if job.options or job.legs:
        row.append(job.options)
        if job.legs:
            row.append(job.legs)
    return row


def _clip(text: str | None, limit: int = MAX_ERROR) -> str | None:
    return None if text is None else text[:limit]


def encode_hello(worker: str, concurrency: int, prefetch: int,
                 held: list[tuple[int, str]] | tuple = (), address: str = "") -> bytes:
    """Encode a worker's introduction: the jobs it already holds and its network address."""
    return _pack(HELLO, {"w": worker, "c": concurrency, "p": prefetch,
                         "k": [list(key) for key in held], "a": address[:MAX_ADDRESS]})


def encode_finished(keys: list[tuple[int, str]], prefetch: int | None = None) -> bytes:
    """Encode the (cycle, job id) pairs a worker no longer holds, and a new prefetch if any."""
    body: dict[str, Any] = {"k": keys}  # each pair packs as an array
    if prefetch is not None:
        body["p"] = prefetch
    return _pack(FINISHED, body)


def encode_heartbeat(epoch: str = "", waiting: str = "") -> bytes:
    """Encode a heartbeat (the master sends its epoch; the sink what it waits for, if any)."""
    body = {"e": epoch}
    if waiting:  # a store's error text may hold tabs or line breaks: one plain line
        body["s"] = printable(waiting)[:MAX_ERROR]
    return _pack(HEARTBEAT, body)


def encode_bye() -> bytes:
    """Encode a worker's goodbye."""
    return _pack(BYE, {})


def encode_throttled(counts: dict[str, int],
                     identities: dict[str, tuple[int, int, int]] | None = None) -> bytes:
    """Encode the throttling answers seen per backend and, when given, the identities'
    (blocks, jobs, retired) per route (the first ``MAX_ROUTES`` routes by name)."""
    body: dict[str, Any] = {"c": [[backend, count] for backend, count in counts.items()]}
    if identities:
        body["i"] = [[route[:MAX_ROUTE_NAME], *identities[route]]
                     for route in sorted(identities)[:MAX_ROUTES]]
    return _pack(THROTTLED, body)


def encode_jobs(jobs: list[SearchJob]) -> bytes:
    """Encode a batch of leased jobs."""
    return _pack(JOBS, {"j": [_job_row(job) for job in jobs]})


def encode_result(result: Result) -> bytes:
    """Encode one attempt's result (errors are clipped to ``MAX_ERROR``); its per-field
    counts go as ``"c"``, ``[[field, valid, invalid], ...]``, only when there are some."""
    body = {
        "j": _job_row(result.job),
        "s": result.status,
        "f": result.fares,  # tuples pack as arrays, a multi-city fare's legs too
        "e": _clip(result.error),
        "w": result.worker,
        "d": float(result.duration),
    }
    if result.field_counts:
        body["c"] = result.field_counts
    return _pack(RESULT, body)


def encode_results(frames: list[bytes]) -> bytes:
    """Join results already encoded by ``encode_result`` into one frame, without re-encoding."""
    head = _packer.pack_map_header(3) + _packer.pack("v") + _packer.pack(VERSION)
    head += _packer.pack("t") + _packer.pack(RESULTS) + _packer.pack("r")
    return head + _packer.pack_array_header(len(frames)) + b"".join(frames)


def encode_acks(acks: list[Ack]) -> bytes:
    """Encode a batch of acknowledgements: an ack with an answer's digest and a short error
    (the usual) is its own wire row, all seven fields (MessagePack writes tuples as arrays)."""
    return _pack(ACKS, {"a": [a if a.answer is not None and (a.error is None or len(a.error)
                                                             <= MAX_ERROR) else _ack_row(a)
                              for a in acks]})


def _ack_row(ack: Ack) -> list[Any]:
    """An ack on the wire: five fields, then the days (when there are days or an answer),
    then the answer's digest (when there is one)."""
    row: list[Any] = [ack.cycle, ack.job_id, ack.attempt, ack.status, _clip(ack.error)]
    if ack.days or ack.answer is not None:
        row.append([list(day) for day in ack.days])
    if ack.answer is not None:
        row.append(ack.answer)
    return row


def decode(frame: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate one frame; raise ``ProtocolError`` for anything else."""
    if len(frame) > max_bytes:
        raise ProtocolError("oversized", f"{len(frame)} bytes")
    try:
        body = msgpack.unpackb(
            frame, raw=False, strict_map_key=True, use_list=True,
            max_str_len=MAX_STR, max_bin_len=0, max_array_len=MAX_ITEMS,
            max_map_len=16, max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException, TypeError) as error:
        raise ProtocolError("undecodable", type(error).__name__) from None
    if not isinstance(body, dict):
        raise ProtocolError("not-a-map")
    if body.get("v") != VERSION:
        raise ProtocolError("bad-version", repr(body.get("v"))[:40])
    kind = body.get("t")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError("unknown-type", repr(kind)[:40])
    try:
        return parser(body)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ProtocolError("bad-schema", f"{kind}: {error}"[:200]) from None


_new_result = Result.__new__


def _parse_hello(body: dict[str, Any]) -> Hello:
    return Hello(label(body["w"], 200), integer(body["c"], 1, 100_000),
                 integer(body["p"], 0, 100_000), key_pairs(body["k"]),
                 label(body.get("a", ""), MAX_ADDRESS, empty=True))


def _parse_finished(body: dict[str, Any]) -> Finished:
    prefetch = body.get("p")
    return Finished(key_pairs(body["k"]),
                    None if prefetch is None else integer(prefetch, 0, 100_000))


def _parse_throttled(body: dict[str, Any]) -> Throttled:
    counts = []
    for item in array(body["c"]):
        pair = array(item)
        if len(pair) != 2:
            raise ValueError("a count is [backend, n]")
        counts.append((label(pair[0], 64), integer(pair[1], 1, 10**9)))
    routes = array(body.get("i", []))
    if len(routes) > MAX_ROUTES:
        raise ValueError(f"more than {MAX_ROUTES} routes")
    identities = []
    for item in routes:
        row = array(item)
        if len(row) != 4:
            raise ValueError("a route's identities are [route, blocks, jobs, retired]")
        identities.append(RouteCount(label(row[0], MAX_ROUTE_NAME), integer(row[1]),
                                     integer(row[2]), integer(row[3])))
    return Throttled(tuple(counts), tuple(identities))


def _parse_jobs(body: dict[str, Any]) -> Jobs:
    return Jobs(tuple(job_from_row(row) for row in array(body["j"])))


def _parse_result(body: dict[str, Any]) -> Result:
    status = body["s"]
    if status not in RESULT_STATUSES:
        raise ValueError(f"unknown status {status!r}"[:80])
    duration = body["d"]
    if not isinstance(duration, float | int) or not 0 <= duration < 1e7:
        raise ValueError("bad duration")
    return _new_result(Result, job_from_row(body["j"]), status, fares(body["f"]),
                       opt_text(body["e"], MAX_ERROR), label(body["w"], 200), float(duration),
                       field_counts(body["c"]) if "c" in body else ())


def _parse_results(body: dict[str, Any]) -> Results:
    results = []
    for item in array(body["r"]):
        if type(item) is not dict or item.get("v") != VERSION or item.get("t") != RESULT:
            raise ValueError("each item is a result message")
        results.append(_parse_result(item))
    return Results(tuple(results))


def ack_days(fares: Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """A stored calendar's (date, price) pairs for its ack: its days whose date and price
    an ack can carry (a decimal price; a day that is not is left out, never the ack)."""
    return tuple((day[0], day[1]) for day in fares[:31] if len(day) == 3
                 and DATE.fullmatch(day[0]) and DECIMAL.fullmatch(day[1]))


def _parse_acks(body: dict[str, Any]) -> Acks:
    return Acks(tuple(quick_ack(item) or checked_ack(item) for item in array(body["a"])))


_PARSERS = {
    HELLO: _parse_hello,
    FINISHED: _parse_finished,
    HEARTBEAT: lambda body: Heartbeat(label(body["e"], 64, empty=True),
                                      label(body.get("s", ""), MAX_ERROR, empty=True)),
    BYE: lambda body: Bye(),
    THROTTLED: _parse_throttled,
    JOBS: _parse_jobs,
    RESULT: _parse_result,
    RESULTS: _parse_results,
    ACKS: _parse_acks,
}
