"""voe's HTTP ports: uvicorn serving an app of ``voe.web.app`` in a thread beside a
role's own loop.

The master serves the dashboard, the control API and /metrics (``serve``); the sink
only its /metrics (``serve_metrics``); both through ``WebServer``, which binds the
port itself (so a busy port is a ``WebError`` for the user, before anything runs) and
runs uvicorn's event loop in a daemon thread: it never blocks the single-threaded
ZeroMQ loops. For the master that thread also imports the web stack and builds the app
(a third of a second of CPU), so its loop leases at once; connections wait on the bound
port meanwhile. The master's thread builds only once a first connection waits (``lazy``):
a master nobody looks at never spends that third of a second beside its jobs, and the
first visitor waits for it instead. Connections are bounded in number, in the time a
request may take to arrive, and in the size of its headers.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import select
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from voe.web import auth
from voe.web.auth import WebError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from voe.master.plan import Plan
    from voe.settings import Settings
    from voe.web.control import Control
    from voe.web.guard import Guard
    from voe.web.quickserver import QuickServer

log = logging.getLogger("voe.web")

# Most connections open at once; past it uvicorn answers 503. uvicorn counts open
# connections, idle ones included, so this must stay well above what slow or idle
# clients hold (300 dripping clients leave the API answering); it is capped at half
# the process's open-files limit so the role's own files (SQLite, ZeroMQ) always
# find a descriptor.
MAX_CONNECTIONS = 1000
# Seconds an idle kept-alive connection stays open.
KEEP_ALIVE = 5
# Largest request line and headers, in bytes (h11 answers 400 past it).
MAX_HEADERS = 16 * 1024
# Connections the kernel queues before they are accepted.
BACKLOG = 256
# Seconds ``stop`` waits for requests in flight, then for the serving thread.
STOP_TIMEOUT = 5
# Seconds the building thread holds the GIL before it must hand it over (Python's default
# is 0.005): the role's loop and CURVE's authenticator thread keep their pace meanwhile.
BUILD_SWITCH_INTERVAL = 0.0005
# The process's own interval, restored after a build (two builds at once restore this,
# not each other's).
_SWITCH_INTERVAL = sys.getswitchinterval()


def connection_limit() -> int:
    """``MAX_CONNECTIONS``, or half the open-files limit when that is lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft // 2))


