"""The master's side of its HTTP port: a command queue in, a few live numbers out.

HTTP threads ``submit`` commands (pause, resume, start a cycle, retry dead letters)
and wait for the answer; the master's single-threaded loop ``drain``s the queue
every iteration and runs each command itself, so master state is only ever changed
by the master's thread. The loop also records ``sample``s of its counters, from
which the dashboard draws throughput.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("voe.web")

# Samples of the master's counters kept (one a second: ten minutes).
SAMPLES = 10 * 60
# Their spacing: the least seconds between two samples.
SAMPLE_INTERVAL = 0.9
# Commands run per loop iteration at most (the rest wait for the next one).
COMMANDS_PER_DRAIN = 20
# Seconds an action waits for the master's loop to answer (it looks every 20 ms).
COMMAND_TIMEOUT = 10.0


class CommandRefused(Exception):
    """The master cannot do this now (e.g. a cycle is still running); the message says why."""


class UnknownJob(Exception):
    """The command names a job the ledger does not hold in the state it needs."""


@dataclass
class Command:
    """One action asked of the master, with the future its answer goes to."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    answer: Future = field(default_factory=Future)


class Control:
    """Shared by the master's loop and the HTTP threads; every method is thread-safe."""

    def __init__(self) -> None:
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=SAMPLES)
        self._snapshot: dict[str, Any] = {}

    # HTTP threads ----------------------------------------------------------

    def submit(self, name: str, **args: Any) -> Future:
        """Queue a command for the master's loop; its answer (a dict) arrives in the future."""
        command = Command(name, args)
        self._commands.put(command)
        return command.answer

    def snapshot(self) -> dict[str, Any]:
        """The master's live state as last published, with its counter samples."""
        with self._lock:
            state = dict(self._snapshot)
            state["samples"] = [list(sample) for sample in self._samples]
        return state

    # The master's thread -----------------------------------------------------

    def drain(self, run: Callable[[Command], dict[str, Any]]) -> None:
        """Run waiting commands with ``run``; its answer, or the exception it raised, goes
        back to the asking thread (a failing command never stops the master)."""
        for _ in range(COMMANDS_PER_DRAIN):
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if not command.answer.set_running_or_notify_cancel():
                continue
            try:
                command.answer.set_result(run(command))
            except (CommandRefused, UnknownJob) as refused:
                command.answer.set_exception(refused)
            except Exception as error:
                log.exception("control command %s failed", command.name)
                command.answer.set_exception(error)

    def publish(self, state: Mapping[str, Any], done: int, failed: int) -> None:
        """Record the master's live state, and a sample of its done and failed counters
        unless the last one is less than ``SAMPLE_INTERVAL`` old."""
        now = time.time()
        with self._lock:
            self._snapshot = dict(state)
            if not self._samples or now - self._samples[-1][0] >= SAMPLE_INTERVAL:
                self._samples.append((round(now, 3), done, failed))
