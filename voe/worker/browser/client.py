"""A worker's browser: renders handed from worker greenlets to the render host process.

``Browser.render`` sends a render to the host (``voe.worker.browser.host``, started on first
use) and waits for its answer with gevent, so the worker's other greenlets run
meanwhile; at most ``pages`` renders are under way at once (the rest wait for a free
page, within their deadline). A render the host does not answer within its time plus
``HOST_GRACE`` means the host itself is stuck: it is killed by its PID, the render
fails, and the next one starts another host. Every failure is a ``BrowserError``
(transient): the job is tried again, the worker goes on.

Works in a monkey-patched worker and in a plain process alike: it uses gevent's own
subprocess, semaphore and ``AsyncResult``.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent
from gevent import subprocess as gevent_subprocess
from gevent.event import AsyncResult
from gevent.lock import BoundedSemaphore, Semaphore

from voe.backends.base import TransientError
from voe.worker.browser.process import alive, die_with_parent, kill

log = logging.getLogger("voe.browser")

# Seconds past a render's own time the host may take to answer before it counts as stuck.
HOST_GRACE = 10.0
# Seconds the host has to exit once its input ends, before it is killed.
STOP_TIMEOUT = 10.0
# Browsers an empty VOE_BROWSER means, the first installed: Chromium's headless shell is
# what Playwright uses for headless pages (lighter than the full browser), then Chromium.
DEFAULT_BROWSERS = ("chromium-headless-shell", "chromium")


class BrowserError(TransientError):
    """The browser failed (missing, crashed, timed out): the attempt may pass elsewhere."""


@dataclass
class RenderTask:
    """What to render: the URL, as which identity, and what says the page is ready.

    ``ready`` is a CSS selector (empty: wait for network idle); ``consent`` a button to
    click when it shows up instead; ``cookies`` are Playwright's cookie objects;
    ``profile`` names the identity (its renders share a browser context,
    ``voe.worker.browser.profiles``) and ``last`` says that the identity renders nothing after.
    """

    url: str
    ready: str = ""
    consent: str = ""
    user_agent: str = ""
    proxy: str = ""
    cookies: list[dict[str, Any]] = field(default_factory=list)
    profile: str = ""
    last: bool = False


@dataclass(frozen=True)
class Rendered:
    """A page as the browser shows it: the document's status and headers, the rendered
    document (``html``), its visible text, whether ``ready`` came, the context's cookies."""

    status: int
    headers: dict[str, str]
    html: str
    text: str
    ready: bool
    cookies: list[dict[str, Any]]


