"""The render host: Playwright's asyncio loop in a process of its own, one per worker.

Playwright's sync API is built on greenlets and breaks when several gevent greenlets
use it (``InvalidSwitchError``), and its async API cannot run in a thread of a
monkey-patched worker either (asyncio would run on gevent's sockets, locks and
subprocesses). So each worker starts this process on its first render
(``python -m voe.worker.browser.host``), unpatched, and talks to it over its standard input
and output, one JSON object a line (``voe.worker.browser.client``):

- in: ``{"id": N, "render": {task}, "timeout": SECONDS}``; end of input: stop;
- out: ``{"id": N, "page": {...}}``, or ``{"id": N, "error": TEXT, "kind": KIND}``
  with ``KIND`` ``timeout`` (the render did not end in time) or ``browser`` (the
  browser failed or crashed); and ``{"started": PID, "executable": PATH}`` each time
  a browser is launched.

The browser (``--executable``, Debian's Chromium; never a downloaded one) is launched
on the first render and again whenever it is gone (crashed, killed): a render that
was under way fails as ``browser``, the next one gets a new browser. A render that
does not end within its time is answered ``timeout`` at once and cancelled; if its
context cannot even be closed within ``CLOSE_TIMEOUT``, or the browser cannot then
open and close a context within it, the browser is hung, and is killed (by its PID)
so that the next render starts another. The host dies with its
worker (``PR_SET_PDEATHSIG``, and the end of its input), and Playwright's driver takes
the browser with it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
import time
from typing import Any

from playwright.async_api import Browser, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from voe.casts import viewport
from voe.worker.browser.blocking import launch_switches
from voe.worker.browser.process import find_browser, kill
from voe.worker.browser.profiles import VIEWPORT, Profiles
from voe.worker.browser.render import render

log = logging.getLogger("voe.browser.host")

# Seconds a cancelled render has to close its context before the browser counts as hung.
CLOSE_TIMEOUT = 5.0
# Features Playwright (1.65) disables in the Chromium it launches. Chromium keeps only the
# last ``--disable-features`` switch it is given, so ours repeats them
# (tests/test_browser_inpage.py checks that none of Playwright's is missing).
PLAYWRIGHT_DISABLED_FEATURES = (
    "AimEnabled", "AvoidCorsURLLoaderRestartOnRedirect",
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose",
    "HttpsFirstBalancedModeAutoEnable", "HttpsUpgrades", "LensOverlay", "MediaRouter",
    "NetworkTimeServiceQuerying", "OptimizationHints", "PaintHolding", "PreconnectToSearch",
    "TcpPortRandomizationWin", "ThirdPartyStoragePartitioning",
    "msEdgeUpdateLaunchServicesPreferredVersion", "msForceBrowserSignIn")
# Features voe disables besides: RenderDocument (a new frame, widget and compositor for
# every navigation of a page; without it a reused page navigates in the frame it has,
# which took about a fifth off the CPU of a render, animation frames and all else
# working as before).
DISABLED_FEATURES = (*PLAYWRIGHT_DISABLED_FEATURES, "RenderDocument")
# Flags for headless Chromium in containers and CI (Playwright adds its own defaults), the
# features above, and two renderer processes at most: pages of one context (one identity)
# share them, which took about 15% off the tree's peak memory at the same CPU (Chromium
# never shares a renderer between contexts; one process instead of two cost 8% more CPU).
CHROMIUM_ARGS = ("--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
                 "--renderer-process-limit=2",
                 f"--disable-features={','.join(DISABLED_FEATURES)}")
# Bytes of one line of input (a render task) at most.
MAX_LINE = 1 << 20


class Host:
    """The browser of one worker and the renders it runs."""

    def __init__(self, executable: str, block: frozenset[str], spare: int = 4,
                 viewport: tuple[int, int] = VIEWPORT) -> None:
        self.executable = executable
        self.block = block
        self.spare = spare
        self.viewport = viewport
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None
        self.profiles: Profiles | None = None  # the browser's contexts, by identity
        self.pid: int | None = None
        self._launching = asyncio.Lock()
        self._launches = itertools.count(1)
        # Renders under way, by the browser they run in (cancelled if it disconnects).
        self._renders: dict[asyncio.Task[Any], Browser] = {}
        self._lost: set[asyncio.Task[Any]] = set()

    def emit(self, message: dict[str, Any]) -> None:
        """Write one answer line (the worker reads them as they come)."""
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def ensure_browser(self) -> tuple[Browser, Profiles]:
        """The running browser and its contexts, launched anew if there is none (first use,
        crash, kill)."""
        async with self._launching:
            if (self.browser is not None and self.browser.is_connected()
                    and self.profiles is not None):
                return self.browser, self.profiles
            if self.browser is not None:
                log.warning("browser (pid %s) is gone; launching another", self.pid)
                self.forget_browser()
            if self.playwright is None:
                self.playwright = await async_playwright().start()
            marker = f"--voe-render-host={os.getpid()}-{next(self._launches)}"
            self.browser = await self.playwright.chromium.launch(
                executable_path=self.executable, headless=True, chromium_sandbox=False,
                args=[*CHROMIUM_ARGS, *launch_switches(self.block), marker])
            self.pid = find_browser(marker)
            self.browser.on("disconnected", self._disconnected)
            self.profiles = Profiles(self.browser, self.spare, self.block, self.viewport)
            self.emit({"started": self.pid, "executable": self.executable})
            return self.browser, self.profiles

    def _disconnected(self, browser: Browser) -> None:
        """The browser is gone (crashed, killed): end its renders now, not at their deadline."""
        for running, used in list(self._renders.items()):
            if used is browser:
                self._lost.add(running)
                running.cancel()

    def forget_browser(self) -> None:
        """Drop the browser (killed by its PID if it still runs): the next render launches one."""
        if self.pid is not None:
            kill(self.pid)
        self.browser = None
        self.profiles = None  # its contexts went with it
        self.pid = None

    async def serve(self, number: int, task: dict[str, Any], timeout: float) -> None:
        """Run one render and answer it, whatever happens."""
        deadline = time.monotonic() + timeout
        running = asyncio.create_task(self._render(task, deadline))
        done, _ = await asyncio.wait({running}, timeout=max(0.0, deadline - time.monotonic()))
        if running in self._lost:
            self._lost.discard(running)
            self.emit({"id": number, "kind": "browser",
                       "error": "the browser exited during the render"})
            return
        if not done:
            running.cancel()
            self.emit({"id": number, "kind": "timeout",
                       "error": f"the render did not end within {timeout:g}s"})
            await self._watch_cancelled(running)
            return
        try:
            self.emit({"id": number, "page": running.result()})
        except PlaywrightTimeout as error:
            self.emit({"id": number, "kind": "timeout", "error": str(error).split("\n")[0]})
        except PlaywrightError as error:
            self.emit({"id": number, "kind": "browser", "error": str(error).split("\n")[0]})
        except Exception as error:  # a bug here must fail this render, not the host
            log.exception("render %d failed", number)
            self.emit({"id": number, "kind": "browser", "error": f"{type(error).__name__}: "
                                                                 f"{error}"})

    async def _render(self, task: dict[str, Any], deadline: float) -> dict[str, Any]:
        browser, profiles = await self.ensure_browser()
        running = asyncio.current_task()
        assert running is not None  # a coroutine run by serve's task
        self._renders[running] = browser
        try:
            return await render(profiles, task, deadline)
        finally:
            del self._renders[running]

    async def _watch_cancelled(self, running: asyncio.Task[Any]) -> None:
        """After a render ran out of time: if it cannot close within ``CLOSE_TIMEOUT``, or the
        browser then does not open a context within it, the browser is hung: kill it."""
        browser = self.browser
        done, _ = await asyncio.wait({running}, timeout=CLOSE_TIMEOUT)
        if done and not running.cancelled() and running.exception() is not None:
            log.info("a cancelled render ended with %s", running.exception())
        if browser is None or browser is not self.browser:
            return
        if not done or not await self._answers(browser):
            log.warning("browser (pid %s) does not answer within %gs; killing it", self.pid,
                        CLOSE_TIMEOUT)
            if browser is self.browser:
                self.forget_browser()

    async def _answers(self, browser: Browser) -> bool:
        """Whether ``browser`` opens and closes a context within ``CLOSE_TIMEOUT`` each."""
        try:
            probe = await asyncio.wait_for(browser.new_context(), CLOSE_TIMEOUT)
            await asyncio.wait_for(probe.close(), CLOSE_TIMEOUT)
        except (TimeoutError, PlaywrightError) as error:
            log.info("browser (pid %s) health probe failed: %s", self.pid,
                     str(error).split("\n")[0] or type(error).__name__)
            return False
        return True

    async def stop(self) -> None:
        """Close the browser and Playwright's driver."""
        if self.browser is not None and self.browser.is_connected():
            try:
                await asyncio.wait_for(self.browser.close(), CLOSE_TIMEOUT)
            except (PlaywrightError, TimeoutError) as error:
                log.warning("closing the browser: %s", error)
        self.forget_browser()
        if self.playwright is not None:
            await self.playwright.stop()


