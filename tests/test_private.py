"""Data files and directories are private (0600/0700) whatever the umask."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.test_newcomer import write_plan
from tests.test_run import run_env
from voe.dbfile import create_atomically


def modes_open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` (``root`` too) whose mode lets group or others in."""
    paths = [root, *root.rglob("*")]
    return [f"{path.relative_to(root.parent)} {stat.S_IMODE(path.lstat().st_mode):o}"
            for path in paths if stat.S_IMODE(path.lstat().st_mode) & 0o077]


def test_a_run_under_umask_022_leaves_every_data_file_private(tmp_path):
    env = run_env(tmp_path)
    plan = write_plan(tmp_path, attempts=1)
    # Some pages answer another search: their pages are kept in pages/.
    run = subprocess.run([sys.executable, "-m", "voe", "run", "--plan", str(plan),
                          "--airline-option", "wrong-search-rate=0.3",
                          "--airline-option", "seed=5"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                         umask=0o022)
    assert run.returncode == 0, run.stdout + run.stderr
    data = Path(env["VOE_DATA_DIR"])
    names = {path.name for path in data.iterdir()}
    assert {"ledger.db", "fares.db", "master.log", "sink.log", "run.err", "keys",
            "pages"} <= names, names
    assert list((data / "pages").iterdir()), "no page kept: the check would miss pages/"
    assert modes_open_to_others(data) == []


def test_a_database_and_its_wal_and_shm_are_private_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "data" / "fares.db"
        create_atomically(path, "CREATE TABLE t (x)", 1)
        db = sqlite3.connect(path)
        try:
            db.execute("INSERT INTO t VALUES (1)")
            db.commit()
            files = {p.name for p in path.parent.iterdir()}
            assert {"fares.db", "fares.db-wal", "fares.db-shm"} <= files, files
            assert modes_open_to_others(path.parent) == []
        finally:
            db.close()
    finally:
        os.umask(old)
