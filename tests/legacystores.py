"""Stores as voe wrote them before one table description served both dialects.

The DDL is read from the store modules of that commit in git history (``LEGACY_COMMIT``),
as it was, so tests can build an old store and open it with today's code: SQLite counted
its own versions (1 to 3), PostgreSQL its migrations (1 to 4). Without the history (an
unpacked source archive) the tests that need it are skipped.
"""

from __future__ import annotations

import ast
import functools
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

LEGACY_COMMIT = "9d4c39b27cdb04587ad2bedba4915b3d25986f23"
"""The last commit whose stores wrote their own DDL."""

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def _constants(path: str) -> dict[str, Any]:
    """The module-level string constants of ``path`` as of ``LEGACY_COMMIT``."""
    try:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{LEGACY_COMMIT}:{path}"],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no git history with {LEGACY_COMMIT[:7]} (the DDL of old stores)")
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and isinstance(node.value, (ast.Constant, ast.Tuple)):
                found[target.id] = ast.literal_eval(node.value)
    return found


def sqlite_store(path: Path, version: int) -> sqlite3.Connection:
    """Create a SQLite store of the old ``version`` (1 to 3) at ``path``; the caller closes it."""
    old = _constants("voe/store/sqlite.py")
    db = sqlite3.connect(path)
    db.executescript(";".join((old["_SCHEMA"], *old["_MIGRATIONS"][: version - 1])))
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    return db


def postgres_store(db: Any, version: int) -> None:
    """Create a PostgreSQL store of the old ``version`` (1 to 4) on the connection ``db``
    (autocommit, its ``search_path`` an empty schema), as the old code's migrations did."""
    db.execute("CREATE TABLE voe_schema ("
               " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
    for number, migration in enumerate(_constants("voe/store/postgres.py")["MIGRATIONS"][:version],
                                       start=1):
        for statement in migration.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO voe_schema VALUES (%s, 0)", (number,))
