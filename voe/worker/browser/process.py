"""Finding and ending a browser's process by its PID (Playwright does not tell the PID).

The render host launches Chromium with a flag of its own (``--voe-render-host=...``),
which Chromium ignores; the browser is the outermost process whose command line holds
it and that is no helper (no ``--type=``). Debian starts its browsers through shell
scripts that run them as children (not ``exec``): the script's command line holds the
flag too, so when such a process's child holding the flag runs another program (the
script's shell, then the browser), the child is the browser. A child that runs the
same program as the browser is a fork not yet turned into a helper (it still holds
the browser's command line for a moment), never the browser.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def find_browser(marker: str) -> int | None:
    """The PID of the browser process whose command line holds ``marker`` (None: not found)."""
    wanted = marker.encode()
    parents: dict[int, int] = {}  # candidate -> its parent
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            if wanted not in arguments or any(arg.startswith(b"--type=") for arg in arguments):
                continue
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile, or not ours to read
            continue
        parents[int(entry.name)] = parent
    outermost = [pid for pid, parent in parents.items() if parent not in parents]
    if not outermost:
        return None
    found = min(outermost)
    for _ in range(len(parents)):  # down through launcher scripts, never to a fork
        launched = [pid for pid, parent in parents.items()
                    if parent == found and _program(pid) != _program(found)]
        if not launched:
            break
        found = min(launched)
    return found


def _program(pid: int) -> str | None:
    """The executable ``pid`` runs (None if it cannot be read)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill(pid: int) -> None:
    """SIGKILL ``pid`` if it still runs."""
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended meanwhile: what we wanted
            return


def die_with_parent() -> None:
    """In a child before exec: ask Linux to SIGTERM it when its parent dies, even killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