class Browser:
    """One render host (and its Chromium) with at most ``pages`` renders at once."""

    def __init__(self, executable: str = "", pages: int = 4,
                 block: tuple[str, ...] = ("image", "font"),
                 viewport: str = "1280x64") -> None:
        if pages < 1:
            raise ValueError("pages must be at least 1")
        self.executable = executable
        self.pages = pages
        self.block = block
        self.viewport = viewport  # every page's window, WIDTHxHEIGHT (VOE_BROWSER_VIEWPORT)
        self.pid: int | None = None  # the browser's (Chromium's) PID, once it runs
        self.host: gevent_subprocess.Popen | None = None
        self._slots = BoundedSemaphore(pages)
        self._starting = Semaphore(1)
        self._waiting: dict[int, AsyncResult] = {}
        self._numbers = itertools.count(1)
        self._reader: gevent.Greenlet | None = None

    def _start(self) -> gevent_subprocess.Popen:
        """Start the render host; ``BrowserError`` when there is no browser to run."""
        if importlib.util.find_spec("playwright") is None:
            raise BrowserError("browser backends need Playwright: pip install 'voe[browser]'")
        executable = browser_path(self.executable)
        environment = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
        host = gevent_subprocess.Popen(
            [sys.executable, "-m", "voe.worker.browser.host", "--executable", executable,
             "--block", ",".join(self.block), "--spare", str(self.pages),
             "--viewport", self.viewport],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        self.host = host
        self._waiting = {}  # the renders of this host only: an old host's end fails none
        self._reader = gevent.spawn(self._read, host, self._waiting)
        return host

    def _read(self, host: gevent_subprocess.Popen, waiting: dict[int, AsyncResult]) -> None:
        """Hand each answer of ``host`` to the render waiting for it, until the host ends."""
        for line in host.stdout:
            message = json.loads(line)
            if "started" in message:
                self.pid = message["started"]
                log.info("browser started: %s (pid %s, %d pages)", message["executable"],
                         self.pid, self.pages)
                continue
            answer = waiting.pop(message["id"], None)
            if answer is not None:
                answer.set(message)
        for answer in waiting.values():
            answer.set({"kind": "browser", "error": "the render host exited"})
        waiting.clear()

    def render(self, task: RenderTask, deadline: float) -> Rendered:
        """Render ``task`` before ``deadline`` (a ``time.monotonic`` instant)."""
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise BrowserError("browser: no free page before the deadline")
        try:
            return self._render(task, deadline)
        finally:
            self._slots.release()

    def _running_host(self) -> gevent_subprocess.Popen:
        """The render host, started if none runs (once, however many renders ask at once)."""
        with self._starting:
            host = self.host
            if host is None or host.poll() is not None:
                if host is not None:
                    log.warning("render host (pid %d) exited with status %s; starting another",
                                host.pid, host.returncode)
                host = self._start()
            return host

    def _render(self, task: RenderTask, deadline: float) -> Rendered:
        host = self._running_host()
        waiting = self._waiting
        number = next(self._numbers)
        answer = waiting[number] = AsyncResult()
        left = max(0.001, deadline - time.monotonic())
        try:
            host.stdin.write((json.dumps({"id": number, "render": asdict(task),
                                          "timeout": left}) + "\n").encode())
            host.stdin.flush()
        except OSError as error:
            waiting.pop(number, None)
            raise BrowserError(f"browser: the render host is gone: {error}") from None
        try:
            message = answer.get(timeout=left + HOST_GRACE)
        except gevent.Timeout:
            waiting.pop(number, None)
            log.warning("render host (pid %d) did not answer in %.0fs; killing it", host.pid,
                        left + HOST_GRACE)
            self._kill()
            raise BrowserError("browser: the render host did not answer") from None
        if "page" not in message:
            raise BrowserError(f"browser ({message.get('kind')}): {message.get('error')}")
        page = message["page"]
        return Rendered(int(page["status"]), dict(page["headers"]), page["html"], page["text"],
                        bool(page["ready"]), list(page["cookies"]))

    def _kill(self) -> None:
        """Kill the host and its browser by their PIDs."""
        if self.pid is not None:
            kill(self.pid)
        if self.host is not None and self.host.poll() is None:
            self.host.kill()
            self.host.wait()

    def stop(self) -> None:
        """Stop the host (its input ends; killed if it lingers); make sure the browser is gone."""
        host, pid = self.host, self.pid
        if host is not None:
            if host.poll() is None:
                try:
                    host.stdin.close()
                except OSError as error:
                    log.debug("closing the render host's input: %s", error)
                try:
                    host.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    host.kill()
                    host.wait()
            if self._reader is not None:
                self._reader.join(STOP_TIMEOUT)
        if pid is not None:
            deadline = time.monotonic() + STOP_TIMEOUT
            while alive(pid) and time.monotonic() < deadline:
                gevent.sleep(0.05)
            kill(pid)
            log.info("browser stopped (pid %d)", pid)
        self.host = None
        self.pid = None


def browser_path(executable: str) -> str:
    """The browser's path (``executable``; empty: the first of ``DEFAULT_BROWSERS`` that is
    installed); ``BrowserError`` when it is not installed."""
    for name in (executable,) if executable else DEFAULT_BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    wanted = repr(executable) if executable else " or ".join(DEFAULT_BROWSERS)
    raise BrowserError(f"browser {wanted} not found: install Chromium "
                       "(apt-get install chromium-headless-shell) or set VOE_BROWSER")
