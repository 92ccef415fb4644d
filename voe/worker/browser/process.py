"""Finding and ending a browser's process by its PID (Playwright does not tell the PID).

The render host launches Chromium with a flag of its own (``--voe-render-host=...``),
which Chromium ignores; the process whose command line holds it, and that is no
helper (no ``--type=``), is the browser. Debian starts its browsers through shell
scripts that run them as children (not ``exec``): the script's command line holds the
flag too, so of such a parent and child the child is the browser.
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
    innermost = [pid for pid in parents if pid not in parents.values()]
    return min(innermost) if innermost else None


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
