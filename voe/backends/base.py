"""The backend contract: given a search job and an HTTP session, return fares or raise.

A backend knows nothing of ZeroMQ, the ledger or the store. It raises
``TransientError`` for failures worth retrying (timeouts, 5xx, 429),
``PermanentError`` for ones that are not (a route the airline does not fly), and
``ParseError`` (transient: a truncated page may parse next time) when a page does
not yield fares; ``ParseError.page`` keeps the raw page for the backend's author.
``BlockedError`` (transient, kind ``blocked``) says the airline refused to answer.

A backend that reads a round trip's return leg says so with a class attribute
``round_trips = True``, one that reads a multi-city trip's legs (``MultiCityFare``
items) ``multi_city = True``, one that reads an airline's calendar of a month (the
cheapest fare per day, as ``CalendarDay`` items) ``calendars = True``, and one that asks the
airline for a party, cabin or point of sale names the options it sends in
``search_options`` (a set of ``SearchOptions`` field names); a job asking what its
backend does not send ends at once as a permanent error (``check_search``), so one
adult's economy one-way prices are never stored as another search's.

A backend returns an ``Answer`` (``voe.model``): the fares plus the search the page
itself says it answers and the raw page. The worker runs the fare pipeline
(``voe.worker.farepipeline``) over it before anything is stored; its first stage refuses a
page that answers another search than the job's. A backend may still return a plain
list of fares (older and third-party backends do): the other stages check it all
the same, but there is then nothing to compare the job's search with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from voe.model import Answer, Fare, FieldCount, SearchJob, SearchOptions, parse_options

if TYPE_CHECKING:
    import requests


class BackendError(Exception):
    """Base of every error a backend may raise on purpose.

    ``page`` holds the raw page that showed the failure, if any (a page that did not
    parse, a block page): the worker keeps it for the backend's author and the user.
    """

    kind = "error"

    def __init__(self, message: str = "", page: bytes | None = None) -> None:
        super().__init__(message)
        self.page = page


class TransientError(BackendError):
    """A failure that may pass: the job is retried until its attempts run out."""

    kind = "transient"


class PermanentError(BackendError):
    """A failure that will not pass (e.g. an unknown route): the job fails at once."""

    kind = "permanent"


class ParseError(TransientError):
    """The page came back but did not yield fares; ``page`` holds the raw bytes.

    When the fare pipeline refused the answer, ``field_counts`` says how many of its
    fares had each field valid and invalid (the worker sends them with the result).
    """

    kind = "parse"
    field_counts: tuple[FieldCount, ...] = ()


class BlockedError(TransientError):
    """The airline refused to answer (a blocking status, a captcha, a block banner).

    Transient, since a block passes, but its own kind, so a blocked search is never
    taken for one without flights; ``page`` holds the block page, kept for the user.
    The fetch chain raises it (``voe.worker.fetch.blocks``); a backend may raise it too.
    """

    kind = "blocked"


def check_search(backend: object, job: SearchJob) -> None:
    """``PermanentError`` for a job asking what ``backend`` does not send the airline: a
    round trip (no ``round_trips = True``), a multi-city trip (no ``multi_city = True``), a
    month's calendar (no ``calendars = True``) or
    search options outside its ``search_options``.

    Searched anyway, such a backend answers another search (the outbound leg alone, one
    adult in economy), and its prices would be stored under this job's: plausible fares,
    and wrong ones.
    """
    if job.return_date and not getattr(backend, "round_trips", False):
        raise PermanentError(
            f"backend {job.backend!r} does not search round trips (it declares no "
            f"round_trips = True): this round-trip job (return {job.return_date}) would store "
            "one-way prices; use trip = \"oneway\" in the plan, or a backend that reads the "
            "return leg")
    if job.legs and not getattr(backend, "multi_city", False):
        raise PermanentError(
            f"backend {job.backend!r} does not search multi-city trips (it declares no "
            f"multi_city = True): this trip ({job.legs}) would store another search's prices; "
            "use a backend that reads every leg")
    if job.calendar and not getattr(backend, "calendars", False):
        raise PermanentError(
            f"backend {job.backend!r} does not read airline calendars (it declares no "
            f"calendars = True): this calendar job ({job.date}) cannot be searched; drop "
            "calendar = true from the plan's [dates], or use a backend that reads calendars")
    if job.options:
        sent = getattr(backend, "search_options", frozenset())
        asked = [name for name, value, default in zip(
            SearchOptions._fields, parse_options(job.options), SearchOptions(), strict=True)
            if value != default and name not in sent]
        if asked:
            raise PermanentError(
                f"backend {job.backend!r} does not send {', '.join(asked)} to the airline (its "
                f"search_options: {', '.join(sorted(sent)) or 'none'}): this job "
                f"({job.options}) would store another search's prices; drop them from the "
                "plan's [search] table, or use a backend that sends them")


class Backend(Protocol):
    """What a backend is: a name and a ``search`` that returns the answer of one job."""

    name: str

    def search(self, job: SearchJob, http: requests.Session) -> Answer | list[Fare]:
        """Fetch and parse the fares of ``job``; raise a ``BackendError`` on failure.

        Return an ``Answer`` (fares, the search the page answers, the page) when the
        page says what it answers; a plain list of fares skips the search check.
        """
        ...
