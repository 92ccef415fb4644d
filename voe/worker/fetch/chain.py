"""The fetch chain: an ordered list of small middlewares around every airline request.

The shape is Scrapy's downloader middleware. Each middleware is a class with any of
three hooks, and an order number; lower numbers sit nearer the backend, higher
numbers nearer the network:

- ``process_request(request)`` runs in ascending order before the download. It
  returns None to go on, or a ``requests.Response`` to answer without downloading
  (the middlewares after it are skipped), or raises.
- ``process_response(request, response)`` runs in descending order after the
  download; it returns the response (the same or another) or raises, e.g.
  ``BlockedError`` for a block page.
- ``process_exception(request, error)`` runs, in descending order, for the
  middlewares nearer the backend than where ``error`` was raised (all of them for
  an error of the download or of a ``process_request``). It returns None to let the
  error go on, or a response that then continues through ``process_response`` of the
  middlewares nearer the backend. So a middleware learns of a block another one
  detected. A ``process_response`` or ``process_exception`` that raises hands its
  error on the same way.

Sending again: ``process_response`` and ``process_exception`` may also return the
``FetchRequest`` they were given (changed or not; never another one, since it carries
what the middlewares nearer the backend set on it: deadline, identity, cookies). The
chain then sends it again from that middleware toward the network: the
``process_request`` of the middlewares after it, the download, and their
``process_response`` or ``process_exception``; the answer (or error) then comes back
to the middleware that sent it again, as if for the first time, which may send it
once more. The middlewares nearer the backend see only the last answer; those nearer
the network see every try. That is how ``retry`` retries (Scrapy's middlewares
return a new ``Request`` to the scheduler; here the fetch goes on in place, within
its deadline).

A middleware may also define ``fetch_finished(request)``: called once when a fetch
ends, however it ends (an answer, an error, or an interruption that is no
``Exception``, such as ``gevent.Timeout`` or ``GreenletExit``), for what must never
leak (``hosts`` gives back its host slot there). And ``job_finished(job)``: the
session calls it when a job's run that fetched anything ends (``FetchRequest.job`` is
that run's key), for state kept per job.

A middleware class is built with ``from_session(session)`` when it has that class
method (to read ``session.settings`` or share the session's counters), else with no
arguments. Which classes run, and in which order: the built-ins of
``MIDDLEWARES_BASE``, then the classes of the ``voe.fetch_middlewares`` entry-point
group (order: their ``order`` attribute, 500 when absent), then
``VOE_FETCH_MIDDLEWARES`` (``module:Class=ORDER`` adds or moves one,
``module:Class=none`` removes one).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from http.cookiejar import CookieJar
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from voe.components import build, classes

log = logging.getLogger("voe.fetch")

ENTRY_POINT_GROUP = "voe.fetch_middlewares"
# The built-in middlewares and their order (see each module's docstring). Retries sit
# nearer the network than block detection (a block is never retried in the fetch) and
# nearer the backend than host limits and throttle counting (which see every try).
MIDDLEWARES_BASE: dict[str, int] = {
    "voe.worker.fetch.timeouts:Timeouts": 50,
    "voe.worker.fetch.deadline:Deadline": 100,
    "voe.worker.fetch.identities:Identities": 200,
    "voe.worker.fetch.blocks:BlockDetection": 300,
    "voe.worker.fetch.useragent:UserAgent": 500,
    "voe.worker.fetch.retry:Retries": 550,
    "voe.worker.fetch.proxy:Proxy": 750,
    "voe.worker.fetch.hosts:HostLimit": 800,
    "voe.worker.fetch.throttle:Throttle": 900,
}


# A URL's ``scheme://host:port``, when nothing else (user info) stands before its path.
ORIGIN = re.compile(r"https?://[^/?#@]+(?=[/?#]|\Z)", re.IGNORECASE)
# Host keys already worked out, by origin; more origins than this and it starts over.
MAX_KEPT_HOSTS = 1000
_host_keys: dict[str, str] = {}


def host_key(url: str) -> str:
    """The host a URL's requests count against: ``scheme://host:port``, lower case (worked
    out once per origin: it is asked on every fetch)."""
    origin = ORIGIN.match(url)
    if origin is None:
        return _host_key(url)
    key = _host_keys.get(origin[0])
    if key is None:
        if len(_host_keys) >= MAX_KEPT_HOSTS:
            _host_keys.clear()
        key = _host_keys[origin[0]] = _host_key(origin[0])
    return key


def _host_key(url: str) -> str:
    parts = urlsplit(url)
    scheme = (parts.scheme or "http").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{(parts.hostname or '').lower()}:{port or default}"


class FetchRequest:
    """One request on its way through the chain, with what the middlewares decide about it.

    ``request`` is the prepared request and ``options`` the keyword arguments of the
    adapter's ``send`` (``timeout``, ``proxies``, ``verify``, ``cert``); ``host`` is its
    ``scheme://host:port``; ``backend`` the backend object the worker is running in this
    greenlet (None outside a job) and ``job`` the key of that job's run (None outside a
    job; one key per run of ``Session.fetching_for``, so a job's requests share it).
    ``deadline`` (a ``time.monotonic`` instant) and ``max_bytes`` bound the download when
    set; ``cookies`` is the jar the answer's cookies go to (None: the session's own, set
    by an identity so cookies never cross identities); ``meta`` is free for middlewares.
    """

    __slots__ = ("request", "options", "host", "backend", "job", "deadline", "max_bytes",
                 "cookies", "meta")

    def __init__(self, request: requests.PreparedRequest, options: dict[str, Any], host: str,
                 backend: object = None, job: str | None = None) -> None:
        self.request = request
        self.options = options
        self.host = host
        self.backend = backend
        self.job = job
        self.deadline: float | None = None
        self.max_bytes: int | None = None
        self.cookies: CookieJar | None = None
        self.meta: dict[str, Any] = {}


Download = Callable[[FetchRequest], requests.Response]


class Middleware(Protocol):
    """What a fetch middleware may define; every hook is optional (see the module docstring)."""

    def process_request(self, request: FetchRequest) -> requests.Response | None:
        """Prepare ``request``, or answer it; raise to fail the fetch."""
        ...

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response | FetchRequest:
        """Look at (or replace) the answer, or return ``request`` to send it again; raise to
        fail the fetch."""
        ...

    def process_exception(self, request: FetchRequest,
                          error: Exception) -> requests.Response | FetchRequest | None:
        """Learn of a failure; return a response to recover from it, or ``request`` to send
        it again."""
        ...

    def fetch_finished(self, request: FetchRequest) -> None:
        """The fetch of ``request`` is over, however it ended: let go of what it held."""
        ...


class FetchChain:
    """Middlewares in order, run around a download (see the module docstring)."""

    def __init__(self, middlewares: list[Any]) -> None:
        self.middlewares = middlewares
        self._requests = [getattr(m, "process_request", None) for m in middlewares]
        self._responses = [getattr(m, "process_response", None) for m in middlewares]
        self._exceptions = [getattr(m, "process_exception", None) for m in middlewares]
        self._finished = [m.fetch_finished for m in middlewares if hasattr(m, "fetch_finished")]
        self._job_finished = [m.job_finished for m in middlewares if hasattr(m, "job_finished")]

    def fetch(self, request: FetchRequest, download: Download) -> requests.Response:
        """Run ``request`` through every middleware and ``download``; return the answer."""
        if not self._finished:
            return self._exchange(request, download, 0)
        try:
            return self._exchange(request, download, 0)
        finally:
            for hook in self._finished:
                hook(request)

    def job_finished(self, job: str) -> None:
        """Tell the middlewares with a ``job_finished(job)`` hook that the run ``job`` (a
        ``FetchRequest.job`` key) is over, e.g. so an identity counts one more job served."""
        for hook in self._job_finished:
            hook(job)

    def _exchange(self, request: FetchRequest, download: Download,
                  first: int) -> requests.Response:
        """Send ``request`` from middleware number ``first`` toward the network and bring its
        answer back down to ``first``; return it, or raise the error none of them answered."""
        error: Exception | None = None
        response: Any = None
        try:
            for hook in self._requests[first:]:
                if hook is not None:
                    response = hook(request)
                    if response is not None:
                        break
            else:
                response = download(request)
        except Exception as raised:  # offered to every process_exception below
            error = raised
        index = len(self.middlewares) - 1  # the next middleware to hear, going down
        while index >= first:
            try:
                if error is None:
                    hook = self._responses[index]
                    outcome = response if hook is None else hook(request, response)
                else:
                    hook = self._exceptions[index]
                    outcome = None if hook is None else hook(request, error)
            except Exception as raised:  # offered to the middlewares nearer the backend
                error, index = raised, index - 1
                continue
            if outcome is request:  # the answer to this try comes back to the same middleware
                response, error = self._resend(request, download, index + 1)
                continue
            if isinstance(outcome, FetchRequest):
                raise TypeError(f"{type(self.middlewares[index]).__name__} returned another "
                                "FetchRequest; only the one it was given can be sent again")
            if error is None:
                response = outcome
            elif outcome is not None:  # process_exception answered: the error is over
                response, error = outcome, None
            index -= 1
        if error is not None:
            raise error
        return response

    def _resend(self, request: FetchRequest, download: Download,
                first: int) -> tuple[requests.Response | None, Exception | None]:
        """Send ``request`` again from middleware number ``first``: (answer, None) or (None,
        the error the middlewares from ``first`` up did not answer)."""
        try:
            return self._exchange(request, download, first), None
        except Exception as error:  # handed to the middleware that sent it again
            return None, error


def _skip_broken(path: str, why: str) -> None:
    """A middleware entry point that fails to load is skipped: a broken plugin must not stop
    a worker (the fare pipeline, which guards what is stored, fails jobs instead)."""
    log.warning("fetch middleware entry point %s failed to load: %s", path, why)


def middleware_classes(setting: str) -> list[tuple[int, str, type]]:
    """The middleware classes to run, as (order, path, class) in order.

    An entry point that fails to load is logged and skipped; a class named in
    ``setting`` that cannot be imported raises ``ValueError``, since the user asked for it.
    """
    return classes(MIDDLEWARES_BASE, ENTRY_POINT_GROUP, setting, "fetch middleware",
                   _skip_broken)


def build_chain(session: Any, setting: str) -> FetchChain:
    """Build the chain of ``session`` (a ``voe.worker.http.Session``) from
    ``VOE_FETCH_MIDDLEWARES``."""
    return FetchChain(build(middleware_classes(setting), "from_session", session))
