"""Create a SQLite database file atomically, so readers never see a half-made one.

The schema is written to a private (mode 0600) temporary file, which is then hard-linked into
place (``os.link`` never replaces an existing file). A reader in another process
sees either no file or a complete database in WAL mode with its schema version.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from voe import private


def create_atomically(path: Path, schema: str, version: int) -> None:
    """Create ``path`` with ``schema`` and ``PRAGMA user_version = version`` unless it exists."""
    if path.exists():
        return
    private.make_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    temporary.unlink(missing_ok=True)
    try:
        db = sqlite3.connect(private.create_file(temporary))  # 0600, and so its -wal, -shm
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(schema)
            db.execute(f"PRAGMA user_version={version}")
            db.commit()
        finally:
            db.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first; theirs is as good as ours
    finally:
        temporary.unlink(missing_ok=True)
