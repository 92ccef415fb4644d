"""What requests reads from the environment, read once per session instead of per request.

A requests session that trusts the environment (``trust_env``, on by default) scans
``os.environ`` on every request, several times: the proxies and ``NO_PROXY``
(``getproxies_environment`` walks every variable), the CA bundle
(``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``), and it looks for a ``.netrc`` file.
In a worker with about 90 variables that cost about 0.25 ms of CPU per request, a
tenth of a whole fetch and parse, for an environment that does not change while the
worker runs. ``Environment.read()`` takes it once, when the session is made, and
``voe.worker.http.Session`` applies it the way requests does:

- proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, any case):
  when the environment holds none, there is nothing to look up; when it holds
  some, requests' own ``get_environ_proxies`` decides, once per scheme, host and
  ``no_proxy`` (``NO_PROXY`` is honoured exactly as requests does). ``VOE_HTTP_PROXY``
  still wins over them (``voe.worker.fetch.proxy``);
- the CA bundle: ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, for requests that
  ask for verification without naming a bundle;
- ``.netrc`` (``NETRC``, ``~/.netrc``, ``~/_netrc``): looked up per request, as
  requests does, only if such a file existed when the session was made.

A change of these variables (or a ``.netrc`` created) after the worker started is
seen by a worker started after it. ``trust_env = False`` on the session still turns
all of it off, and redirects re-read the environment as requests always did.

The prepared request's settings are merged as requests' ``merge_setting`` does;
``merge_setting`` here only spares plain dictionaries requests' checks against its
runtime ``Protocol`` types (about 4 µs each in Python 3.11, eight per request).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies_environment

from requests import sessions
from requests.structures import CaseInsensitiveDict
from requests.utils import NETRC_FILES, get_environ_proxies

# Most (scheme, host, no_proxy) answers kept; past it the cache starts again.
MAX_CACHED_ROUTES = 1024
_PLAIN = (dict, OrderedDict, CaseInsensitiveDict)


def _netrc_exists() -> bool:
    """Whether requests' ``get_netrc_auth`` would find a file to read now."""
    named = os.environ.get("NETRC")
    candidates = (named,) if named is not None else tuple(f"~/{name}" for name in NETRC_FILES)
    for candidate in candidates:
        try:
            if os.path.exists(os.path.expanduser(candidate)):
                return True
        except KeyError:  # no home directory to expand: requests finds nothing either
            return False
    return False


class Environment:
    """The environment of a session as requests would read it, taken once."""

    def __init__(self, proxies: bool, ca_bundle: str | None, netrc: bool) -> None:
        self.proxies = proxies
        self.ca_bundle = ca_bundle
        self.netrc = netrc
        self._routes: dict[tuple[str, str, str | None], dict[str, str]] = {}

    @classmethod
    def read(cls) -> Environment:
        """The environment now."""
        return cls(bool(getproxies_environment()),
                   os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"),
                   _netrc_exists())

    def proxies_for(self, url: str, no_proxy: str | None = None) -> dict[str, str]:
        """requests' ``get_environ_proxies(url, no_proxy)``: the environment's proxies for
        ``url``, or none when ``NO_PROXY`` (or ``no_proxy``) says to go direct. A new dict."""
        if not self.proxies:
            return {}
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, no_proxy)
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) >= MAX_CACHED_ROUTES:
                self._routes.clear()
            found = self._routes[key] = get_environ_proxies(url, no_proxy=no_proxy)
        return dict(found)


def merge_setting(request_setting: Any, session_setting: Any,
                  dict_class: type = OrderedDict) -> Any:
    """requests' ``sessions.merge_setting``, without its slow checks for plain dictionaries."""
    if session_setting is None:
        return request_setting
    if request_setting is None:
        return session_setting
    if type(session_setting) not in _PLAIN or type(request_setting) not in _PLAIN:
        return sessions.merge_setting(request_setting, session_setting, dict_class)
    merged = dict_class(session_setting.items())
    merged.update(request_setting.items())
    for key in [key for key, value in merged.items() if value is None]:
        del merged[key]
    return merged
