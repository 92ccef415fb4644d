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
  an error of the download). It returns None to let the error go on, or a response
  that then continues through ``process_response`` of the middlewares nearer the
  backend. So a middleware learns of a block another one detected.

A middleware may also define ``job_finished(job)``: the session calls it when a job's
run that fetched anything ends (``FetchRequest.job`` is that run's key), for state kept
per job.

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
from collections.abc import Callable
from http.cookiejar import CookieJar
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from voe.components import load_class, ordered

log = logging.getLogger("voe.fetch")

ENTRY_POINT_GROUP = "voe.fetch_middlewares"
# The built-in middlewares and their order (see each module's docstring).
MIDDLEWARES_BASE: dict[str, int] = {
    "voe.fetch.deadline:Deadline": 100,
    "voe.fetch.identities:Identities": 200,
    "voe.fetch.blocks:BlockDetection": 300,
    "voe.fetch.useragent:UserAgent": 500,
    "voe.fetch.proxy:Proxy": 750,
    "voe.fetch.throttle:Throttle": 900,
}


def host_key(url: str) -> str:
    """The host a URL's requests count against: ``scheme://host:port``, lower case."""
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
                         response: requests.Response) -> requests.Response:
        """Look at (or replace) the answer; raise to fail the fetch."""
        ...

    def process_exception(self, request: FetchRequest,
                          error: Exception) -> requests.Response | None:
        """Learn of a failure; return a response to recover from it."""
        ...


class FetchChain:
    """Middlewares in order, run around a download (see the module docstring)."""

    def __init__(self, middlewares: list[Any]) -> None:
        self.middlewares = middlewares
        hooks = [(index, middleware) for index, middleware in enumerate(middlewares)]
        self._requests = [(i, m.process_request) for i, m in hooks
                          if hasattr(m, "process_request")]
        self._responses = [(i, m.process_response) for i, m in reversed(hooks)
                           if hasattr(m, "process_response")]
        self._exceptions = [(i, m.process_exception) for i, m in reversed(hooks)
                            if hasattr(m, "process_exception")]
        self._job_finished = [m.job_finished for m in middlewares if hasattr(m, "job_finished")]

    def fetch(self, request: FetchRequest, download: Download) -> requests.Response:
        """Run ``request`` through every middleware and ``download``; return the answer."""
        below = len(self.middlewares)
        try:
            for _, hook in self._requests:
                response = hook(request)
                if response is not None:
                    break
            else:
                response = download(request)
        except Exception as error:  # each middleware may recover, else it is raised again
            response, below = self._recover(request, error, below)
        while True:
            raised_at = below
            try:
                for index, hook in self._responses:
                    if index < below:
                        raised_at = index
                        response = hook(request, response)
                return response
            except Exception as error:  # offered to the middlewares nearer the backend
                response, below = self._recover(request, error, raised_at)

    def job_finished(self, job: str) -> None:
        """Tell the middlewares with a ``job_finished(job)`` hook that the run ``job`` (a
        ``FetchRequest.job`` key) is over, e.g. so an identity counts one more job served."""
        for hook in self._job_finished:
            hook(job)

    def _recover(self, request: FetchRequest, error: Exception,
                 below: int) -> tuple[requests.Response, int]:
        """Offer ``error`` to the middlewares under index ``below``; raise it if none answers."""
        for index, hook in self._exceptions:
            if index < below:
                response = hook(request, error)
                if response is not None:
                    return response, index
        raise error


def _skip_broken(path: str, why: str) -> None:
    """A middleware entry point that fails to load is skipped: a broken plugin must not stop
    a worker (the fare pipeline, which guards what is stored, fails jobs instead)."""
    log.warning("fetch middleware entry point %s failed to load: %s", path, why)


def middleware_classes(setting: str) -> list[tuple[int, str, type]]:
    """The middleware classes to run, as (order, path, class) in order.

    An entry point that fails to load is logged and skipped; a class named in
    ``setting`` that cannot be imported raises ``ValueError``, since the user asked for it.
    """
    chosen = []
    for order, path, found in ordered(MIDDLEWARES_BASE, ENTRY_POINT_GROUP, setting,
                                      _skip_broken):
        if found is None:
            try:
                found = load_class(path)
            except (ImportError, AttributeError, TypeError) as error:
                raise ValueError(f"fetch middleware {path}: {error}") from None
        chosen.append((order, path, found))
    return chosen


def build_chain(session: Any, setting: str) -> FetchChain:
    """Build the chain of ``session`` (a ``voe.http.Session``) from ``VOE_FETCH_MIDDLEWARES``."""
    middlewares = []
    for _, _, cls in middleware_classes(setting):
        factory = getattr(cls, "from_session", None)
        middlewares.append(factory(session) if factory is not None else cls())
    return FetchChain(middlewares)
