"""RabbitMQ (AMQP 0-9-1, pika): events to a durable topic exchange, with publisher confirms.

Routing key ``KIND.BACKEND.ORIGIN.DESTINATION`` (e.g. ``fares.collected.demo.GRU.REC``),
so a queue binds ``fare.price_changed.#`` or ``*.*.demo.GRU.#``. Messages are persistent,
``message_id`` is the event id and ``type`` its kind. An event counts as published only
once the broker confirms it; a connection that fails makes the drainer wait and retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pika
import pika.exceptions

from voe.sink.publish.outbox import Outcome, Unavailable
from voe.store.rows import Event

log = logging.getLogger("voe.publish")

# Seconds to connect and to wait on the socket before the broker counts as unreachable.
SOCKET_TIMEOUT = 5.0
# Heartbeat interval asked of the broker when the URL does not set one (detects a dead peer).
HEARTBEAT_SECONDS = 10


def routing_key(event: Event) -> str:
    """``KIND.BACKEND.ORIGIN.DESTINATION``, each part without dots."""
    parts = (event.backend, event.origin, event.destination)
    return ".".join((event.kind, *(part.replace(".", "_") or "_" for part in parts)))


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().rstrip(":")


class AmqpPublisher:
    """Publishes to ``exchange`` on the broker at ``url`` (``amqp://user:pass@host:5672/vhost``)."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange
        self.name = f"amqp:{exchange}"
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _connect(self):
        """The confirming channel, connecting and declaring the exchange when needed."""
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        parameters = pika.URLParameters(self.url)
        parameters.socket_timeout = SOCKET_TIMEOUT
        parameters.stack_timeout = SOCKET_TIMEOUT * 2
        parameters.connection_attempts = 1
        if "heartbeat=" not in self.url:
            parameters.heartbeat = HEARTBEAT_SECONDS
        self._connection = pika.BlockingConnection(parameters)
        channel = self._connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        self._channel = channel
        return channel

    def publish(self, events: Sequence[Event], stop: threading.Event) -> Outcome:
        """Publish each event and wait for the broker's confirm before the next."""
        done = 0
        try:
            channel = self._connect()
            for event in events:
                if stop.is_set():
                    break
                properties = pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, message_id=event.id,
                    type=event.kind, timestamp=int(time.time()))
                channel.basic_publish(self.exchange, routing_key(event), event.body, properties)
                done += 1
        except (pika.exceptions.AMQPError, OSError) as error:
            self.close()
            raise Unavailable(_reason(error), Outcome(done, [])) from error
        return Outcome(done, [])

    def idle(self) -> None:
        """Answer the broker's heartbeats while no event waits."""
        if self._connection is None or not self._connection.is_open:
            return
        try:
            self._connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPError, OSError) as error:
            log.debug("%s: connection lost while idle (%s); reconnecting on the next event",
                      self.name, _reason(error))
            self.close()

    def close(self) -> None:
        """Close the connection, whatever state it is in."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError) as error:
                log.debug("%s: closing the connection failed: %s", self.name, _reason(error))
