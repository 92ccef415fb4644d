"""Every message voe sends: encoding, decoding, size limits and schema validation.

Messages are MessagePack maps ``{"v": VERSION, "t": type, ...}``. Nothing else in
voe touches raw frames: senders call an ``encode_*`` function, receivers call
``decode`` and get a typed message or a ``ProtocolError`` naming the reason, which
they count and log. Jobs and fares travel as arrays to keep frames small and fast.

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
  jobs      master -> worker   leased jobs
  result    worker -> sink     one attempt's outcome and fares, and optionally the fare
                               pipeline's per-field counts of its answer (older workers
                               send none)
  results   worker -> sink     several encoded results in one frame (fewer sends)
  acks      sink -> master     stored (or failed) attempts, after commit
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from voe.model import RESULT_STATUSES, Fare, FieldCount, Result, SearchJob

VERSION = 1
# Default cap on one frame; sockets enforce it too (zmq.MAXMSGSIZE).
MAX_MESSAGE_BYTES = 1 << 20
# Longest string anywhere in a message (errors are truncated to fit before sending).
MAX_STR = 4096
# Most items in any array (jobs per batch, fares per result, acks per batch).
MAX_ITEMS = 10_000
# Longest error text a result or ack carries.
MAX_ERROR = 1000
# Longest network address a worker tells in its hello ("IP (hostname)").
MAX_ADDRESS = 300
# Most routes (proxies) a throttled message counts identities for, and a route name's length.
MAX_ROUTES = 512
MAX_ROUTE_NAME = 300
# Largest count of fares with a field valid (or invalid) one result may report.
MAX_FIELD_COUNT = 1_000_000
# The fields a result may count, each at most once: a fare's (the fare pipeline checks no other).
FIELD_NAMES = frozenset(Fare._fields)
# Field counts ([field, valid, invalid]) remembered once validated: answers repeat a few.
KNOWN_FIELD_COUNTS = 4096

HELLO, FINISHED, HEARTBEAT, BYE, JOBS, RESULT, RESULTS, ACKS, THROTTLED = (
    "hello", "finished", "heartbeat", "bye", "jobs", "result", "results", "acks", "throttled",
)


class ProtocolError(Exception):
    """A frame that is not a valid voe message; ``reason`` is short and countable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Hello:
    """A worker introduces itself, the credit it can take and where it runs.

    ``address`` is optional on the wire (older workers send none): "" when unknown.
    """

    worker: str
    concurrency: int
    prefetch: int
    held: tuple[tuple[int, str], ...] = ()
    address: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    """Jobs a worker has finished with (their results are on the way to the sink), and the
    prefetch it now asks for when its pace changed it (None: unchanged; see voe.worker.credit)."""

    keys: tuple[tuple[int, str], ...]
    prefetch: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Liveness, both ways; the master's carries its epoch (new at every start), the sink's
    what it is waiting for (empty while it stores normally)."""

    epoch: str = ""
    waiting: str = ""


@dataclass(frozen=True, slots=True)
class Bye:
    """A worker leaves cleanly."""


class RouteCount(NamedTuple):
    """A worker's identities on one route (``host:port`` of a proxy, or ``direct``) so far:
    blocks met, jobs served, identities retired."""

    route: str
    blocks: int
    jobs: int
    retired: int


@dataclass(frozen=True, slots=True)
class Throttled:
    """How many throttling answers a worker saw per backend since its last report, and the
    counts of its identities per route (totals since the worker started; empty when the
    worker sends none, as older ones do)."""

    counts: tuple[tuple[str, int], ...]
    identities: tuple[RouteCount, ...] = ()


@dataclass(frozen=True, slots=True)
class Results:
    """Several results sent as one frame."""

    results: tuple[Result, ...]


@dataclass(frozen=True, slots=True)
class Jobs:
    """Jobs leased to a worker."""

    jobs: tuple[SearchJob, ...]


class Ack(NamedTuple):
    """The sink's word on one attempt: ``status`` is "done" or the failure kind."""

    cycle: int
    job_id: str
    attempt: int
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class Acks:
    """A batch of acknowledgements, sent after the store committed them."""

    acks: tuple[Ack, ...]


Message = Hello | Finished | Heartbeat | Bye | Throttled | Jobs | Result | Results | Acks
ACK_STATUSES = ("done", *RESULT_STATUSES[1:])

_packer = msgpack.Packer(use_bin_type=True)


def _pack(kind: str, body: dict[str, Any]) -> bytes:
    body["v"] = VERSION
    body["t"] = kind
    return _packer.pack(body)


def _job_row(job: SearchJob) -> list[Any]:
    return [job.id, job.cycle, job.attempt, job.backend, job.origin, job.destination,
            job.date, job.return_date]


