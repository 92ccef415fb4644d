"""Socket options every voe socket shares: limits now, encryption later in one place."""

from __future__ import annotations

import zmq

from voe.settings import Settings

# ZeroMQ drops a connection that sends a frame above this multiple of the message
# limit; frames between the limit and this cap reach the decoder, which counts and
# logs them as oversized, so a misbehaving peer is visible in the logs.
HARD_CAP_FACTOR = 2


def configure(socket: zmq.Socket, settings: Settings, linger_ms: int = 0) -> zmq.Socket:
    """Apply the shared limits to ``socket`` and return it."""
    socket.setsockopt(zmq.LINGER, linger_ms)
    socket.setsockopt(zmq.MAXMSGSIZE, HARD_CAP_FACTOR * settings.voe_max_message_bytes)
    return socket
