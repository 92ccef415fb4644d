"""What the master knows of the sink: whether it stores, and what it waits for."""

from __future__ import annotations

import logging

log = logging.getLogger("voe.master")


class SinkState:
    """What the master knows of the sink: when it last stored (acknowledged or said it
    could), and what it says it is waiting for. Times are monotonic."""

    def __init__(self) -> None:
        self.storing_at: float | None = None  # last ack, or a heartbeat not waiting
        self.heard_at: float | None = None  # last word of any kind
        self.waiting = ""

    def acknowledged(self, now: float) -> None:
        """The sink acknowledged results: it stores."""
        self.storing_at = self.heard_at = now
        self.waiting = ""

    def beat(self, now: float, waiting: str) -> None:
        """A heartbeat from the sink, with what it waits for ("" when it stores)."""
        self.heard_at = now
        if waiting and not self.waiting:  # once per wait: its text counts the seconds
            log.warning("the sink is waiting for %s", waiting)
        elif self.waiting and not waiting:
            log.info("the sink stores again")
        self.waiting = waiting
        if not waiting:
            self.storing_at = now

    def stored_since(self, moment: float, grace: float) -> bool:
        """Whether the sink has stored well after ``moment`` (so a result sent then that is
        still unacknowledged was lost, not delayed)."""
        return self.storing_at is not None and self.storing_at > moment + grace

    def snapshot(self, now: float) -> dict:
        """The dashboard's view: what it waits for and how long it has been silent."""
        silent = None if self.heard_at is None else round(now - self.heard_at, 1)
        return {"waiting": self.waiting, "silent_seconds": silent}
