"""Pruning the outbox: events every destination has published are deleted after a while.

Without it the store would keep each event for ever, about the size of its fares again.
An event stays while any configured destination has not passed it, while it is a dead
letter somewhere, and for ``VOE_OUTBOX_KEEP_HOURS`` after it was stored (so it can be
inspected, and a consumer that lost its copy can be helped by hand).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from voe.store import Store, StoreError

log = logging.getLogger("voe.publish")

# Seconds between prunes; each deletes in chunks so the sink's writes never wait long.
PRUNE_SECONDS = 60.0
# Events deleted per transaction.
CHUNK = 5_000
# Chunks per prune at most (the rest waits for the next one).
MAX_CHUNKS = 100


class Pruner(threading.Thread):
    """Deletes published events older than ``keep_seconds`` until ``stop`` is set."""

    def __init__(self, destinations: Sequence[str], open_store: Callable[[], Store],
                 stop: threading.Event, keep_seconds: float,
                 every: float = PRUNE_SECONDS) -> None:
        super().__init__(name="outbox-pruner", daemon=True)
        self.destinations = list(destinations)
        self.open_store = open_store
        self.stop = stop
        self.keep_seconds = keep_seconds
        self.every = every
        self.pruned = 0

    def run(self) -> None:
        """Prune once per ``every`` seconds; a failure is logged and tried again later."""
        while not self.stop.wait(self.every):
            try:
                self.prune_once()
            except StoreError as error:
                log.error("pruning the outbox: %s; trying again in %.0f s", error, self.every)
            except Exception:
                log.critical("unexpected failure pruning the outbox", exc_info=True)

    def prune_once(self) -> int:
        """Delete what may go now, in chunks; return how many events were deleted."""
        before = time.time() - self.keep_seconds
        deleted = 0
        with self.open_store() as store:
            for _ in range(MAX_CHUNKS):
                if self.stop.is_set():
                    break
                count = store.outbox_prune(self.destinations, before, CHUNK)
                deleted += count
                if count < CHUNK:
                    break
        if deleted:
            log.info("pruned %d published events older than %.1f h from the outbox", deleted,
                     self.keep_seconds / 3600)
        self.pruned += deleted
        return deleted
