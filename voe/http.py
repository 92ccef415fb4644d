"""The HTTP session workers hand to backends: pooled keep-alive connections, no retries.

Known gevent trap: before reusing a pooled connection, urllib3 checks that it is
still alive with ``select.poll().poll(0)``. Under gevent's monkey patching that
poll is gevent's, which parks the greenlet until the hub's next loop iteration even
with a zero timeout, so requests leave in bursts, one per loop cycle. The pools
here use a connection class whose liveness check calls the unpatched ``poll``: the
same non-blocking syscall, without yielding to the hub.
"""

from __future__ import annotations

import select

import requests
from gevent.monkey import get_original
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from voe import __version__
from voe.settings import Settings

USER_AGENT = f"voe/{__version__}"

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


def new_session(settings: Settings) -> requests.Session:
    """Return a session whose pools hold ``voe_concurrency`` connections per host, no retries."""
    session = requests.Session()
    adapter = _Adapter(
        pool_connections=settings.voe_concurrency,
        pool_maxsize=settings.voe_concurrency,
        max_retries=0,
        pool_block=False,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session
