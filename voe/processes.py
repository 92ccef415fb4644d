"""Child processes that voe starts (``voe run``) and stops by PID, never by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from voe import private
from voe.settings import withheld_secrets

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


# Variables of the environment no role of a local run reads but other tools' secrets
# live in: the AWS SDK's credentials (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...).
FOREIGN_SECRET_PREFIXES = ("AWS_",)


def child_env(settings_env: Mapping[str, str], role: str, **extra: str) -> dict[str, str]:
    """The environment for a ``role`` child: ours, the resolved settings, then ``extra``,
    without the secrets the role does not read (so a compromised worker or demo airline
    cannot leak them).

    A withheld secret setting is set empty rather than left out, so the child does not
    read it from the ``.env`` file of its working directory either.
    """
    withheld = withheld_secrets(role)
    env = {name: value for name, value in os.environ.items()
           if name not in withheld and not name.startswith(FOREIGN_SECRET_PREFIXES)}
    env.update((name, value) for name, value in settings_env.items() if name not in withheld)
    env.update(dict.fromkeys(withheld, ""))
    env.update(extra)
    return env
