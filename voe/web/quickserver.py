"""uvicorn's server, stopped at once: ``stop_soon`` wakes it instead of its next 0.1 s
tick, and a shutdown with no connection open skips uvicorn's 0.1 s grace period (it
waits that long on every shutdown). With connections open, uvicorn's own shutdown runs.

Every role's HTTP port stops this way, so a master that has finished exits without
waiting on its dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn

# Seconds between uvicorn's ticks (its Date header, its request limit), as uvicorn has them.
TICK_SECONDS = 0.1


class QuickServer(uvicorn.Server):
    """A ``uvicorn.Server`` that ``stop_soon`` stops from any thread without delay."""

    loop: asyncio.AbstractEventLoop | None = None
    wake: asyncio.Event | None = None

    def stop_soon(self) -> None:
        """Ask the server to stop, from any thread; its loop wakes at once."""
        self.should_exit = True
        loop, wake = self.loop, self.wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: it has stopped
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks, with each wait cut short by ``stop_soon``."""
        self.wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), TICK_SECONDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close at once when nothing is open; otherwise uvicorn's graceful shutdown."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
