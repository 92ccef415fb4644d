"""The HTTP session workers hand to backends: the fetch chain, retries, per-host limits.

``new_session`` returns a requests ``Session`` (backends use it as one) whose every
request, redirects included, is one fetch through the fetch chain (``voe.fetch``):
a deadline and a body cap (the body is always read here, in chunks, never more than
the cap), default timeouts, block detection, User-Agent, proxy and throttle counting
are middlewares there. What stays here has to sit inside urllib3's own request loop:

- retries of transient failures (connection errors, timeouts, resets, 5xx and 429)
  with urllib3's ``Retry``: exponential backoff with jitter, or the airline's
  ``Retry-After`` (capped at ``MAX_RETRY_AFTER``) when it gives one. A request fails
  only after its retries; the answers retried are counted as throttling here, since
  no middleware sees them;
- a slot of the host per request (``VOE_HOST_CONCURRENCY`` requests at once per
  worker, a gevent-friendly semaphore held until the body is read), and while an
  airline's ``Retry-After`` runs, every request of the worker to that host waits, so
  429s slow the worker down instead of burning attempts.

Known gevent trap: before reusing a pooled connection, urllib3 checks that it is
still alive with ``select.poll().poll(0)``. Under gevent's monkey patching that
poll is gevent's, which parks the greenlet until the hub's next loop iteration even
with a zero timeout, so requests leave in bursts, one per loop cycle. The pools
here use a connection class whose liveness check calls the unpatched ``poll``: the
same non-blocking syscall, without yielding to the hub.
"""

from __future__ import annotations

import itertools
import random
import select
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from http.cookiejar import CookieJar
from typing import Any

import gevent
import requests
from gevent.local import local
from gevent.monkey import get_original
from requests.adapters import HTTPAdapter
from requests.cookies import (
    RequestsCookieJar,
    cookiejar_from_dict,
    extract_cookies_to_jar,
    merge_cookies,
)
from requests.hooks import dispatch_hook
from requests.sessions import merge_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import get_netrc_auth, resolve_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from voe.fetch.chain import FetchChain, FetchRequest, build_chain, host_key
from voe.fetch.deadline import deadline_error, read_body
from voe.fetch.environment import Environment, merge_setting
from voe.fetch.throttle import ThrottleCounter, is_throttling
from voe.fetch.useragent import USER_AGENT
from voe.settings import Settings

__all__ = ["MAX_BACKOFF", "MAX_RETRY_AFTER", "RETRY_STATUSES", "USER_AGENT", "HostLimits",
           "Session", "ThrottleCounter", "host_key", "is_throttling", "new_session",
           "retry_after", "retry_policy"]

# Longest Retry-After honoured, in seconds: a longer one is waited only this long.
MAX_RETRY_AFTER = 10.0
# Longest wait between two retries, in seconds.
MAX_BACKOFF = 30.0
# Airline answers worth another try: rate limited, or a server error that may pass.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Most times a request waits for a host's pause to end (each wait lasts the whole pause).
MAX_PAUSE_WAITS = 100

_poll = get_original("select", "poll")


def _still_open(sock: object) -> bool:
    """True if an idle keep-alive socket is neither closed by the peer nor holding stray data."""
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class _Host:
    """What one host allows: a semaphore of concurrent requests and a pause until a time."""

    def __init__(self, limit: int) -> None:
        # threading's semaphore is gevent's once the worker has monkey-patched.
        self.slots = threading.BoundedSemaphore(limit) if limit else None
        self.resume_at = 0.0