def _clip(text: str | None, limit: int = MAX_ERROR) -> str | None:
    return None if text is None else text[:limit]


def encode_hello(worker: str, concurrency: int, prefetch: int,
                 held: list[tuple[int, str]] | tuple = (), address: str = "") -> bytes:
    """Encode a worker's introduction: the jobs it already holds and its network address."""
    return _pack(HELLO, {"w": worker, "c": concurrency, "p": prefetch,
                         "k": [list(key) for key in held], "a": address[:MAX_ADDRESS]})


def encode_finished(keys: list[tuple[int, str]], prefetch: int | None = None) -> bytes:
    """Encode the (cycle, job id) pairs a worker no longer holds, and a new prefetch if any."""
    body: dict[str, Any] = {"k": [list(key) for key in keys]}
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
        "f": [list(fare) for fare in result.fares],
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
    """Encode a batch of acknowledgements."""
    return _pack(ACKS, {"a": [[a.cycle, a.job_id, a.attempt, a.status, _clip(a.error)]
                              for a in acks]})


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


def _str(value: Any, limit: int = MAX_STR, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not value and not empty):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _label(value: Any, limit: int, empty: bool = False) -> str:
    """A name shown in logs and on terminals (a worker, an address, a backend): a string
    of printable characters, so a peer cannot forge a log line or drive a terminal."""
    text = _str(value, limit, empty)
    if not is_label(text):
        raise ValueError("control characters in a name")
    return text


def is_label(text: str) -> bool:
    """Whether ``text`` is safe in a log line and on a terminal: printable characters only.

    Refused: control characters (C0, DEL, C1: line breaks, escapes), Unicode line and
    paragraph separators (a line break to many log readers), format characters (bidi
    overrides that reorder what a terminal shows), unassigned and private code points,
    and every space but the ASCII one.
    """
    return text.isprintable()


def printable(text: str) -> str:
    """``text`` with each character ``is_label`` refuses made a space: one plain line."""
    return text if text.isprintable() else "".join(
        char if char.isprintable() else " " for char in text)


def _opt_str(value: Any, limit: int = MAX_STR) -> str | None:
    return None if value is None else _str(value, limit, empty=True)


def _int(value: Any, low: int = 0, high: int = 2**62) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"expected an integer in [{low}, {high}]")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array, got {type(value).__name__}")
    return value


def _job(row: Any) -> SearchJob:
    row = _list(row)
    if len(row) != 8:
        raise ValueError("a job has 8 fields")
    job = SearchJob(
        id=_str(row[0], 200), cycle=_int(row[1]), attempt=_int(row[2]),
        backend=_str(row[3], 64), origin=_str(row[4], 16), destination=_str(row[5], 16),
        date=_str(row[6], 32), return_date=_opt_str(row[7], 32),
    )
    # Every text of a job reaches logs and terminals (voe status, voe failed): one search
    # over them all for control characters, on the hot path of workers and the sink.
    if not is_label(f"{job.id}{job.backend}{job.origin}{job.destination}{job.date}"
                    f"{job.return_date or ''}"):
        raise ValueError("control characters in a job")
    return job


def _fares(value: Any) -> tuple[Fare, ...]:
    """Validate a result's fare rows; the sink's hot path, so the checks are inlined."""
    if type(value) is not list:
        raise ValueError("fares must be an array")
    for row in value:
        if type(row) is not list or len(row) != 5:
            raise ValueError("a fare has 5 fields")
        flight, departure, arrival, price, currency = row
        if not (type(flight) is str and type(departure) is str and type(arrival) is str
                and type(price) is str and type(currency) is str):
            raise ValueError("a fare's fields are strings")
        if (not 0 < len(flight) <= 64 or len(departure) > 64 or len(arrival) > 64
                or not 0 < len(price) <= 32 or not 0 < len(currency) <= 8):
            raise ValueError("a fare's fields are short, and flight, price, currency are set")
    return tuple(map(Fare._make, value))


_known_counts: dict[tuple[str, int, int], FieldCount] = {}


