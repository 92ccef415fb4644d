"""The arrays inside voe's messages: a job, a (cycle, job id) key, an ack.

Each is read in one expression when it is the usual, well-formed one (every job a
worker or the sink receives, every key a worker reports finished, every ack the master
hears), and field by field otherwise, which says what is wrong (``ValueError`` or
``TypeError``, which ``voe.protocol.decode`` turns into a ``ProtocolError``). Tests hold
both paths to the same answers.
"""

from __future__ import annotations

import re
from typing import Any

from voe.fields import array, integer, is_label, opt_text, text
from voe.model import SearchJob, parse_legs, parse_options
from voe.protocol_messages import ACK_STATUSES, MAX_ERROR, MAX_LEGS_TEXT, MAX_OPTIONS, Ack

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DECIMAL = re.compile(r"\d{1,12}(?:\.\d{1,4})?")


_new_job = SearchJob.__new__


def job_from_row(row: Any) -> SearchJob:
    """A job from its array: the usual one (8 fields, all well formed) checked in one
    expression, on the hot path of workers and the sink; anything else field by field,
    which says what is wrong."""
    if type(row) is list and len(row) == 8:
        job_id, cycle, attempt, backend, origin, destination, date, back = row
        if (type(job_id) is str and type(backend) is str and type(origin) is str
                and type(destination) is str and type(date) is str and type(cycle) is int
                and type(attempt) is int and 0 < len(job_id) <= 200 and 0 < len(backend) <= 64
                and 0 < len(origin) <= 16 and 0 < len(destination) <= 16
                and 0 < len(date) <= 32 and 0 <= cycle <= 2**62 and 0 <= attempt <= 2**62
                and (back is None or type(back) is str and len(back) <= 32)
                and is_label(f"{job_id}{backend}{origin}{destination}{date}{back or ''}")):
            return _new_job(SearchJob, job_id, cycle, attempt, backend, origin, destination,
                            date, back, "", "")
    return checked_job(row)


def checked_job(row: Any) -> SearchJob:
    row = array(row)
    options = legs = ""
    if len(row) > 8:  # a job with search options or legs (checked: workers read them)
        if len(row) > 10:
            raise ValueError("a job has 8 fields, 9 with its search options, 10 with legs")
        options = text(row[8], MAX_OPTIONS, empty=True)
        parse_options(options)
        if len(row) == 10:
            legs = text(row[9], MAX_LEGS_TEXT, empty=True)
            if legs:
                parse_legs(legs)
    elif len(row) != 8:
        raise ValueError("a job has 8 fields, 9 with its search options, 10 with legs")
    job = SearchJob(
        id=text(row[0], 200), cycle=integer(row[1]), attempt=integer(row[2]),
        backend=text(row[3], 64), origin=text(row[4], 16), destination=text(row[5], 16),
        date=text(row[6], 32), return_date=opt_text(row[7], 32), options=options, legs=legs,
    )
    # Every text of a job reaches logs and terminals (voe status, voe failed): one search
    # over them all for control characters, on the hot path of workers and the sink.
    if not is_label(f"{job.id}{job.backend}{job.origin}{job.destination}{job.date}"
                    f"{job.return_date or ''}"):
        raise ValueError("control characters in a job")
    return job


def key_pairs(value: Any) -> tuple[tuple[int, str], ...]:
    """(cycle, job id) pairs: each a well-formed pair checked in one expression (a worker
    reports every job it finished), anything else by ``checked_key``."""
    keys = []
    for pair in array(value):
        if (type(pair) is list and len(pair) == 2 and type(pair[0]) is int
                and 0 <= pair[0] <= 2**62 and type(pair[1]) is str and 0 < len(pair[1]) <= 200):
            keys.append((pair[0], pair[1]))
        else:
            keys.append(checked_key(pair))
    return tuple(keys)


def checked_key(item: Any) -> tuple[int, str]:
    """A (cycle, job id) pair read field by field; ``ValueError`` says what is wrong."""
    pair = array(item)
    if len(pair) != 2:
        raise ValueError("a key is [cycle, id]")
    return (integer(pair[0]), text(pair[1], 200))


def _days(value: Any) -> tuple[tuple[str, str], ...]:
    """A calendar's (date, price) pairs in an ack: at most 31, a date and a decimal each."""
    days = array(value)
    if len(days) > 31:
        raise ValueError("a calendar has at most 31 days")
    found = []
    for item in days:
        pair = array(item)
        if (len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str
                or not DATE.fullmatch(pair[0]) or not DECIMAL.fullmatch(pair[1])):
            raise ValueError("a calendar's day is [YYYY-MM-DD, decimal price]")
        found.append((pair[0], pair[1]))
    return tuple(found)


def checked_ack(item: Any) -> Ack:
    """An ack read field by field; ``ValueError`` (or ``TypeError``) says what is wrong."""
    row = array(item)
    if len(row) not in (5, 6, 7) or row[3] not in ACK_STATUSES:
        raise ValueError("an ack is [cycle, id, attempt, status, error, days?, answer?]")
    return Ack(integer(row[0]), text(row[1], 200), integer(row[2]), row[3],
               opt_text(row[4], MAX_ERROR), _days(row[5]) if len(row) >= 6 else (),
               integer(row[6], 0, 2**32 - 1) if len(row) == 7 else None)


_new_ack = Ack.__new__


def quick_ack(row: Any) -> Ack | None:
    """The usual ack (no days, an answer's digest, every field well formed), checked in
    one expression on the master's hot path; None for any other, read field by field."""
    if type(row) is not list or len(row) != 7:
        return None
    cycle, job_id, attempt, status, error, days, answer = row
    if (type(cycle) is int and type(job_id) is str and type(attempt) is int
            and type(status) is str and status in ACK_STATUSES and days == []
            and type(answer) is int and 0 <= cycle <= 2**62 and 0 < len(job_id) <= 200
            and 0 <= attempt <= 2**62 and 0 <= answer <= 2**32 - 1
            and (error is None or type(error) is str and len(error) <= MAX_ERROR)):
        return _new_ack(Ack, cycle, job_id, attempt, status, error, (), answer)
    return None
