"""NATS JetStream (nats-py): events to a stream, each publish acknowledged by the server.

Subject ``PREFIX.KIND.BACKEND.ORIGIN.DESTINATION`` (e.g. ``voe.fares.collected.demo.GRU.REC``);
the stream (``VOE_NATS_STREAM``, subjects ``PREFIX.>``) is created when missing. The
``Nats-Msg-Id`` header is the event id, so the server drops a redelivery within the
stream's duplicate window. nats-py is asyncio: this publisher runs its own event loop
in the drainer's thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import nats
import nats.errors
import nats.js.errors

from voe.sink.publish.outbox import Outcome, Unavailable
from voe.store.rows import Event

log = logging.getLogger("voe.publish")

# Seconds to connect, and to wait for each publish's acknowledgement.
TIMEOUT = 5.0


def subject(prefix: str, event: Event) -> str:
    """``PREFIX.KIND.BACKEND.ORIGIN.DESTINATION``, each part a valid subject token."""
    parts = (event.backend, event.origin, event.destination)
    tokens = (part.replace(".", "_").replace(" ", "_").replace("*", "_").replace(">", "_") or "_"
              for part in parts)
    return ".".join((prefix, event.kind, *tokens))


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().rstrip(":")


async def _note(error: Exception) -> None:
    log.debug("nats: %s", _reason(error))


class NatsPublisher:
    """Publishes to the JetStream ``stream`` of the server at ``url`` under ``prefix``."""

    def __init__(self, url: str, stream: str, prefix: str) -> None:
        self.url = url
        self.stream = stream
        self.prefix = prefix
        self.name = f"nats:{stream}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None
        self._jetstream = None

    def _run(self, coroutine):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    async def _connect(self) -> None:
        if self._client is not None and self._client.is_connected:
            return
        await self._disconnect()
        client = await nats.connect(self.url, connect_timeout=TIMEOUT, allow_reconnect=False,
                                    max_reconnect_attempts=0, error_cb=_note, name="voe-sink")
        self._client = client
        jetstream = client.jetstream(timeout=TIMEOUT)
        try:
            await jetstream.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await jetstream.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            log.info("%s: created the JetStream stream %s (subjects %s.>)", self.name,
                     self.stream, self.prefix)
        self._jetstream = jetstream

    async def _publish(self, events: Sequence[Event], stop: threading.Event,
                       done: list[int]) -> None:
        await self._connect()
        for event in events:
            if stop.is_set():
                return
            await self._jetstream.publish(subject(self.prefix, event), event.body,
                                          timeout=TIMEOUT, headers={"Nats-Msg-Id": event.id})
            done[0] += 1

    def publish(self, events: Sequence[Event], stop: threading.Event) -> Outcome:
        """Publish each event and wait for its acknowledgement before the next."""
        done = [0]
        try:
            self._run(self._publish(events, stop, done))
        except (nats.errors.Error, OSError) as error:
            self._run(self._disconnect())
            raise Unavailable(_reason(error), Outcome(done[0], [])) from error
        return Outcome(done[0], [])

    def idle(self) -> None:
        """Let the client answer the server's pings while no event waits."""
        if self._client is not None and self._loop is not None:
            self._run(asyncio.sleep(0))

    async def _disconnect(self) -> None:
        client, self._client, self._jetstream = self._client, None, None
        if client is not None and not client.is_closed:
            try:
                await asyncio.wait_for(client.close(), TIMEOUT)
            except (nats.errors.Error, OSError) as error:
                log.debug("%s: closing the connection failed: %s", self.name, _reason(error))

    def close(self) -> None:
        """Close the connection and the event loop."""
        if self._loop is None:
            return
        self._run(self._disconnect())
        self._loop.close()
        self._loop = None
