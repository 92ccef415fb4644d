"""Child processes that voe starts (``voe run``) and stops by PID, never by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from voe import private

# Seconds a child gets to stop after SIGTERM before SIGKILL.
STOP_TIMEOUT = 15.0


class Child:
    """One ``python -m voe ROLE ...`` process, in its own session so Ctrl-C reaches only us."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], cwd: Path,
                 stderr_path: Path) -> None:
        self.name = name
        self.stderr_path = stderr_path
        with open(stderr_path, "ab", opener=private.opener) as stderr:  # 0600
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "voe", *args], env=dict(env), cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)

    @property
    def pid(self) -> int:
        """The child's PID."""
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit status if the child has ended, else None."""
        return self.popen.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def child_env(settings_env: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment for a child: ours, then the resolved settings, then ``extra``."""
    env = dict(os.environ)
    env.update(settings_env)
    env.update(extra)
    return env