def _listen(host: str, port: int, setting: str, role: str) -> socket.socket:
    """A listening socket on ``host:port``, or the ``WebError`` that says why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=BACKLOG)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise WebError(f"{host}:{port} ({setting}) is in use: is another voe {role} "
                           f"running? Stop it, or choose another port with {setting} "
                           "(0 turns the HTTP port off)") from None
        raise WebError(f"cannot listen on {host}:{port} ({setting}, VOE_HTTP_HOST): "
                       f"{error.strerror or error}") from None


class WebServer:
    """One HTTP port, bound at construction, served by uvicorn in a daemon thread.

    ``make_app`` builds what it serves, in that thread; ``setting`` names the port's
    setting and ``role`` its process, in errors.
    """

    def __init__(self, host: str, port: int, make_app: Callable[[], Guard], setting: str,
                 role: str, lazy: bool = False) -> None:
        self.socket = _listen(host, port, setting, role)
        # With ``lazy``, the serving thread waits for a first connection (or the stop, which
        # writes to ``wake``) before it builds anything.
        self.wake = socket.socketpair() if lazy else None
        self.make_app = make_app
        self.app: Guard | None = None  # built by the serving thread
        self.host = host
        self.port = self.socket.getsockname()[1]
        self.server: QuickServer | None = None
        self.built: QuickServer | None = None
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, name="voe-http", daemon=True)

    @property
    def url(self) -> str:
        """The base URL of the dashboard."""
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        """Whether ``start`` was called."""
        return self.thread.ident is not None

    def start(self) -> None:
        """Serve in the background (connections queue on the bound port until then)."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the port (requests in flight get ``STOP_TIMEOUT``)."""
        with self.lock:
            self.stopping = True
            if self.server is not None:
                self.server.stop_soon()
        if self.wake is not None:
            with contextlib.suppress(OSError):  # closed by an earlier stop
                self.wake[1].send(b"\0")
        if self.started:
            self.thread.join(2 * STOP_TIMEOUT)
        self.socket.close()
        if self.wake is not None:
            for end in self.wake:
                end.close()

    def build(self) -> None:
        """Build the app and its server now, in the calling thread (errors raise here);
        ``start`` then only serves. Without it the serving thread builds them."""
        self.built = self._build()

    def _serve(self) -> None:
        """Build the app and its server (unless ``build`` did), then serve until ``stop``
        (unless it came first)."""
        server = self.built
        if server is None and self.wake is not None and not self._visited():
            return
        if server is None:
            sys.setswitchinterval(min(_SWITCH_INTERVAL, BUILD_SWITCH_INTERVAL))
            try:
                server = self._build()
            except Exception as error:  # noqa: BLE001 - the role goes on without its port
                log.error("the HTTP port %s cannot serve: %s; the port is closed", self.url,
                          error)
                self.socket.close()
                return
            finally:
                sys.setswitchinterval(_SWITCH_INTERVAL)
        with self.lock:
            if self.stopping:
                return
            self.server = server
        server.run(sockets=[self.socket])

    def _visited(self) -> bool:
        """Wait for a first connection on the port (True) or for ``stop`` (False)."""
        readable, _, _ = select.select([self.socket, self.wake[0]], [], [])
        return self.socket in readable and not self.stopping

    def _build(self) -> QuickServer:
        import uvicorn

        from voe.web.protocol import GuardedH11Protocol
        from voe.web.quickserver import QuickServer

        self.app = self.make_app()
        config = uvicorn.Config(
            self.app, http=GuardedH11Protocol, loop="asyncio", lifespan="off", log_config=None,
            access_log=False, server_header=False, limit_concurrency=connection_limit(),
            timeout_keep_alive=KEEP_ALIVE, h11_max_incomplete_event_size=MAX_HEADERS,
            backlog=BACKLOG, timeout_graceful_shutdown=STOP_TIMEOUT)
        return QuickServer(config)


def _quiet_uvicorn() -> None:
    """uvicorn's start and stop lines say nothing voe's own line does not; its warnings
    (a malformed request, the connection limit) stay, one line each."""
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def serve(settings: Settings, control: Control, plan: Plan | None = None, *,
          start: bool = True) -> WebServer | None:
    """Bind and start the master's HTTP port, or None when ``VOE_HTTP_PORT`` is 0; with
    ``start`` false the port is bound (and its errors raised) but served from ``start()``.

    Raises ``WebError`` (one line for the user) when the port is busy or when a
    non-loopback address has no token, or too short a one.
    """
    if settings.voe_http_port == 0:
        return None
    host, token = settings.voe_http_host, settings.voe_http_token
    auth.check_binding(host, token)
    _quiet_uvicorn()

    def make_app() -> Guard:
        from voe.web.app import master_app

        return master_app(settings, control, plan)

    server = WebServer(host, settings.voe_http_port, make_app, "VOE_HTTP_PORT", "master",
                       lazy=True)
    if start:
        server.start()
    log.info("dashboard and control API at %s (token %s)", server.url,
             "required" if token else "not set: loopback only")
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
    _quiet_uvicorn()

    def make_app() -> Guard:
        from voe.web.app import metrics_app

        return metrics_app(registry, token)

    server = WebServer(host, port, make_app, "VOE_SINK_HTTP_PORT", "sink")
    # Built before the sink listens, as it always was: nothing waits on the sink's start,
    # and its first results are not slowed by a build beside them.
    server.build()
    server.start()
    log.info("metrics at %s/metrics", server.url)
    return server
