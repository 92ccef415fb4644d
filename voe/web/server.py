"""voe's HTTP ports: a threaded standard-library server beside a role's own loop.

The master serves the dashboard, the control API and /metrics (``serve``); the sink
only its /metrics (``serve_metrics``); both through ``WebServer``. It runs in daemon
threads, so it never blocks the single-threaded ZeroMQ loops: reads open their own
SQLite connections, actions go through the master's command queue. Static files of
the dashboard are public; everything else passes ``voe.web.auth`` first. Every
answer, refusals included, is JSON (or the dashboard's files, or ``/metrics`` text);
an unexpected failure is logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from voe.plan import Plan
from voe.settings import Settings
from voe.web import auth
from voe.web.api import (
    METRICS_ROUTES,
    ROUTES,
    Api,
    ApiError,
    MetricsApi,
    Reply,
    Request,
    error_reply,
    match,
)
from voe.web.auth import WebError
from voe.web.control import Control

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("voe.web")

# The dashboard's files: URL path -> (file in voe/web/static, content type).
STATIC = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
# Headers of every answer: no sniffing, no framing (the Retry buttons), scripts only ours.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
# Longest request line and query a request may have, and the most query fields.
MAX_URL = 4096
MAX_QUERY_FIELDS = 20
# Largest request body read (the API takes none; a body is read and ignored).
MAX_BODY = 64 * 1024
# Seconds a connection may stay silent before the server drops it.
SOCKET_TIMEOUT = 30.0
# Seconds ``stop`` waits for the serving thread.
STOP_TIMEOUT = 5.0
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _static(name: str) -> bytes:
    return resources.files("voe.web").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    """One request: find the route, check who asks, answer (a class per server)."""

    api: object
    routes: dict
    static: dict[str, tuple[str, str]]
    token: str
    timeout = SOCKET_TIMEOUT

    def version_string(self) -> str:
        """The Server header: the name only, no versions."""
        return "voe"

    def _answer(self, reply: Reply, extra: dict[str, str] | None = None) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Refusals of the standard library (bad request line, long headers) as JSON too."""
        self.close_connection = True
        self._answer(error_reply(code, message or self.responses.get(code, ("error",))[0]))

    def _skip_body(self) -> bool:
        """Read and drop a request body (none is used); False if it is refused."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self._answer(error_reply(411, "send a Content-Length, not a chunked body"))
            return False
        if length is None:
            return True
        if not length.isdigit() or int(length) > MAX_BODY:
            self._answer(error_reply(413, f"a request body may hold at most {MAX_BODY} bytes"))
            return False
        self.rfile.read(int(length))
        return True

    def _handle(self) -> None:
        self.close_connection = True
        if len(self.path) > MAX_URL:
            self._answer(error_reply(414, f"the URL is longer than {MAX_URL} characters"))
            return
        if not self._skip_body():
            return
        url = urlsplit(self.path)
        if self.command in ("GET", "HEAD") and url.path in self.static:
            name, content_type = self.static[url.path]
            self._answer(Reply(200, _static(name), content_type))
            return
        segments = [unquote(segment, errors="replace") for segment in url.path.split("/")]
        route = match(self.routes, segments)
        if route is None:
            self._answer(error_reply(404, f"no such endpoint: {url.path}"))
            return
        methods, params = route
        method = "GET" if self.command == "HEAD" else self.command
        if method not in methods:
            allowed = ", ".join(sorted(methods))
            self._answer(error_reply(405, f"{self.command} is not allowed here (use {allowed})"),
                         {"Allow": allowed})
            return
        refusal = auth.authorized(self.token, self.headers.get("Authorization"),
                                  self.headers.get("Host"), self.headers.get("Origin"))
        if refusal is not None:
            status, why = refusal
            extra = {"WWW-Authenticate": 'Bearer realm="voe"'} if status == 401 else None
            self._answer(error_reply(status, why), extra)
            return
        try:
            query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False,
                             max_num_fields=MAX_QUERY_FIELDS, errors="strict")
            reply = methods[method](self.api, Request(query, params))
        except ApiError as refused:
            reply = error_reply(refused.status, refused.message)
        except (ValueError, UnicodeDecodeError) as error:
            reply = error_reply(400, f"malformed query: {error}")
        except Exception:
            log.exception("HTTP %s %s failed", self.command, url.path)
            reply = error_reply(500, "internal error; see the log")
        self._answer(reply)

    def log_message(self, format: str, *args: object) -> None:
        """Requests go to the role's log at debug level, not to standard error."""
        log.debug("HTTP %s %s", self.address_string(), format % args)


for _method in _METHODS:
    setattr(Handler, f"do_{_method}", Handler._handle)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        """A client gone mid-answer is logged quietly; anything else with its traceback,
        in the role's log (never on standard error)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("HTTP connection from %s: %s", client_address, error)
        else:
            log.exception("HTTP connection from %s failed", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebServer:
    """One HTTP port, bound at construction, served in a daemon thread.

    ``api`` is what the handlers of ``routes`` are called on; ``static`` the public
    files; ``setting`` the port's setting and ``role`` its process, named in errors.
    """

    def __init__(self, host: str, port: int, token: str, api: object, routes: dict,
                 static: dict[str, tuple[str, str]], setting: str, role: str) -> None:
        handler = type("BoundHandler", (Handler,), {"api": api, "routes": routes,
                                                    "static": static, "token": token})
        server_class = _Server6 if ":" in host else _Server
        try:
            self.httpd = server_class((host.strip("[]"), port), handler)
        except OSError as error:
            why = "in use" if error.errno == errno.EADDRINUSE else error.strerror
            raise WebError(f"{host}:{port} ({setting}) is {why}: is another voe {role} "
                           f"running? Stop it, or choose another port with {setting} "
                           "(0 turns the HTTP port off)") from None
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.2}, name="voe-http", daemon=True)

    @property
    def url(self) -> str:
        """The base URL of the dashboard."""
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the port (requests in flight finish on their own)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(STOP_TIMEOUT)


def serve(settings: Settings, control: Control, plan: Plan | None = None) -> WebServer | None:
    """Bind and start the master's HTTP port, or None when ``VOE_HTTP_PORT`` is 0.

    Raises ``WebError`` (one line for the user) when the port is busy or when a
    non-loopback address has no token.
    """
    if settings.voe_http_port == 0:
        return None
    host, token = settings.voe_http_host, settings.voe_http_token
    auth.check_binding(host, token)
    server = WebServer(host, settings.voe_http_port, token, Api(settings, control, plan), ROUTES,
                       STATIC, "VOE_HTTP_PORT", "master")
    server.start()
    log.info("dashboard and control API at %s (token %s)", server.url,
             "required" if settings.voe_http_token else "not set: loopback only")
    return server


def serve_metrics(registry: CollectorRegistry, host: str, port: int, token: str
                  ) -> WebServer | None:
    """Bind and start the sink's /metrics on ``host:port``, or None when ``port`` is 0.

    The master's rules hold: a non-loopback ``host`` needs ``token``, which scrapers
    send as ``Authorization: Bearer TOKEN``. Raises ``WebError`` like ``serve``.
    """
    if port == 0:
        return None
    auth.check_binding(host, token, "the sink's /metrics", "VOE_SINK_HTTP_PORT")
    server = WebServer(host, port, token, MetricsApi(registry), METRICS_ROUTES, {},
                       "VOE_SINK_HTTP_PORT", "sink")
    server.start()
    log.info("metrics at %s/metrics", server.url)
    return server
