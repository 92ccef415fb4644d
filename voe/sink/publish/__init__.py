"""Publishing stored events: the outbox drainer and one publisher per kind of destination.

Destinations come from settings, several at once: RabbitMQ (``VOE_AMQP_URL``), NATS
JetStream (``VOE_NATS_URL``) and webhooks (``VOE_WEBHOOK_URLS``). The sink starts one
drainer thread per destination (``Publishing.start``), each with its own store
connection, and stops them when it stops. Naming destinations needs no broker client, so reports
(``voe status``) import this package without the ``publish`` extra.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from voe.settings import Settings
from voe.sink.publish.outbox import Publisher
from voe.store import open_store

log = logging.getLogger("voe.publish")

# Seconds ``Publishing.stop`` waits for each drainer to finish its batch.
STOP_SECONDS = 10.0


class PublishError(Exception):
    """Publishing is configured but cannot start (a missing extra); meant for the user."""


def webhook_urls(settings: Settings) -> list[str]:
    """The webhook URLs of ``VOE_WEBHOOK_URLS``."""
    return [url for url in settings.voe_webhook_urls.split(",") if url]


def destinations(settings: Settings) -> list[str]:
    """The names of the destinations configured, as the store keeps their cursors."""
    from voe.sink.publish.webhook import destination_name

    names = []
    if settings.voe_amqp_url:
        names.append(f"amqp:{settings.voe_amqp_exchange}")
    if settings.voe_nats_url:
        names.append(f"nats:{settings.voe_nats_stream}")
    names.extend(destination_name(url) for url in webhook_urls(settings))
    return names


def publishers(settings: Settings) -> list[Publisher]:
    """A publisher per configured destination; ``PublishError`` when a client is missing."""
    found: list[Publisher] = []
    try:
        if settings.voe_amqp_url:
            from voe.sink.publish.rabbitmq import AmqpPublisher

            found.append(AmqpPublisher(settings.voe_amqp_url, settings.voe_amqp_exchange))
        if settings.voe_nats_url:
            from voe.sink.publish.nats import NatsPublisher

            found.append(NatsPublisher(settings.voe_nats_url, settings.voe_nats_stream,
                                       settings.voe_nats_subject))
    except ImportError as error:
        raise PublishError(f"publishing events needs {error.name}: pip install "
                           "'voe[publish]'") from None
    from voe.sink.publish.webhook import WebhookPublisher

    if webhook_urls(settings) and not settings.voe_webhook_secret:
        raise PublishError("VOE_WEBHOOK_URLS needs VOE_WEBHOOK_SECRET: every webhook is signed "
                           "(X-Voe-Signature) so receivers can tell voe's events from forgeries")
    found.extend(WebhookPublisher(url, settings.voe_webhook_secret,
                                  settings.voe_webhook_max_attempts,
                                  settings.voe_webhook_backoff, settings.voe_webhook_timeout)
                 for url in webhook_urls(settings))
    return found


class Publishing:
    """The drainer threads of one sink."""

    def __init__(self, settings: Settings, store_target: str | Path) -> None:
        from voe import metrics
        from voe.sink.publish.outbox import Drainer

        self.stop_event = threading.Event()
        def report(destination: str, backlog: int) -> None:
            metrics.OUTBOX_BACKLOG.labels(destination).set(backlog)

        self.drainers = [
            Drainer(publisher, lambda: open_store(store_target), self.stop_event,
                    settings.voe_publish_max_backoff, report)
            for publisher in publishers(settings)]
        self.pruner = None
        if self.drainers and settings.voe_outbox_keep_hours > 0:
            from voe.sink.publish.prune import Pruner

            self.pruner = Pruner([drainer.publisher.name for drainer in self.drainers],
                                 lambda: open_store(store_target), self.stop_event,
                                 settings.voe_outbox_keep_hours * 3600)

    def start(self) -> Publishing:
        """Start every drainer thread."""
        for drainer in self.drainers:
            drainer.start()
        if self.pruner is not None:
            self.pruner.start()
        return self

    def stop(self) -> None:
        """Ask every drainer to stop and wait for it (bounded)."""
        self.stop_event.set()
        if self.pruner is not None:
            self.pruner.join(STOP_SECONDS)
        for drainer in self.drainers:
            drainer.join(STOP_SECONDS)
            if drainer.is_alive():
                log.warning("%s still busy after %.0f s; leaving it (its events stay in "
                            "the outbox)", drainer.name, STOP_SECONDS)