class HostLimits:
    """Per-host gates of one session: at most ``limit`` requests at once (0: no limit), and a
    pause after an airline's Retry-After during which no new request leaves for that host."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._hosts: dict[str, _Host] = {}

    def _host(self, host: str) -> _Host:
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = _Host(self.limit)
        return gate

    def pause(self, host: str, seconds: float) -> None:
        """Hold back new requests to ``host`` for ``seconds`` (a longer pause already set stays)."""
        gate = self._host(host)
        gate.resume_at = max(gate.resume_at, time.monotonic() + seconds)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Wait for the host's pause to end and a free slot, and hold the slot in the block."""
        gate = self._host(host)
        for _ in range(MAX_PAUSE_WAITS):
            wait = gate.resume_at - time.monotonic()
            if wait <= 0:
                break
            time.sleep(wait)
        if gate.slots is None:
            yield
            return
        with gate.slots:
            yield


_RETRY_AFTER_PARSER = Retry(0)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """An answer's Retry-After in seconds, at most ``MAX_RETRY_AFTER``; None if absent or odd."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = _RETRY_AFTER_PARSER.parse_retry_after(value)
    except InvalidHeader:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _pause_for(hosts: HostLimits, host: str, status: int, headers: Mapping[str, str]) -> None:
    """Hold ``host`` back for the Retry-After of an answer that carries one (429, 503, 413)."""
    if status in Retry.RETRY_AFTER_STATUS_CODES:
        seconds = retry_after(headers)
        if seconds:
            hosts.pause(host, seconds)


class _Policy:
    """What the retries share with the session: the host gates and the throttle counter."""

    def __init__(self, hosts: HostLimits, throttled: ThrottleCounter) -> None:
        self.hosts = hosts
        self.throttled = throttled

    def retried(self, host: str, status: int, headers: Mapping[str, str]) -> None:
        """An answer urllib3 will retry: count it if it throttles us, and honour Retry-After."""
        if is_throttling(status, headers):
            self.throttled.add(host)
        _pause_for(self.hosts, host, status, headers)


class _Retry(Retry):
    """urllib3's Retry, plus: every throttling answer counted, Retry-After capped and shared
    with the host's other requests, a malformed Retry-After treated as absent, and a backoff
    that starts at ``backoff_factor`` (urllib3 retries the first failure at once)."""

    def __init__(self, *args: Any, policy: _Policy | None = None,
                 max_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.max_bytes = max_bytes

    def new(self, **kw: Any) -> _Retry:
        """Copy with new counters, keeping the policy."""
        retry = super().new(**kw)
        retry.policy = self.policy
        retry.max_bytes = self.max_bytes
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        """The airline's Retry-After in seconds, at most ``MAX_RETRY_AFTER``; None if unusable."""
        return retry_after(response.headers)

    def get_backoff_time(self) -> float:
        """``backoff_factor * 2 ** (n - 1)`` after the n-th consecutive failure, plus jitter."""
        failures = 0
        for entry in reversed(self.history):
            if entry.redirect_location is not None:
                break
            failures += 1
        if failures == 0 or self.backoff_factor <= 0:
            return 0.0
        backoff = self.backoff_factor * 2 ** (failures - 1)
        backoff += random.random() * self.backoff_jitter
        return min(self.backoff_max, backoff)

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> _Retry:
        """Count the try; an answer that will be retried is seen here (the last one by the
        chain), and its Retry-After pauses the whole host."""
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:
            if self.policy is not None:
                host = host_key(url) if url and "://" in url else _pool_host(_pool)
                self.policy.retried(host, response.status, response.headers)
            self._forget_big_body(response)
        return retry

    def _forget_big_body(self, response: Any) -> None:
        """Close a retried answer whose body may pass the cap: urllib3 drains a retried
        answer into memory, and an endless 503 would never end."""
        if self.max_bytes is None:
            return
        declared = response.headers.get("Content-Length", "")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            response.close()


def _pool_host(pool: Any) -> str:
    """The host key of a urllib3 pool (the airline's, unless a plain-http proxy is used)."""
    scheme = getattr(pool, "scheme", None) or "http"
    port = getattr(pool, "port", None) or (443 if scheme == "https" else 80)
    return f"{scheme}://{str(getattr(pool, 'host', '')).lower()}:{port}"