async def main(executable: str, block: frozenset[str], spare: int = 4,
               viewport: tuple[int, int] = VIEWPORT) -> None:
    """Serve renders read from standard input until it ends."""
    host = Host(executable, block, spare, viewport)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    renders: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            served = asyncio.create_task(host.serve(request["id"], request["render"],
                                                    float(request["timeout"])))
            renders.add(served)
            served.add_done_callback(renders.discard)
    finally:
        for served in renders:
            served.cancel()
        await host.stop()


def _size(value: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as two numbers (``argparse`` reports what is wrong)."""
    width, height = viewport(value).split("x")
    return int(width), int(height)


def run(argv: list[str] | None = None) -> None:
    """The host's command line: ``--executable PATH --block TYPES --spare N --viewport WxH``."""
    parser = argparse.ArgumentParser(prog="python -m voe.worker.browser.host")
    parser.add_argument("--executable", required=True)
    parser.add_argument("--block", default="", help="resource types to abort, commas between")
    parser.add_argument("--spare", type=int, default=4,
                        help="idle browser contexts (identities) kept open at most (4)")
    parser.add_argument("--viewport", type=_size, default=VIEWPORT,
                        help="every page's window, WIDTHxHEIGHT (1280x64)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    block = frozenset(part.strip() for part in args.block.split(",") if part.strip())
    asyncio.run(main(args.executable, block, args.spare, args.viewport))


if __name__ == "__main__":
    run()
