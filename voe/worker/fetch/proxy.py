"""The proxy of airline requests: ``VOE_HTTP_PROXY`` for every request, else the environment's.

requests lets the environment's ``HTTP_PROXY``/``HTTPS_PROXY`` win over a session's
proxies; here the configured proxy wins, for http and https alike. Empty: requests'
usual behaviour (the environment's proxies, honouring ``NO_PROXY``). A request whose
identity goes through a proxy of ``VOE_PROXIES`` keeps that one.
"""

from __future__ import annotations

from typing import Any

from voe.worker.fetch.chain import FetchRequest


class Proxy:
    """Send every request through ``VOE_HTTP_PROXY`` when it is set."""

    def __init__(self, proxy: str) -> None:
        self.proxies = {"http": proxy, "https": proxy} if proxy else None

    @classmethod
    def from_session(cls, session: Any) -> Proxy:
        """The proxy of ``VOE_HTTP_PROXY``."""
        return cls(session.settings.voe_http_proxy)

    def process_request(self, request: FetchRequest) -> None:
        """Route the request through the configured proxy, unless its identity has its own
        (``meta["proxy"]``, set by ``voe.worker.fetch.identities`` from ``VOE_PROXIES``)."""
        if self.proxies is not None and not request.meta.get("proxy"):
            request.options["proxies"] = self.proxies