class _HTTPConnection(HTTPConnection):
    @property
    def is_connected(self) -> bool:
        return self.sock is not None and _still_open(self.sock)


class _HTTPSConnection(HTTPSConnection):
    @property
    def is_connected(self) -> bool:
        return self.sock is not None and _still_open(self.sock)


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """An HTTPAdapter whose pools check connection liveness without yielding to gevent."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        """Build the pool manager, then swap in the non-yielding pool classes."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _HTTPConnectionPool,
            "https": _HTTPSConnectionPool,
        }

    def close(self) -> None:
        """Close idle pooled sockets now; urllib3 2 leaves them to the garbage collector."""
        pools = self.poolmanager.pools
        for key in pools.keys():
            pools[key].close()
        super().close()


class Session(requests.Session):
    """A requests session whose requests pass the fetch chain (see the module docstring).

    ``settings`` are the worker's; ``throttled`` counts throttling answers for the
    worker; ``hosts`` holds the per-host gates; ``chain`` is the fetch chain, built from
    ``VOE_FETCH_MIDDLEWARES``. Every body is read by the session (within the chain's
    limits), so ``stream=True`` gives a response whose content is already there.
    """

    def __init__(self, settings: Settings, hosts: HostLimits, throttled: ThrottleCounter) -> None:
        super().__init__()
        self.settings = settings
        self.hosts = hosts
        self.throttled = throttled
        self._running = local()
        self._runs = itertools.count(1)  # numbers the runs of fetching_for (job keys)
        # Proxies, NO_PROXY, CA bundle and .netrc as requests reads them, read once (see
        # voe.fetch.environment): requests would scan os.environ on every request.
        self.environment = Environment.read()
        self.chain: FetchChain = build_chain(self, settings.voe_fetch_middlewares)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """requests' ``prepare_request``, with ``.netrc`` looked up only if the session found
        one and plain dictionaries merged without requests' slow type checks."""
        merged_cookies = merge_cookies(RequestsCookieJar(), self.cookies)
        cookies = request.cookies
        if cookies:  # requests merges an empty jar too, which adds nothing
            if not isinstance(cookies, CookieJar):
                cookies = cookiejar_from_dict(cookies)
            merged_cookies = merge_cookies(merged_cookies, cookies)
        auth = request.auth
        if self.trust_env and not auth and not self.auth and self.environment.netrc:
            auth = get_netrc_auth(request.url)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=request.method.upper(), url=request.url, files=request.files,
            data=request.data, json=request.json,
            headers=merge_setting(request.headers, self.headers, dict_class=CaseInsensitiveDict),
            params=merge_setting(request.params, self.params),
            auth=merge_setting(auth, self.auth), cookies=merged_cookies,
            hooks=merge_hooks(request.hooks, self.hooks))
        return prepared

    def merge_environment_settings(self, url: str, proxies: dict[str, str] | None,
                                   stream: bool | None, verify: Any, cert: Any) -> dict[str, Any]:
        """requests' own, from the environment read when the session was made."""
        if self.trust_env:
            if proxies is not None:
                for key, value in self.environment.proxies_for(
                        url, proxies.get("no_proxy")).items():
                    proxies.setdefault(key, value)
            if verify is True or verify is None:
                verify = self.environment.ca_bundle or verify
        return {"proxies": merge_setting(proxies, self.proxies),
                "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify),
                "cert": merge_setting(cert, self.cert)}

    @contextmanager
    def fetching_for(self, name: str, backend: object = None,
                     job: str | None = None) -> Iterator[None]:
        """Run this greenlet's fetches for ``backend`` (called ``name``): throttling answers
        count under ``name``, and its ``block_markers`` mark block pages. With ``job`` (the
        job's id) the fetches share one key for this run, so per-job state (an identity)
        sticks to the job, and the chain's ``job_finished`` is told when the run ends."""
        previous = (getattr(self._running, "backend", None), getattr(self._running, "job", None))
        key = None if job is None else f"{job}#{next(self._runs)}"
        self._running.backend, self._running.job = backend, key
        try:
            with self.throttled.counting_for(name):
                yield
        finally:
            self._running.backend, self._running.job = previous
            if key is not None:
                self.chain.job_finished(key)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send ``request`` through the fetch chain, then follow its redirects (each one is a
        fetch of its own, through ``resolve_redirects``, which calls this again)."""
        kwargs.setdefault("stream", self.stream)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("cert", self.cert)
        if "proxies" not in kwargs:
            kwargs["proxies"] = resolve_proxies(request, self.proxies,
                                                self.trust_env and self.environment.proxies)
        follow = kwargs.pop("allow_redirects", True)
        fetch = FetchRequest(request, kwargs, host_key(request.url or ""),
                             getattr(self._running, "backend", None),
                             getattr(self._running, "job", None))
        response = self.chain.fetch(fetch, self._download)
        if follow and response.is_redirect:
            history = [response, *self.resolve_redirects(response, request, **kwargs)]
            response = history.pop()
            response.history = history
        return response

    def _download(self, fetch: FetchRequest) -> requests.Response:
        """The chain's innermost step: one request and its whole body, within the fetch's
        deadline and cap, holding a slot of the host; Retry-After pauses the host."""
        if fetch.deadline is None:
            return self._transfer(fetch)
        left = fetch.deadline - time.monotonic()
        if left <= 0:
            raise deadline_error(fetch)
        timer = gevent.Timeout(left)
        timer.start()
        try:
            return self._transfer(fetch)
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            raise deadline_error(fetch) from None
        finally:
            timer.close()

    def _transfer(self, fetch: FetchRequest) -> requests.Response:
        request, options = fetch.request, fetch.options
        adapter = self.get_adapter(url=request.url or "")
        started = time.perf_counter()
        with self.hosts.slot(fetch.host):
            response = adapter.send(request, stream=True, timeout=options.get("timeout"),
                                    verify=options.get("verify", True),
                                    cert=options.get("cert"), proxies=options.get("proxies"))
            try:
                read_body(response, fetch)
            except BaseException:
                response.close()
                raise
        response.elapsed = timedelta(seconds=time.perf_counter() - started)
        _pause_for(self.hosts, fetch.host, response.status_code, response.headers)
        response = dispatch_hook("response", request.hooks, response, **options)
        jar = self.cookies if fetch.cookies is None else fetch.cookies  # an identity's own
        extract_cookies_to_jar(jar, request, response.raw)
        return response


def retry_policy(settings: Settings, policy: _Policy | None = None) -> Retry:
    """The urllib3 ``Retry`` of airline requests, from ``VOE_HTTP_RETRIES``/``VOE_HTTP_BACKOFF``."""
    return _Retry(
        total=settings.voe_http_retries,
        other=0,
        backoff_factor=settings.voe_http_backoff,
        backoff_jitter=settings.voe_http_backoff,
        backoff_max=MAX_BACKOFF,
        status_forcelist=RETRY_STATUSES,
        respect_retry_after_header=True,
        raise_on_status=False,
        policy=policy,
        max_bytes=settings.voe_fetch_max_bytes,
    )


def new_session(settings: Settings, concurrency: int | None = None) -> Session:
    """Return a session with voe's HTTP policy and fetch chain; its pools hold
    ``concurrency`` (default ``voe_concurrency``: the worker's, which ``voe worker
    --concurrency`` overrides) connections per host. Fewer would open and drop a
    connection for every request past them; more would only wait for the per-host limit."""
    hosts = HostLimits(settings.voe_host_concurrency)
    throttled = ThrottleCounter()
    session = Session(settings, hosts, throttled)
    connections = concurrency or settings.voe_concurrency
    adapter = _Adapter(
        pool_connections=connections,
        pool_maxsize=connections,
        max_retries=retry_policy(settings, _Policy(hosts, throttled)),
        pool_block=False,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