def _field_counts(value: Any) -> tuple[FieldCount, ...]:
    """Validate a result's per-field counts: each a fare's field, named once, with counts in
    [0, ``MAX_FIELD_COUNT``]. Per result on the sink's hot path: a row validated before
    (up to ``KNOWN_FIELD_COUNTS`` of them) costs a lookup once its counts are integers (so
    that ``1.0`` or ``True`` never pass for a remembered ``1``)."""
    if type(value) is not list or len(value) > len(FIELD_NAMES):
        raise ValueError(f"field counts are an array of at most {len(FIELD_NAMES)}")
    counts = []
    for row in value:
        if type(row) is not list or len(row) != 3:
            raise ValueError("a field count is [field, valid, invalid]")
        field, valid, invalid = row
        if type(valid) is not int or type(invalid) is not int:
            raise ValueError("a field's counts are integers")
        count = _known_counts.get((field, valid, invalid))
        if count is None:
            if type(field) is not str or field not in FIELD_NAMES:
                raise ValueError("a field count names a fare's field")
            if not 0 <= valid <= MAX_FIELD_COUNT or not 0 <= invalid <= MAX_FIELD_COUNT:
                raise ValueError(f"a field's counts are in [0, {MAX_FIELD_COUNT}]")
            count = FieldCount(field, valid, invalid)
            if len(_known_counts) < KNOWN_FIELD_COUNTS:
                _known_counts[count] = count
        counts.append(count)
    if len({count.field for count in counts}) != len(counts):
        raise ValueError("a field is counted once")
    return tuple(counts)


def _keys(value: Any) -> tuple[tuple[int, str], ...]:
    keys = []
    for item in _list(value):
        pair = _list(item)
        if len(pair) != 2:
            raise ValueError("a key is [cycle, id]")
        keys.append((_int(pair[0]), _str(pair[1], 200)))
    return tuple(keys)


def _parse_hello(body: dict[str, Any]) -> Hello:
    return Hello(_label(body["w"], 200), _int(body["c"], 1, 100_000),
                 _int(body["p"], 0, 100_000), _keys(body["k"]),
                 _label(body.get("a", ""), MAX_ADDRESS, empty=True))


def _parse_finished(body: dict[str, Any]) -> Finished:
    prefetch = body.get("p")
    return Finished(_keys(body["k"]), None if prefetch is None else _int(prefetch, 0, 100_000))


def _parse_throttled(body: dict[str, Any]) -> Throttled:
    counts = []
    for item in _list(body["c"]):
        pair = _list(item)
        if len(pair) != 2:
            raise ValueError("a count is [backend, n]")
        counts.append((_label(pair[0], 64), _int(pair[1], 1, 10**9)))
    routes = _list(body.get("i", []))
    if len(routes) > MAX_ROUTES:
        raise ValueError(f"more than {MAX_ROUTES} routes")
    identities = []
    for item in routes:
        row = _list(item)
        if len(row) != 4:
            raise ValueError("a route's identities are [route, blocks, jobs, retired]")
        identities.append(RouteCount(_label(row[0], MAX_ROUTE_NAME), _int(row[1]), _int(row[2]),
                                     _int(row[3])))
    return Throttled(tuple(counts), tuple(identities))


def _parse_jobs(body: dict[str, Any]) -> Jobs:
    return Jobs(tuple(_job(row) for row in _list(body["j"])))


def _parse_result(body: dict[str, Any]) -> Result:
    status = body["s"]
    if status not in RESULT_STATUSES:
        raise ValueError(f"unknown status {status!r}"[:80])
    duration = body["d"]
    if not isinstance(duration, float | int) or not 0 <= duration < 1e7:
        raise ValueError("bad duration")
    return Result(
        job=_job(body["j"]), status=status, fares=_fares(body["f"]),
        error=_opt_str(body["e"], MAX_ERROR), worker=_label(body["w"], 200),
        duration=float(duration),
        field_counts=_field_counts(body["c"]) if "c" in body else (),
    )


def _parse_results(body: dict[str, Any]) -> Results:
    results = []
    for item in _list(body["r"]):
        if type(item) is not dict or item.get("v") != VERSION or item.get("t") != RESULT:
            raise ValueError("each item is a result message")
        results.append(_parse_result(item))
    return Results(tuple(results))


def _parse_acks(body: dict[str, Any]) -> Acks:
    acks = []
    for item in _list(body["a"]):
        row = _list(item)
        if len(row) != 5 or row[3] not in ACK_STATUSES:
            raise ValueError("an ack is [cycle, id, attempt, status, error]")
        acks.append(Ack(_int(row[0]), _str(row[1], 200), _int(row[2]), row[3],
                        _opt_str(row[4], MAX_ERROR)))
    return Acks(tuple(acks))


_PARSERS = {
    HELLO: _parse_hello,
    FINISHED: _parse_finished,
    HEARTBEAT: lambda body: Heartbeat(_label(body["e"], 64, empty=True),
                                      _label(body.get("s", ""), MAX_ERROR, empty=True)),
    BYE: lambda body: Bye(),
    THROTTLED: _parse_throttled,
    JOBS: _parse_jobs,
    RESULT: _parse_result,
    RESULTS: _parse_results,
    ACKS: _parse_acks,
}
