"""A small Chrome DevTools Protocol client for tests that drive a page step by step.

The dashboard's tests (tests/test_dashboard.py) emulate a viewport, click and take
screenshots over CDP with this client (``websocket-client``, in the ``test`` extra).
voe's own browser backends render through Playwright (``voe.worker.browser``), not this.
One ``Browser`` is one Chromium process, started on first use, with a bounded pool
of pages (tabs); ``stop`` ends the process by its PID.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voe.backends.base import TransientError

log = logging.getLogger("voe.browser")

# Flags that make headless Chromium quiet and self-contained (no sandbox: containers lack it).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
    "--remote-allow-origins=*",
)
# Seconds Chromium gets to open its DevTools port.
START_TIMEOUT = 30.0
# Seconds Chromium gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
# Seconds between two looks at whether a page has rendered.
RENDER_POLL = 0.05
# Events a page keeps while waiting for an answer (only the few it needs are kept).
MAX_EVENTS = 100
_KEPT_EVENTS = ("Page.loadEventFired", "Network.responseReceived")
_PR_SET_PDEATHSIG = 1


class BrowserError(TransientError):
    """The browser failed (missing, crashed, timed out): the attempt may pass elsewhere."""


@dataclass(frozen=True)
class Rendered:
    """A page as the browser shows it: the HTTP status, and the document once ``ready``.

    ``html`` is the rendered document (``outerHTML``); ``text`` its visible text, which
    is what an error answer (e.g. JSON) reads as; ``ready`` says whether the awaited
    element appeared before the deadline.
    """

    status: int
    html: str
    text: str
    ready: bool


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the worker dies, even killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Page:
    """One browser tab and its DevTools websocket; used by one greenlet at a time."""

    def __init__(self, target_id: str, socket: Any) -> None:
        self.target_id = target_id
        self.socket = socket
        self.broken = False
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        import websocket

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError("browser: timed out")
        self.socket.settimeout(remaining)
        try:
            raw = self.socket.recv()
        except websocket.WebSocketTimeoutException:
            raise BrowserError("browser: timed out") from None
        except (websocket.WebSocketException, OSError) as error:
            self.broken = True
            raise BrowserError(f"browser: connection to the page lost: {error}") from None
        try:
            message = json.loads(raw)
        except ValueError:
            self.broken = True
            raise BrowserError("browser: unreadable DevTools message") from None
        return message if isinstance(message, dict) else {}

    def call(self, method: str, params: dict[str, Any] | None, deadline: float) -> dict[str, Any]:
        """Send one DevTools command and return its result; keep the events that arrive."""
        import websocket

        self._next_id += 1
        number = self._next_id
        try:
            self.socket.send(json.dumps({"id": number, "method": method, "params": params or {}}))
        except (websocket.WebSocketException, OSError) as error:
            self.broken = True
            raise BrowserError(f"browser: connection to the page lost: {error}") from None
        while True:
            message = self._receive(deadline)
            if message.get("id") == number:
                if "error" in message:
                    raise BrowserError(f"browser: {method} failed: {message['error']}")
                result = message.get("result")
                return result if isinstance(result, dict) else {}
            self._keep(message)

    def _keep(self, message: dict[str, Any]) -> None:
        if message.get("method") in _KEPT_EVENTS and len(self._events) < MAX_EVENTS:
            self._events.append(message)

    def wait_event(self, method: str, deadline: float) -> dict[str, Any]:
        """Return the params of the first event ``method`` seen (kept or next to arrive)."""
        while True:
            for index, event in enumerate(self._events):
                if event.get("method") == method:
                    del self._events[index]
                    return event.get("params") or {}
            self._keep(self._receive(deadline))

    def evaluate(self, expression: str, deadline: float) -> Any:
        """Evaluate a JavaScript expression in the page and return its value."""
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True}, deadline)
        return (result.get("result") or {}).get("value")

    def render(self, url: str, ready_selector: str, timeout: float) -> Rendered:
        """Load ``url``, wait (up to ``timeout``) until ``ready_selector`` matches, read it."""
        deadline = time.monotonic() + timeout
        self._events.clear()
        navigation = self.call("Page.navigate", {"url": url}, deadline)
        if navigation.get("errorText"):
            raise BrowserError(f"browser: {url}: {navigation['errorText']}")
        frame = navigation.get("frameId")
        status = 0
        while True:
            response = self.wait_event("Network.responseReceived", deadline)
            if response.get("type") == "Document" and response.get("frameId") == frame:
                status = int((response.get("response") or {}).get("status") or 0)
                break
        self.wait_event("Page.loadEventFired", deadline)
        selector = json.dumps(ready_selector)
        probe = (f"(() => {{ const ready = document.querySelector({selector}) !== null;"
                 " const pre = document.querySelector('pre');"
                 " return {ready, html: document.documentElement.outerHTML,"
                 " text: (pre || document.body || document.documentElement).innerText}; })()")
        while True:
            found = self.evaluate(probe, deadline) or {}
            if found.get("ready") or status >= 400 or time.monotonic() + RENDER_POLL > deadline:
                return Rendered(status, str(found.get("html") or ""),
                                str(found.get("text") or ""), bool(found.get("ready")))
            time.sleep(RENDER_POLL)

    def close(self) -> None:
        """Close the websocket (the tab goes with the browser or with ``Browser.close_page``)."""
        try:
            self.socket.close()
        except OSError as error:
            log.debug("closing a page's websocket: %s", error)


class Browser:
    """One headless Chromium process with at most ``pages`` tabs in use at once."""

    def __init__(self, executable: str = "chromium", pages: int = 4,
                 proxy: str | None = None) -> None:
        if pages < 1:
            raise ValueError("pages must be at least 1")
        self.executable = executable
        self.pages = pages
        self.proxy = proxy
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.profile: Path | None = None
        # threading's primitives are gevent's once the worker has monkey-patched.
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pages)
        self._idle: list[Page] = []

    @property
    def pid(self) -> int | None:
        """The PID of the running Chromium, if any."""
        return self.process.pid if self.process is not None else None

    def _start(self) -> None:
        """Start Chromium and learn its DevTools port; ``BrowserError`` if it cannot run."""
        try:
            import websocket  # noqa: F401 (the optional dependency; checked here, used later)
        except ImportError:
            raise BrowserError("browser backends need websocket-client: "
                               "pip install 'voe[browser]'") from None
        executable = shutil.which(self.executable)
        if executable is None:
            raise BrowserError(f"browser {self.executable!r} not found: install Chromium "
                               "(apt-get install chromium) or set VOE_BROWSER")
        self.profile = Path(tempfile.mkdtemp(prefix="voe-chromium-"))
        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]
        if self.proxy:
            command.append(f"--proxy-server={self.proxy}")
        command.append("about:blank")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self._cleanup()
                raise BrowserError(f"browser {executable} exited at start with status {code}")
            lines = active.read_text().split("\n") if active.is_file() else []
            if lines and lines[0].strip().isdigit():
                self.port = int(lines[0])
                log.info("browser started: %s (pid %d, DevTools port %d, %d pages)",
                         executable, self.process.pid, self.port, self.pages)
                return
            time.sleep(0.05)
        self.stop()
        raise BrowserError(f"browser {executable} did not open its DevTools port in "
                           f"{START_TIMEOUT:.0f}s")

    def _devtools(self, method: str, path: str) -> Any:
        """Ask Chromium's DevTools HTTP endpoint (plain loopback, never through a proxy)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path)
            answer = connection.getresponse()
            body = answer.read()
        except OSError as error:
            raise BrowserError(f"browser DevTools endpoint: {error}") from None
        finally:
            connection.close()
        if answer.status != 200:
            raise BrowserError(f"browser DevTools endpoint: {path}: HTTP {answer.status}")
        try:
            return json.loads(body)
        except ValueError:
            raise BrowserError("browser DevTools endpoint: unreadable answer") from None

    def _new_page(self) -> Page:
        import websocket

        with self._lock:
            if self.process is None or self.process.poll() is not None:
                if self.process is not None:
                    log.warning("browser (pid %d) exited with status %s; starting another",
                                self.process.pid, self.process.returncode)
                    self._cleanup()
                self._start()
        target = self._devtools("PUT", "/json/new?about:blank")
        try:
            socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=10,
                                                 suppress_origin=True)
        except (websocket.WebSocketException, OSError, KeyError, TypeError) as error:
            raise BrowserError(f"browser: cannot open a page: {error}") from None
        page = Page(str(target.get("id")), socket)
        deadline = time.monotonic() + 10
        page.call("Page.enable", None, deadline)
        page.call("Network.enable", None, deadline)
        return page

    def _close_page(self, page: Page) -> None:
        page.close()
        if self.process is not None and self.process.poll() is None:
            try:
                self._devtools("GET", f"/json/close/{page.target_id}")
            except BrowserError as error:
                log.debug("closing a page: %s", error)

    @contextmanager
    def page(self, timeout: float) -> Iterator[Page]:
        """Lend a page for the block, waiting up to ``timeout`` for a free one."""
        if not self._slots.acquire(timeout=timeout):
            raise BrowserError(f"browser: no free page within {timeout:.0f}s")
        try:
            page = self._idle.pop() if self._idle else self._new_page()
            try:
                yield page
            finally:
                if page.broken:
                    self._close_page(page)
                else:
                    self._idle.append(page)
        finally:
            self._slots.release()

    def render(self, url: str, ready_selector: str, timeout: float) -> Rendered:
        """Render ``url`` in a pooled page; see ``Page.render``."""
        with self.page(timeout) as page:
            return page.render(url, ready_selector, timeout)

    def _cleanup(self) -> None:
        for page in self._idle:
            page.close()
        self._idle.clear()
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None
        self.process = None

    def stop(self) -> None:
        """Stop Chromium by its PID (SIGTERM, then SIGKILL) and remove its profile."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
            log.info("browser stopped (pid %d)", process.pid)
        self._cleanup()
