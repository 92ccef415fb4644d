"""What the operator sees while machines deploy: each machine's current step.

At a terminal it is a live table (rich); elsewhere (CI, a log) one line per step, so
the record shows the same thing.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from voe.cloud.cluster import Machine


class Board:
    """Each machine's step, updated from deploy threads."""

    def __init__(self, console: Console, machines: list[Machine]) -> None:
        self.console = console
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._steps = {machine.instance_id: (machine, "waiting", self.started)
                       for machine in machines}
        self._live: Live | None = None

    def update(self, machine: Machine, step: str) -> None:
        """Show that ``machine`` is now at ``step``."""
        with self._lock:
            self._steps[machine.instance_id] = (machine, step, time.monotonic())
            if self._live is not None:
                self._live.update(self._table())
                return
        seconds = time.monotonic() - self.started
        self.console.print(f"[{seconds:5.1f}s] {machine.name} {machine.instance_id}: {step}",
                           highlight=False)

    def _table(self) -> Table:
        table = Table(title="deploying", title_justify="left")
        for column in ("machine", "instance", "role", "step", "since"):
            table.add_column(column, no_wrap=column == "instance", min_width=len(column))
        now = time.monotonic()
        for machine, step, since in self._steps.values():
            table.add_row(machine.name, machine.instance_id, machine.role, step,
                          f"{now - since:.0f}s")
        return table

    def __enter__(self) -> Board:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._live is not None:
            with self._lock:
                self._live.update(self._table())
            self._live.__exit__(kind, error, traceback)
            self._live = None
