"""The outbox drainer: one thread per destination moves stored events to a publisher.

The sink writes events in the same transaction as the fares (``voe.store``); a drainer
reads them after its destination's cursor, oldest first, hands them to its publisher,
and moves the cursor only past what the publisher confirmed (or gave up on, for
webhooks: a dead letter). So an event is published at least once, in the order it was
stored (which keeps each route's events in order), and never lost: a broker that is
down only delays it. Each drainer has its own store connection and never blocks the
sink, which does not wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from voe.store import Store, StoreError
from voe.store.rows import Event

log = logging.getLogger("voe.publish")

# Events read from the outbox and handed to a publisher at once.
BATCH = 200
# Seconds between looks at an empty outbox.
POLL_SECONDS = 0.2
# First wait after a publisher or the store failed; doubled up to the settings' maximum.
FIRST_BACKOFF = 0.25
# Seconds between updates of the backlog gauge (a count over the waiting events).
GAUGE_SECONDS = 2.0


class Outcome(NamedTuple):
    """What a publisher did with a batch: the leading ``settled`` events are delivered or
    dead, and ``dead`` lists the ``(seq, attempts, error)`` of those it gave up on."""

    settled: int
    dead: list[tuple[int, int, str]]


class Unavailable(Exception):
    """The destination cannot be reached now; ``outcome`` is what was settled before."""

    def __init__(self, reason: str, outcome: Outcome | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome or Outcome(0, [])


class Publisher(Protocol):
    """Sends events to one destination (a broker, a webhook) and confirms them."""

    name: str
    """The destination, as the store keeps its cursor: ``amqp:EXCHANGE``, ``nats:STREAM``..."""

    def publish(self, events: Sequence[Event], stop: threading.Event) -> Outcome:
        """Send ``events`` in order; return once each leading one is confirmed or dead.

        Raises ``Unavailable`` when the destination cannot be reached.
        """
        ...

    def idle(self) -> None:
        """Keep the connection alive while nothing waits (e.g. AMQP heartbeats)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class Drainer(threading.Thread):
    """Drains the outbox to one publisher until ``stop`` is set."""

    def __init__(self, publisher: Publisher, open_store: Callable[[], Store],
                 stop: threading.Event, max_backoff: float,
                 backlog: Callable[[str, int], None] | None = None) -> None:
        super().__init__(name=f"drain-{publisher.name}", daemon=True)
        self.publisher = publisher
        self.open_store = open_store
        self.stop = stop
        self.max_backoff = max_backoff
        self.report_backlog = backlog
        self.published = 0
        self.dead = 0
        self._store: Store | None = None
        self._backoff = FIRST_BACKOFF
        self._outage_since: float | None = None
        self._next_gauge = 0.0

    def run(self) -> None:
        """Drain until stopped; contain and log every failure, then back off."""
        name = self.publisher.name
        log.info("publishing outbox events to %s", name)
        try:
            while not self.stop.is_set():
                try:
                    if self._step():
                        self._up()
                        continue
                    self.publisher.idle()
                except Unavailable as error:
                    self._down(str(error))
                    continue
                except StoreError as error:
                    log.error("publishing to %s: %s; retrying", name, error)
                    self._close_store()
                    self._wait()
                    continue
                except Exception:
                    log.critical("unexpected failure publishing to %s; retrying", name,
                                 exc_info=True)
                    self._wait()
                    continue
                self.stop.wait(POLL_SECONDS)
        finally:
            self._close_store()
            try:
                self.publisher.close()
            except Exception:
                log.warning("closing the publisher of %s failed", name, exc_info=True)
            log.info("stopped publishing to %s: %d events published, %d dead letters",
                     name, self.published, self.dead)

    def _step(self) -> bool:
        """Publish one batch of retried dead letters, then one of new events; True if any."""
        store = self._open()
        name = self.publisher.name
        retries = store.outbox_retries(name, BATCH)
        if retries:
            outcome = self._publish(store, retries, advance=False)
            if outcome.settled < len(retries):
                return True
        events = store.outbox_pending(name, BATCH)
        if events:
            self._publish(store, events, advance=True)
        self._gauge(store)
        return bool(retries or events)

    def _publish(self, store: Store, events: Sequence[Event], advance: bool) -> Outcome:
        """Publish and record what was settled, even when the destination fails midway."""
        try:
            outcome = self.publisher.publish(events, self.stop)
        except Unavailable as error:
            self._settle(store, events, error.outcome, advance)
            raise
        self._settle(store, events, outcome, advance)
        return outcome

    def _settle(self, store: Store, events: Sequence[Event], outcome: Outcome,
                advance: bool) -> None:
        if not outcome.settled and not outcome.dead:
            return
        settled = events[:outcome.settled]
        dead = {seq for seq, _, _ in outcome.dead}
        delivered = [event.seq for event in settled if event.seq not in dead]
        if advance:
            store.outbox_settle(self.publisher.name, settled[-1].seq if settled else None,
                                dead=outcome.dead)
        else:
            store.outbox_settle(self.publisher.name, None, delivered=delivered,
                                dead=outcome.dead)
        self.published += len(delivered)
        self.dead += len(outcome.dead)

    def _gauge(self, store: Store) -> None:
        """Report the backlog, at most every ``GAUGE_SECONDS`` (it counts waiting events)."""
        if self.report_backlog is None or time.monotonic() < self._next_gauge:
            return
        self._next_gauge = time.monotonic() + GAUGE_SECONDS
        backlog = store.outbox_backlog([self.publisher.name])[self.publisher.name]["backlog"]
        self.report_backlog(self.publisher.name, backlog)

    def _open(self) -> Store:
        if self._store is None:
            self._store = self.open_store()
        return self._store

    def _close_store(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            store.close()

    def _down(self, reason: str) -> None:
        """Log an outage once, when it starts, then wait longer each time."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("%s unreachable (%s); events wait in the outbox and are retried "
                        "with backoff (up to %g s)", self.publisher.name, reason,
                        self.max_backoff)
        else:
            log.debug("%s still unreachable: %s", self.publisher.name, reason)
        self._wait()

    def _up(self) -> None:
        if self._outage_since is not None:
            log.info("%s reachable again after %.1f s; publishing the waiting events",
                        self.publisher.name, time.monotonic() - self._outage_since)
            self._outage_since = None
        self._backoff = FIRST_BACKOFF

    def _wait(self) -> None:
        self.stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, self.max_backoff)
