"""Identities that rotate: a proxy, a cookie jar and a User-Agent, sticky for a job.

An airline that blocks an address, or a cookie, after so many searches sees a fleet
worker as one client unless its requests come as several. An identity is one proxy
(or none: ``direct``), its own cookie jar and one User-Agent. Every request of a job
(a run of ``Session.fetching_for`` with a job) goes out as the same identity, so the
airline sees one consistent visitor; an identity serves ``VOE_IDENTITY_MAX_USES``
jobs and is then retired (fresh cookies, maybe another User-Agent), and it is retired
at once when it meets a block (``BlockedError``, or a status of
``VOE_FETCH_BLOCK_STATUSES``). A job whose identity was retired under it gets a new
one on its next request: a blocked identity is worth nothing to anyone.

Proxies have a health of their own, as Crawlee's sessions have an error score: a
proxy whose identity met a block cools down for ``VOE_PROXY_COOLDOWN`` seconds, and
connection errors through a proxy add to its score (a good answer takes half a point
off); at ``MAX_PROXY_ERRORS`` it cools down too. Unlike Crawlee, the block is charged
to the proxy (the address is what the airline blocks), not only to the session, and
a new identity is never made on a cooling proxy. When every proxy is cooling down a
fetch fails at once as transient (``AllProxiesCooling``), counted as throttling so
the master slows that airline down; nothing waits forever for a proxy.

Without ``VOE_PROXIES``/``VOE_PROXIES_FILE`` there is one route, ``direct``: its
identities still rotate cookies and User-Agents, ``VOE_HTTP_PROXY`` still applies
(``voe.worker.fetch.proxy``), and it never cools down (there is nowhere else to go, and the
master's pacing already slows a blocking airline).

Cookies stay within an identity: this middleware makes the fetch's ``cookies`` the
identity's jar, so the session files an answer's cookies there and never in its own
jar, and the identity's cookies are added to each request it sends.

Counts per route (``proxy host:port`` or ``direct``, never a proxy's credentials):
blocks met, jobs served, identities retired; the worker reports them to the master.
Everything here runs in one thread of greenlets without yielding, so no lock is taken.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.cookies import RequestsCookieJar, get_cookie_header
from requests.utils import default_user_agent

from voe.backends.base import BlockedError, TransientError
from voe.worker.fetch.blocks import parse_statuses
from voe.worker.fetch.chain import FetchRequest
from voe.worker.fetch.useragent import USER_AGENT

log = logging.getLogger("voe.fetch")

DIRECT = "direct"
# Connection-error score at which a proxy cools down.
MAX_PROXY_ERRORS = 3.0
# Score a proxy gets back with every good answer through it.
ERROR_DECAY = 0.5
# Separator of VOE_USER_AGENTS (User-Agents hold commas).
USER_AGENT_SEPARATOR = "|"
_REQUESTS_DEFAULT = default_user_agent()


class AllProxiesCooling(TransientError):
    """Every proxy is cooling down: the fetch fails now, the job is tried again later."""


def proxy_name(url: str | None) -> str:
    """How a route is shown: ``host:port`` of its proxy (no credentials), or ``direct``."""
    if not url:
        return DIRECT
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname or '?'}:{port}"


def parse_proxies(text: str) -> list[str]:
    """Proxy URLs of ``VOE_PROXIES`` (commas or blanks between); ``ValueError`` for a bad one."""
    proxies = []
    for part in text.replace(",", " ").split():
        if not part.startswith(("http://", "https://")) or not urlsplit(part).hostname:
            raise ValueError(f"{part!r} is not an http(s) proxy URL")
        proxies.append(part)
    return proxies


def read_proxies_file(path: str) -> list[str]:
    """Proxy URLs of ``VOE_PROXIES_FILE``: one a line, blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as error:
        raise ValueError(f"VOE_PROXIES_FILE {path}: {error.strerror or error}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    try:
        return parse_proxies(" ".join(line for line in lines if line))
    except ValueError as error:
        raise ValueError(f"VOE_PROXIES_FILE {path}: {error}") from None


def parse_user_agents(text: str) -> list[str]:
    """User-Agents of ``VOE_USER_AGENTS``, separated by ``|``; empty ones dropped."""
    return [part.strip() for part in text.split(USER_AGENT_SEPARATOR) if part.strip()]


@dataclass
class RouteCounts:
    """What one route's identities met: blocks, jobs served, identities retired."""

    blocks: int = 0
    jobs: int = 0
    retired: int = 0


class Route:
    """One way out (a proxy, or ``direct``) and its health."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.name = proxy_name(url)
        self.proxies = {"http": url, "https": url} if url else None
        self.cool_until = 0.0
        self.errors = 0.0


class Identity:
    """A route, a cookie jar and a User-Agent, handed to ``max_uses`` jobs at most."""

    def __init__(self, number: int, route: Route, user_agent: str) -> None:
        self.number = number
        self.route = route
        self.user_agent = user_agent
        self.cookies = RequestsCookieJar()
        self.handed = 0  # jobs it was given
        self.holders = 0  # jobs holding it now
        self.retired = False

    def __repr__(self) -> str:
        return f"<Identity {self.number} via {self.route.name}>"


class IdentityPool:
    """Identities over ``proxies`` (none: one direct route), rotated as the module says.

    ``clock`` is ``time.monotonic`` unless a test gives its own. ``version`` grows with
    every change of ``counts()``, so a reporter can tell when there is news.
    """

    def __init__(self, proxies: list[str], user_agents: list[str], max_uses: int,
                 cooldown: float, clock: Callable[[], float] = time.monotonic,
                 max_errors: float = MAX_PROXY_ERRORS) -> None:
        if max_uses < 1:
            raise ValueError("max_uses must be at least 1")
        self.routes = [Route(url) for url in dict.fromkeys(proxies)] or [Route(None)]
        self.user_agents = user_agents or [USER_AGENT]
        self.max_uses = max_uses
        self.cooldown = cooldown
        self.clock = clock
        self.max_errors = max_errors
        self.counts_by_route = {route.name: RouteCounts() for route in self.routes}
        self.version = 0
        self._numbers = itertools.count(1)
        # route -> the identity new jobs get on it (by route, not name: two proxies may
        # share a host:port with other credentials)
        self._current: dict[Route, Identity] = {}
        self._held: dict[str | None, Identity] = {}  # job key (None: outside jobs) -> identity
        self._next = 0  # round robin over the routes

    @property
    def direct_only(self) -> bool:
        """True when no proxy is configured (the direct route never cools down)."""
        return self.routes[0].url is None

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """(blocks, jobs, retired) per route name, since the pool was made."""
        return {name: (c.blocks, c.jobs, c.retired) for name, c in self.counts_by_route.items()}

    def for_job(self, job: str | None) -> Identity:
        """The identity of ``job`` (a run's key, None outside jobs): the one it holds unless
        retired since, else a new hand-out; ``AllProxiesCooling`` when none can be had."""
        identity = self._held.get(job)
        if identity is not None and not identity.retired:
            return identity
        if identity is not None:
            self._drop(job, identity)
        identity = self._hand_out()
        self._held[job] = identity
        identity.handed += 1
        identity.holders += 1
        if identity.handed >= self.max_uses:  # its last job: new jobs get a fresh one
            self._current.pop(identity.route, None)
        return identity

    def job_finished(self, job: str) -> None:
        """``job``'s run is over: count the job its identity served, retire a used-up one."""
        identity = self._held.get(job)
        if identity is None:
            return
        self.counts_by_route[identity.route.name].jobs += 1
        self.version += 1
        self._drop(job, identity)

    def used_up(self, identity: Identity) -> bool:
        """Whether ``identity`` serves no job beyond those holding it now (retired, or
        handed out ``max_uses`` times)."""
        return identity.retired or identity.handed >= self.max_uses

    def blocked(self, identity: Identity) -> None:
        """``identity`` met a block: retire it at once and cool its proxy down."""
        counts = self.counts_by_route[identity.route.name]
        counts.blocks += 1
        self.version += 1
        route = identity.route
        if route.url is not None:
            route.cool_until = max(route.cool_until, self.clock() + self.cooldown)
            log.info("proxy %s met a block; cooling down for %.0fs", route.name, self.cooldown)
        self._retire(identity)

    def answered(self, identity: Identity) -> None:
        """A good answer came through ``identity``'s route: its error score eases."""
        route = identity.route
        route.errors = max(0.0, route.errors - ERROR_DECAY)

    def connection_failed(self, identity: Identity) -> None:
        """A connection through ``identity``'s proxy failed; enough of them cool it down."""
        route = identity.route
        if route.url is None:
            return  # the airline's own trouble: nothing to rotate away from
        route.errors += 1.0
        if route.errors >= self.max_errors:
            route.errors = 0.0
            route.cool_until = max(route.cool_until, self.clock() + self.cooldown)
            log.info("proxy %s failed %d connections; cooling down for %.0fs", route.name,
                     int(self.max_errors), self.cooldown)
            self._retire(identity)

    def _hand_out(self) -> Identity:
        """The identity for a new job: the next route's, round robin over routes not cooling."""
        now = self.clock()
        count = len(self.routes)
        for step in range(count):
            route = self.routes[(self._next + step) % count]
            if route.url is not None and route.cool_until > now:
                continue
            self._next = (self._next + step + 1) % count
            identity = self._current.get(route)
            if identity is None or identity.retired:
                number = next(self._numbers)
                user_agent = self.user_agents[(number - 1) % len(self.user_agents)]
                identity = self._current[route] = Identity(number, route, user_agent)
            return identity
        back = min(route.cool_until for route in self.routes) - now
        raise AllProxiesCooling(f"every proxy is cooling down (the first is back in "
                                f"{back:.0f}s)")

    def _drop(self, job: str | None, identity: Identity) -> None:
        """``job`` lets go of ``identity``; one whose jobs are all handed out and done retires."""
        del self._held[job]
        identity.holders -= 1
        if identity.handed >= self.max_uses and identity.holders <= 0:
            self._retire(identity)

    def _retire(self, identity: Identity) -> None:
        """Retire ``identity`` (once): no request goes out as it any more."""
        if identity.retired:
            return
        identity.retired = True
        identity.cookies.clear()
        if self._current.get(identity.route) is identity:
            del self._current[identity.route]
        self.counts_by_route[identity.route.name].retired += 1
        self.version += 1


def _add_cookies(prepared: requests.PreparedRequest, jar: RequestsCookieJar) -> None:
    """Add the cookies of ``jar`` for this URL to the request's Cookie header; a cookie the
    backend set itself (same name) wins."""
    # The jar writes no header for a request that has one already: ask it without.
    present = prepared.headers.pop("Cookie", "")
    if not jar:  # nothing to add, and asking an empty jar costs a mock request and a lock
        if present:
            prepared.headers["Cookie"] = present
        return
    own = get_cookie_header(jar, prepared)
    if present:
        prepared.headers["Cookie"] = present
    if not own:
        return
    names = {part.split("=", 1)[0].strip() for part in present.split(";") if part.strip()}
    added = [part for part in own.split("; ") if part.split("=", 1)[0].strip() not in names]
    if added:
        prepared.headers["Cookie"] = "; ".join([present, *added] if present else added)


class Identities:
    """Send every request as its job's identity, and learn of blocks and broken proxies."""

    def __init__(self, pool: IdentityPool, statuses: frozenset[int], session: Any = None,
                 voe_user_agent: str = USER_AGENT) -> None:
        self.pool = pool
        self.statuses = statuses
        self.session = session
        # User-Agents an identity replaces: requests' and voe's own; one a backend chose
        # (on the request or on the session) is kept.
        self.replaceable = frozenset({_REQUESTS_DEFAULT, voe_user_agent})

    @classmethod
    def from_session(cls, session: Any) -> Identities:
        """A pool from ``VOE_PROXIES`` (or ``VOE_PROXIES_FILE``), ``VOE_USER_AGENTS`` (or
        ``VOE_USER_AGENT``), ``VOE_IDENTITY_MAX_USES`` and ``VOE_PROXY_COOLDOWN``; the pool
        is also ``session.identities``, for the worker to report its counts."""
        settings = session.settings
        proxies = parse_proxies(settings.voe_proxies)
        if not proxies and settings.voe_proxies_file:
            proxies = read_proxies_file(settings.voe_proxies_file)
        user_agents = (parse_user_agents(settings.voe_user_agents)
                       or [settings.voe_user_agent or USER_AGENT])
        pool = IdentityPool(proxies, user_agents, settings.voe_identity_max_uses,
                            settings.voe_proxy_cooldown)
        session.identities = pool
        return cls(pool, parse_statuses(settings.voe_fetch_block_statuses), session,
                   settings.voe_user_agent or USER_AGENT)

    def process_request(self, request: FetchRequest) -> None:
        """Go out as the job's identity: its proxy, its cookies, its User-Agent."""
        try:
            identity = self.pool.for_job(request.job)
        except AllProxiesCooling:
            if self.session is not None:  # so the master paces the airline down
                self.session.throttled.add(request.host)
            raise
        request.meta["identity"] = identity
        request.cookies = identity.cookies
        if identity.route.proxies is not None:
            request.options["proxies"] = dict(identity.route.proxies)
            request.meta["proxy"] = identity.route.url
        headers = request.request.headers
        if headers.get("User-Agent", _REQUESTS_DEFAULT) in self.replaceable:
            headers["User-Agent"] = identity.user_agent
        _add_cookies(request.request, identity.cookies)

    def process_response(self, request: FetchRequest,
                         response: requests.Response) -> requests.Response:
        """A blocking status retires the identity (when block detection does not run first);
        any other answer eases its proxy's error score."""
        identity = request.meta.get("identity")
        if identity is not None:
            if response.status_code in self.statuses:
                self.pool.blocked(identity)
            else:
                self.pool.answered(identity)
        return response

    def process_exception(self, request: FetchRequest, error: Exception) -> None:
        """A block retires the identity and cools its proxy; a connection error counts
        against the proxy. The error goes on either way."""
        identity = request.meta.get("identity")
        if identity is None:
            return None
        if isinstance(error, BlockedError):
            self.pool.blocked(identity)
        elif isinstance(error, requests.ConnectionError):
            self.pool.connection_failed(identity)
        return None

    def job_finished(self, job: str) -> None:
        """The job's run is over: its identity counts one more job served."""
        self.pool.job_finished(job)
