"""The HTTP session workers hand to backends, and its gevent-friendly connection pools.

``new_session`` returns a requests ``Session`` (backends use it as one) whose every
request, redirects included, is one fetch through the fetch chain (``voe.worker.fetch``).
The policies are middlewares there, each in its own module: default timeouts, a
deadline and a body cap, identities, block detection, the User-Agent, retries with
backoff and Retry-After, the proxy, per-host limits and pauses, throttle counting.
The session itself only sends: its innermost download (``Session._download``) is one
try of a request, through a pool that never retries (urllib3's retries would hide
the tries from the chain), and its whole body, read in chunks within the fetch's
deadline and cap (``voe.worker.fetch.deadline.read_body``); then the answer's cookies are
filed and its requests hooks called, for every try. Its pools are ``voe.worker.pools``'.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import timedelta
from http.cookiejar import CookieJar
from typing import Any

import gevent
import requests
from gevent.local import local
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

from voe.settings import Settings
from voe.worker import headers
from voe.worker.fetch.chain import Download, FetchChain, FetchRequest, build_chain, host_key
from voe.worker.fetch.deadline import deadline_error, read_body
from voe.worker.fetch.environment import Environment, merge_setting
from voe.worker.fetch.hosts import HostLimits
from voe.worker.fetch.throttle import ThrottleCounter
from voe.worker.pools import Adapter, LazyJar, sets_cookies

__all__ = ["Session", "new_session"]

# The hooks of a session that has none of its own (requests' ``default_hooks()``).
_NO_HOOKS = {"response": []}
# URLs that requests' ``prepare_url`` returns unchanged: http(s), a lower-case host name
# or IPv4 address, a port without leading zeros (at most 65535: checked apart), a path
# of segments that are neither empty nor dot segments, an optional non-empty query; no
# user info, no fragment, no percent-escape, nothing to quote or normalise.
_PLAIN_URL = re.compile(
    r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::([1-9][0-9]{0,4}))?"
    r"(?:/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?)?)"
    r"(?:\?[A-Za-z0-9._~=&+,:/-]+)?")


class Session(requests.Session):
    """A requests session whose requests pass the fetch chain (see the module docstring).

    ``settings`` are the worker's; ``throttled`` counts throttling answers for the
    worker; ``chain`` is the fetch chain, built from ``VOE_FETCH_MIDDLEWARES``, whose
    middlewares may share more with the worker (``hosts``: the per-host gates of
    ``voe.worker.fetch.hosts``, None without it). Every body is read by the session (within the
    chain's limits), so ``stream=True`` gives a response whose content is already there.
    """

    def __init__(self, settings: Settings, throttled: ThrottleCounter) -> None:
        super().__init__()
        self.settings = settings
        self.throttled = throttled
        self.hosts: HostLimits | None = None
        self._running = local()
        self._runs = itertools.count(1)  # numbers the runs of fetching_for (job keys)
        # Proxies, NO_PROXY, CA bundle and .netrc as requests reads them, read once (see
        # voe.worker.fetch.environment): requests would scan os.environ on every request.
        self.environment = Environment.read()
        self.chain: FetchChain = build_chain(self, settings.voe_fetch_middlewares)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """requests' ``prepare_request``, with ``.netrc`` looked up only if the session found
        one, plain dictionaries merged without requests' slow type checks, and no cookie work
        when neither the session nor the request holds a cookie (the request's jar is then a
        fresh empty one, as requests would make)."""
        merged_cookies = RequestsCookieJar()
        cookies = request.cookies
        if self.cookies:
            merged_cookies = merge_cookies(merged_cookies, self.cookies)
        if cookies:  # requests merges an empty jar too, which adds nothing
            if not isinstance(cookies, CookieJar):
                cookies = cookiejar_from_dict(cookies)
            merged_cookies = merge_cookies(merged_cookies, cookies)
        auth = request.auth
        if self.trust_env and not auth and not self.auth and self.environment.netrc:
            auth = get_netrc_auth(request.url)
        auth = merge_setting(auth, self.auth)
        prepared = requests.PreparedRequest()
        prepared.prepare_method(request.method.upper())
        prepared.prepare_url(request.url, merge_setting(request.params, self.params))
        prepared.prepare_headers(merge_setting(request.headers, self.headers,
                                               dict_class=CaseInsensitiveDict))
        if merged_cookies:
            prepared.prepare_cookies(merged_cookies)
        else:
            prepared._cookies = merged_cookies  # nothing to put in a Cookie header
        prepared.prepare_body(request.data, request.files, request.json)
        prepared.prepare_auth(auth, request.url)
        prepared.prepare_hooks(merge_hooks(request.hooks, self.hooks))
        return prepared

    def request(self, method: str | bytes, url: str | bytes, params: Any = None,
                data: Any = None, headers: Any = None, cookies: Any = None, files: Any = None,
                auth: Any = None, timeout: Any = None, allow_redirects: bool = True,
                proxies: dict[str, str] | None = None, hooks: Any = None,
                stream: bool | None = None, verify: Any = None, cert: Any = None,
                json: Any = None) -> requests.Response:
        """requests' ``request``; a plain GET (the usual fetch) is prepared by ``_plain_get``."""
        if (method == "GET" and type(url) is str and not params and not data and not files
                and json is None and headers is None and cookies is None and auth is None
                and hooks is None):
            prepared = self._plain_get(url)
            if prepared is not None:
                settings = self.merge_environment_settings(prepared.url, proxies or {}, stream,
                                                           verify, cert)
                return self.send(prepared, timeout=timeout, allow_redirects=allow_redirects,
                                 **settings)
        return super().request(method, url, params=params, data=data, headers=headers,
                               cookies=cookies, files=files, auth=auth, timeout=timeout,
                               allow_redirects=allow_redirects, proxies=proxies, hooks=hooks,
                               stream=stream, verify=verify, cert=cert, json=json)

    def _plain_get(self, url: str) -> requests.PreparedRequest | None:
        """The request ``prepare_request`` makes of a GET of ``url`` with nothing else, made
        without its generic steps (a Request, cookie, body, auth and hook merging: a sixth of
        a fetch's CPU), or None when the session or the URL needs them: session cookies,
        params, auth, .netrc or hooks, or a URL that requests would rewrite."""
        plain = _PLAIN_URL.fullmatch(url)
        if (plain is None or (plain[1] is not None and int(plain[1]) > 65535)
                or self.cookies or self.params or self.auth is not None
                or (self.trust_env and self.environment.netrc) or self.hooks != _NO_HOOKS
                or None in self.headers.values()):  # requests drops a None header
            return None
        prepared = _PlainGet()
        prepared.method = "GET"
        prepared.url = url
        prepared.prepare_headers(self.headers)
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

    def fetching_for(self, name: str, backend: object = None,
                     job: str | None = None) -> _JobRun:
        """Run this greenlet's fetches for ``backend`` (called ``name``) in a ``with`` block:
        throttling answers count under ``name``, and its ``block_markers`` mark block pages.
        With ``job`` (the job's id) the fetches share one key for this run, so per-job state
        (an identity) sticks to the job, and the chain's ``job_finished`` is told when a run
        that fetched anything ends."""
        return _JobRun(self, name, backend, None if job is None else f"{job}#{next(self._runs)}")

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
        response = self.chain.fetch(self._fetch(request, kwargs), self._download)
        if follow and response.is_redirect:
            history = [response, *self.resolve_redirects(response, request, **kwargs)]
            response = history.pop()
            response.history = history
        return response

    def fetch_through(self, request: requests.PreparedRequest, download: Download,
                      **options: Any) -> requests.Response:
        """Pass ``request`` through the fetch chain with ``download`` as its innermost step in
        place of the network (a browser's render), as this greenlet's running job; no
        redirects are followed here (a browser follows its own)."""
        return self.chain.fetch(self._fetch(request, options), download)

    def _fetch(self, request: requests.PreparedRequest, options: dict[str, Any]) -> FetchRequest:
        """One fetch of ``request``, for this greenlet's running job if there is one."""
        run = getattr(self._running, "run", None)
        if run is None:
            return FetchRequest(request, options, host_key(request.url or ""))
        run.fetched = True
        return FetchRequest(request, options, host_key(request.url or ""), run.backend, run.key)

    def _download(self, fetch: FetchRequest) -> requests.Response:
        """The chain's innermost step: one try of the request and its whole body, within the
        fetch's deadline and cap (every try of a fetch passes here)."""
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
        response = adapter.send(request, stream=True, timeout=options.get("timeout"),
                                verify=options.get("verify", True),
                                cert=options.get("cert"), proxies=options.get("proxies"))
        try:
            read_body(response, fetch)
        except BaseException:
            response.close()
            raise
        response.elapsed = timedelta(seconds=time.perf_counter() - started)
        response = dispatch_hook("response", request.hooks, response, **options)
        if sets_cookies(response.raw):
            jar = self.cookies if fetch.cookies is None else fetch.cookies  # an identity's own
            extract_cookies_to_jar(jar, request, response.raw)
        return response


class _PlainGet(requests.PreparedRequest):
    """A prepared GET whose cookie jar (the empty one ``prepare_request`` gives a request
    without cookies) is made only if asked for: by a redirect, which files the cookies
    it set there; a plain fetch never asks."""

    _cookies = LazyJar()


class _JobRun:
    """One run of ``Session.fetching_for``: what this greenlet's fetches belong to meanwhile.

    A plain context manager class: it is entered once per job on the worker's hot path.
    """

    __slots__ = ("session", "name", "backend", "key", "fetched", "_previous", "_label")

    def __init__(self, session: Session, name: str, backend: object, key: str | None) -> None:
        self.session = session
        self.name = name
        self.backend = backend
        self.key = key
        self.fetched = False

    def __enter__(self) -> None:
        running = self.session._running
        self._previous = getattr(running, "run", None)
        running.run = self
        self._label = self.session.throttled.swap_label(self.name)

    def __exit__(self, *exc_info: object) -> None:
        self.session._running.run = self._previous
        self.session.throttled.swap_label(self._label)
        if self.key is not None and self.fetched:
            self.session.chain.job_finished(self.key)


def new_session(settings: Settings, concurrency: int | None = None) -> Session:
    """Return a session with voe's HTTP policy and fetch chain; its pools hold
    ``concurrency`` (default ``voe_concurrency``: the worker's, which ``voe worker
    --concurrency`` overrides) connections per host. Fewer would open and drop a
    connection for every request past them; more would only wait for the per-host limit.
    It also puts ``voe.worker.headers``' parser in place of ``http.client``'s."""
    headers.install()
    session = Session(settings, ThrottleCounter())
    connections = concurrency or settings.voe_concurrency
    adapter = Adapter(pool_connections=connections, pool_maxsize=connections, pool_block=False)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
