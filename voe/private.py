"""Files and directories of the data dir are private to their owner, whatever the umask.

The ledger, the store, the logs and the kept pages hold routes, fares, host names and
airline pages; under the usual umask 022 they would be readable by every local user.
voe gives each directory it creates mode 0700 and each file 0600 in the call that
creates it (the umask can only narrow a mode), never by a chmod afterwards, so no
other user can open one in between. SQLite gives a database's -wal and -shm files
the mode of the database, so they follow.
"""

from __future__ import annotations

import os
from pathlib import Path

# Mode of every directory voe creates in the data dir (and of missing parents).
DIR_MODE = 0o700
# Mode of every file voe creates there.
FILE_MODE = 0o600


def make_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, mode 0700; an existing one is left as is."""
    if not path.is_dir():
        if path.parent != path:
            make_dir(path.parent)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    return path


def opener(path: str, flags: int) -> int:
    """An ``open(..., opener=opener)`` that creates a missing file with mode 0600."""
    return os.open(path, flags, FILE_MODE)


def create_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 unless it exists (so logging or SQLite opens ours)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    return path


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``; a file created here gets mode 0600."""
    with open(path, "wb", opener=opener) as handle:
        handle.write(data)
