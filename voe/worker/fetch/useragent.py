"""The User-Agent of airline requests: ``VOE_USER_AGENT``, else ``voe/VERSION``.

A backend that sets its own User-Agent (on the request or the session) keeps it;
only requests' default one (``python-requests/...``) or none is replaced.
"""

from __future__ import annotations

from typing import Any

from requests.utils import default_user_agent

from voe import __version__
from voe.worker.fetch.chain import FetchRequest

USER_AGENT = f"voe/{__version__}"
_REQUESTS_DEFAULT = default_user_agent()


class UserAgent:
    """Give every request voe's User-Agent unless its backend chose one."""

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent or USER_AGENT

    @classmethod
    def from_session(cls, session: Any) -> UserAgent:
        """The User-Agent of ``VOE_USER_AGENT``, also made the session's default header."""
        middleware = cls(session.settings.voe_user_agent)
        session.headers["User-Agent"] = middleware.user_agent
        return middleware

    def process_request(self, request: FetchRequest) -> None:
        """Set the User-Agent header when it is absent or requests' default."""
        headers = request.request.headers
        if headers.get("User-Agent", _REQUESTS_DEFAULT) == _REQUESTS_DEFAULT:
            headers["User-Agent"] = self.user_agent
