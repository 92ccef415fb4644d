"""The fetch chain: what stands between a backend's request and the airline.

Every request a backend sends through the worker's session (``voe.worker.http``) passes
an ordered list of small middlewares, Scrapy's downloader-middleware shape, each in
its own module, nearest the backend first: default timeouts (``timeouts``), a
deadline per fetch and a body cap while it streams (``deadline``), identities that
rotate (proxy, cookies, User-Agent, sticky per job: ``identities``), block detection
(``blocks``), the User-Agent (``useragent``), retries with backoff and Retry-After
(``retry``), the proxy (``proxy``), per-host limits and pauses (``hosts``) and
throttle counting (``throttle``). ``chain`` runs them, lets a middleware send a
request again, and finds third-party ones. ``voe.worker.http`` keeps only the sending: the
connection pools (with their gevent-friendly liveness check) and the body's reading.
"""

from voe.components import DEFAULT_ORDER
from voe.worker.fetch.chain import (
    ENTRY_POINT_GROUP,
    MIDDLEWARES_BASE,
    FetchChain,
    FetchRequest,
    Middleware,
    build_chain,
    host_key,
    middleware_classes,
)

__all__ = ["DEFAULT_ORDER", "ENTRY_POINT_GROUP", "MIDDLEWARES_BASE", "FetchChain",
           "FetchRequest", "Middleware", "build_chain", "host_key", "middleware_classes"]
