"""The worker's HTTP adapter: connection pools that never retry (retries are the fetch
chain's), kept by origin, and that check a kept connection without yielding to gevent.

Known gevent trap: before reusing a pooled connection, urllib3 checks that it is
still alive with ``select.poll().poll(0)``. Under gevent's monkey patching that
poll is gevent's, which parks the greenlet until the hub's next loop iteration even
with a zero timeout, so requests leave in bursts, one per loop cycle. The pools
here use a connection class whose liveness check calls the unpatched ``poll``: the
same non-blocking syscall, without yielding to the hub.
"""

from __future__ import annotations

import select
from typing import Any

import requests
from gevent.monkey import get_original
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from voe.worker.fetch.chain import ORIGIN

_poll = get_original("select", "poll")


def _still_open(sock: object) -> bool:
    """True if an idle keep-alive socket is neither closed by the peer nor holding stray data."""
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


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


# Pools an adapter keeps by origin and TLS settings before it starts over (see
# ``Adapter.get_connection_with_tls_context``); urllib3's own pools are not bounded by it.
MAX_KEPT_POOLS = 1000


def _keyable(setting: Any) -> bool:
    """Whether a ``verify`` or ``cert`` setting can key a kept pool (None, a bool, a path or
    a pair of paths: what requests takes)."""
    if type(setting) is tuple:
        return all(type(part) is str for part in setting)
    return setting is None or type(setting) in (bool, str)


def sets_cookies(raw: Any) -> bool:
    """Whether a urllib3 response carries cookies: without, filing them is a no-op, and a
    costly one (a mock request and response, a URL parse, a lock per jar)."""
    headers = getattr(raw, "headers", None)
    return headers is None or "Set-Cookie" in headers or "Set-Cookie2" in headers


class LazyJar:
    """A cookie-jar attribute that is an empty ``RequestsCookieJar`` made the first time it is
    read: most answers set no cookie and most requests send none, and an empty jar (a
    lock and two dictionaries) costs as much as a tenth of the rest of a response."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_lazy{name}"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        jar = instance.__dict__.get(self.key)
        if jar is None:
            jar = instance.__dict__[self.key] = RequestsCookieJar()
        return jar

    def __set__(self, instance: object, jar: Any) -> None:
        instance.__dict__[self.key] = jar


class Response(requests.Response):
    """requests' ``Response``, whose cookie jar is made when first asked for."""

    cookies = LazyJar()


# What ``requests.Response()`` holds when made, but the cookie jar (``Response`` makes it
# when asked) and what ``build_response`` sets anew (mutable: the headers and history).
_FRESH = {name: value for name, value in vars(requests.Response()).items()
          if name not in ("cookies", "headers", "history")}


class Adapter(HTTPAdapter):
    """An HTTPAdapter whose pools check connection liveness without yielding to gevent, and
    never retry (requests' default ``max_retries``): retries are the fetch chain's."""

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """requests' own, filing the answer's cookies only when it sets any (its jar is made
        only then, or when asked for: see ``Response``)."""
        response = Response.__new__(Response)
        response.__dict__.update(_FRESH)
        response.history = []
        response.status_code = getattr(resp, "status", None)
        response.headers = CaseInsensitiveDict(getattr(resp, "headers", {}))
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        if sets_cookies(resp):
            extract_cookies_to_jar(response.cookies, req, resp)
        response.request = req
        response.connection = self
        return response

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, Any, Any], HTTPConnectionPool] = {}

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: dict[str, str] | None = None,
                                        cert: Any = None) -> HTTPConnectionPool:
        """requests' own, with the pool of a request without a proxy kept by its URL's
        ``scheme://host:port`` and TLS settings, so the next request there skips three URL
        parses and urllib3's pool-key work; a pool urllib3 has closed since (evicted, or
        the adapter closed) is looked up again."""
        origin = (None if proxies or not _keyable(verify) or not _keyable(cert)
                  or not isinstance(request.url, str) else ORIGIN.match(request.url))
        if origin is None:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (origin[0], verify, cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:
            if len(self._pools) >= MAX_KEPT_POOLS:
                self._pools.clear()
            pool = self._pools[key] = super().get_connection_with_tls_context(
                request, verify, proxies, cert)
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: dict[str, str]) -> str:
        """requests' own; without proxies, what it comes to: the path and query."""
        if proxies:
            return super().request_url(request, proxies)
        url = request.path_url
        return f"/{url.lstrip('/')}" if url.startswith("//") else url

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
