"""Stores as voe wrote them before one table description served both dialects (commit 9d4c39b).

The DDL below is copied as it was, so tests can build an old store and open it with
today's code: SQLite counted its own versions (1 to 3), PostgreSQL its migrations (1 to 4).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SQLITE_SCHEMA = """
CREATE TABLE fares (
    cycle INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    origin TEXT NOT NULL,
    destination TEXT NOT NULL,
    date TEXT NOT NULL,
    return_date TEXT,
    flight TEXT NOT NULL,
    departure TEXT NOT NULL,
    arrival TEXT NOT NULL,
    price TEXT NOT NULL,
    currency TEXT NOT NULL
);
CREATE TABLE results (
    cycle INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    origin TEXT NOT NULL,
    destination TEXT NOT NULL,
    date TEXT NOT NULL,
    return_date TEXT,
    fare_count INTEGER NOT NULL,
    worker TEXT NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (cycle, job_id)
) WITHOUT ROWID;
CREATE TABLE outcomes (
    cycle INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    status TEXT NOT NULL,
    duration REAL NOT NULL,
    error TEXT,
    at REAL NOT NULL,
    UNIQUE (cycle, job_id, attempt, worker)
);
"""
"""SQLite's first schema (``PRAGMA user_version = 1``)."""

SQLITE_MIGRATIONS = (
    # 2: the transactional outbox, its delivery state per destination, and last prices.
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        cycle INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        origin TEXT NOT NULL,
        destination TEXT NOT NULL,
        created_at REAL NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS outbox_cursors (
        destination TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS outbox_dead (
        destination TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        state TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (destination, seq)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS last_prices (
        job_id TEXT PRIMARY KEY,
        cycle INTEGER NOT NULL,
        prices BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS outbox_paused (since REAL NOT NULL)
    """,
    # 3: the per-field yield: fares with each field valid and invalid per cycle and backend.
    """
    CREATE TABLE IF NOT EXISTS field_counts (
        cycle INTEGER NOT NULL,
        backend TEXT NOT NULL,
        field TEXT NOT NULL,
        valid INTEGER NOT NULL,
        invalid INTEGER NOT NULL,
        PRIMARY KEY (cycle, backend, field)
    ) WITHOUT ROWID
    """,
)
"""SQLite's versions 2 and 3, each the one before plus one of these."""

POSTGRES_MIGRATIONS = (
    # 1: fares, stored-job markers and every attempt's outcome.
    """
    CREATE TABLE fares (
        id BIGSERIAL PRIMARY KEY,
        cycle INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        origin TEXT NOT NULL,
        destination TEXT NOT NULL,
        date TEXT NOT NULL,
        return_date TEXT,
        flight TEXT NOT NULL,
        departure TEXT NOT NULL,
        arrival TEXT NOT NULL,
        price TEXT NOT NULL,
        currency TEXT NOT NULL
    );
    CREATE TABLE results (
        cycle INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        origin TEXT NOT NULL,
        destination TEXT NOT NULL,
        date TEXT NOT NULL,
        return_date TEXT,
        fare_count INTEGER NOT NULL,
        worker TEXT NOT NULL,
        stored_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (cycle, job_id)
    );
    CREATE TABLE outcomes (
        id BIGSERIAL PRIMARY KEY,
        cycle INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        worker TEXT NOT NULL,
        status TEXT NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        error TEXT,
        at DOUBLE PRECISION NOT NULL,
        UNIQUE (cycle, job_id, attempt, worker)
    )
    """,
    # 2: fares are read per job (exports, audits) and per cycle.
    "CREATE INDEX fares_cycle_job ON fares (cycle, job_id)",
    # 3: the transactional outbox, its delivery state per destination, and each job's
    # latest prices (what fare.price_changed compares with), filled from the fares kept.
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        cycle INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        origin TEXT NOT NULL,
        destination TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        payload BYTEA NOT NULL
    );
    CREATE TABLE IF NOT EXISTS outbox_cursors (
        destination TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS outbox_dead (
        destination TEXT NOT NULL,
        seq BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        state TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (destination, seq)
    );
    CREATE TABLE IF NOT EXISTS last_prices (
        job_id TEXT PRIMARY KEY,
        cycle INTEGER NOT NULL,
        prices BYTEA NOT NULL
    );
    CREATE TABLE IF NOT EXISTS outbox_paused (since DOUBLE PRECISION NOT NULL)
    """,
    # 4: the per-field yield: fares with each field valid and invalid per cycle and backend.
    """
    CREATE TABLE IF NOT EXISTS field_counts (
        cycle INTEGER NOT NULL,
        backend TEXT NOT NULL,
        field TEXT NOT NULL,
        valid BIGINT NOT NULL,
        invalid BIGINT NOT NULL,
        PRIMARY KEY (cycle, backend, field)
    )
    """,
)
"""PostgreSQL's versions 1 to 4, one a row in ``voe_schema``."""


def sqlite_store(path: Path, version: int) -> sqlite3.Connection:
    """Create a SQLite store of the old ``version`` (1 to 3) at ``path``; the caller closes it."""
    db = sqlite3.connect(path)
    db.executescript(";".join((SQLITE_SCHEMA, *SQLITE_MIGRATIONS[: version - 1])))
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    return db


def postgres_store(db, version: int) -> None:
    """Create a PostgreSQL store of the old ``version`` (1 to 4) on the connection ``db``
    (autocommit, its ``search_path`` an empty schema), as the old code's migrations did."""
    db.execute("CREATE TABLE voe_schema ("
               " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
    for number, migration in enumerate(POSTGRES_MIGRATIONS[:version], start=1):
        for statement in migration.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO voe_schema VALUES (%s, 0)", (number,))
