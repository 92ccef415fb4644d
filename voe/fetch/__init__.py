"""The fetch chain: what stands between a backend's request and the airline.

Every request a backend sends through the worker's session (``voe.http``) passes
an ordered list of small middlewares, Scrapy's downloader-middleware shape: a
deadline per fetch and a body cap while it streams (``deadline``), identities that
rotate (proxy, cookies, User-Agent, sticky per job: ``identities``), block detection
(``blocks``), the User-Agent (``useragent``), the proxy (``proxy``) and throttle
counting (``throttle``). ``chain`` runs them and finds third-party ones. What must
sit inside urllib3's own loop stays in ``voe.http``: retries with backoff and
Retry-After, per-host limits and pauses, and the connection pools' liveness check.
"""

from voe.components import DEFAULT_ORDER
from voe.fetch.chain import (
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
