"""The HTTP policy workers hand to backends: timeouts, retries, per-host limits, throttling counts.

``new_session`` returns a requests ``Session`` that, for every airline request:

- applies connect and read timeouts when the backend gives none;
- retries transient failures (connection errors, timeouts, resets, 5xx and 429)
  with urllib3's ``Retry``: exponential backoff with jitter, or the airline's
  ``Retry-After`` (capped at ``MAX_RETRY_AFTER``) when it gives one. A request
  fails only after its retries: with the exception requests raises for a network
  failure, or with the airline's last answer (e.g. 503), which backends map to
  ``TransientError``/``PermanentError`` as before;
- waits for a slot of its host (``VOE_HOST_CONCURRENCY`` requests at once per
  worker, a gevent-friendly semaphore held until the body is read), and while
  an airline's ``Retry-After`` runs, holds back every request of the worker to
  that host, so 429s slow the worker down instead of burning attempts;
- counts throttling answers (429, 403 "blocked", 503 with ``Retry-After``) in
  ``session.throttled``, a ``ThrottleCounter`` the worker reads and resets to tell
  the master, which paces the whole fleet.

Proxies and the User-Agent come from settings.

Known gevent trap: before reusing a pooled connection, urllib3 checks that it is
still alive with ``select.poll().poll(0)``. Under gevent's monkey patching that
poll is gevent's, which parks the greenlet until the hub's next loop iteration even
with a zero timeout, so requests leave in bursts, one per loop cycle. The pools
here use a connection class whose liveness check calls the unpatched ``poll``: the
same non-blocking syscall, without yielding to the hub.
"""

from __future__ import annotations

import random
import select
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from gevent.local import local
from gevent.monkey import get_original
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from voe import __version__
from voe.settings import Settings

USER_AGENT = f"voe/{__version__}"
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


def is_throttling(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer says we ask too much: 429, 403 (blocked), or 503 with Retry-After."""
    return status in (429, 403) or (status == 503 and "Retry-After" in headers)


class ThrottleCounter:
    """Throttling answers seen, by label, since the last ``take``.

    The label is the one set by ``counting_for`` in the running greenlet (the
    worker sets the job's backend name), else the host. ``total`` never resets.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._label = local()
        self.total = 0

    @contextmanager
    def counting_for(self, label: str) -> Iterator[None]:
        """Count what this greenlet's requests meet under ``label`` (e.g. a backend's name)."""
        previous = getattr(self._label, "value", None)
        self._label.value = label
        try:
            yield
        finally:
            self._label.value = previous

    def add(self, host: str, count: int = 1) -> None:
        """Count ``count`` throttling answers from ``host``."""
        label = getattr(self._label, "value", None) or host
        self._counts[label] += count
        self.total += count

    def take(self) -> dict[str, int]:
        """Return the counts by label since the last call, and start again from zero."""
        counts, self._counts = dict(self._counts), Counter()
        return counts


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


class _Policy:
    """What the adapter and its retries share: the host gates and the throttle counter."""

    def __init__(self, hosts: HostLimits, throttled: ThrottleCounter) -> None:
        self.hosts = hosts
        self.throttled = throttled

    def saw(self, host: str, status: int, headers: Mapping[str, str]) -> None:
        """Count a throttling answer, and hold the host back for its Retry-After."""
        if is_throttling(status, headers):
            self.throttled.add(host)
        if status in Retry.RETRY_AFTER_STATUS_CODES:
            seconds = retry_after(headers)
            if seconds:
                self.hosts.pause(host, seconds)


class _Retry(Retry):
    """urllib3's Retry, plus: every throttling answer counted, Retry-After capped and shared
    with the host's other requests, a malformed Retry-After treated as absent, and a backoff
    that starts at ``backoff_factor`` (urllib3 retries the first failure at once)."""

    def __init__(self, *args: Any, policy: _Policy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy

    def new(self, **kw: Any) -> _Retry:
        """Copy with new counters, keeping the policy."""
        retry = super().new(**kw)
        retry.policy = self.policy
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
        adapter), and its Retry-After pauses the whole host."""
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None and self.policy is not None:
            host = host_key(url) if url and "://" in url else _pool_host(_pool)
            self.policy.saw(host, response.status, response.headers)
        return retry


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
    """An HTTPAdapter whose pools check connection liveness without yielding to gevent, and
    whose requests pass their host's gate and are counted when the airline throttles."""

    def __init__(self, policy: _Policy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        """Build the pool manager, then swap in the non-yielding pool classes."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _HTTPConnectionPool,
            "https": _HTTPSConnectionPool,
        }

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        """Send within the host's gate; read the body before leaving it unless streaming."""
        host = host_key(request.url or "")
        with self.policy.hosts.slot(host):
            response = super().send(request, stream=stream, timeout=timeout, verify=verify,
                                     cert=cert, proxies=proxies)
            if not stream:
                response.content  # noqa: B018 (read now, while the host's slot is held)
        self.policy.saw(host, response.status_code, response.headers)
        return response

    def close(self) -> None:
        """Close idle pooled sockets now; urllib3 2 leaves them to the garbage collector."""
        pools = self.poolmanager.pools
        for key in pools.keys():
            pools[key].close()
        super().close()


class Session(requests.Session):
    """A requests session with voe's HTTP policy (see the module docstring).

    ``throttled`` counts throttling answers for the worker; ``hosts`` holds the
    per-host gates; ``timeout`` is the (connect, read) timeout used when a request
    gives none; ``proxy`` is the proxy of every request (None: the environment's).
    """

    def __init__(self, timeout: tuple[float, float], proxy: str | None,
                 hosts: HostLimits, throttled: ThrottleCounter) -> None:
        super().__init__()
        self.timeout = timeout
        self.proxy = proxy
        self.hosts = hosts
        self.throttled = throttled

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send with the default timeout when none was given."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        """Let the configured proxy win over the environment's (requests does the reverse)."""
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.proxy and not proxies:
            merged["proxies"] = {"http": self.proxy, "https": self.proxy}
        return merged


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
    )


def new_session(settings: Settings) -> Session:
    """Return a session with voe's HTTP policy; its pools hold ``voe_concurrency`` connections
    per host (more would only wait for the per-host limit)."""
    hosts = HostLimits(settings.voe_host_concurrency)
    throttled = ThrottleCounter()
    policy = _Policy(hosts, throttled)
    session = Session((settings.voe_http_connect_timeout, settings.voe_http_timeout),
                      settings.voe_http_proxy or None, hosts, throttled)
    adapter = _Adapter(
        policy,
        pool_connections=settings.voe_concurrency,
        pool_maxsize=settings.voe_concurrency,
        max_retries=retry_policy(settings, policy),
        pool_block=False,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.voe_user_agent or USER_AGENT
    return session
