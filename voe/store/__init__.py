"""Durable storage of fares for the sink and the reports: each job's fares once per cycle.

``open_store`` picks the implementation from a target: a file path or ``sqlite:///path``
for SQLite; ``postgresql://`` (or ``postgres://``) for PostgreSQL (the ``postgres`` extra).
Both keep the tables of ``voe.store.schema`` at its one ``SCHEMA_VERSION`` and share their
queries, locking and errors (``voe.store.sql``); each module keeps what its database does
its own way.
"""

from __future__ import annotations

from pathlib import Path

from voe.store.base import DONE, FARE_FIELDS, NoStore, Store, StoreError, StoreUnavailable
from voe.store.sqlite import SqliteStore

__all__ = ["DONE", "FARE_FIELDS", "NoStore", "SqliteStore", "Store", "StoreError",
           "StoreUnavailable", "open_store"]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgresql+", "postgres://")


def open_store(target: str | Path, *, readonly: bool = False,
               application_name: str = "") -> Store:
    """Open the store named by ``target``; ``readonly`` is for reports and needs an existing store.

    ``sqlite:///fares.db`` is relative, ``sqlite:////srv/fares.db`` absolute (as in SQLAlchemy).
    ``application_name`` names the connection to PostgreSQL (``pg_stat_activity``) unless
    the URL names it already; SQLite has no use for it.
    """
    if isinstance(target, Path):
        return SqliteStore(target, readonly=readonly)
    if target.startswith(_POSTGRES_PREFIXES):
        if target.startswith("postgresql+"):
            raise StoreError("use a plain postgresql:// URL for the store (no +driver)")
        from voe.store.postgres import PostgresStore

        return PostgresStore(target, readonly=readonly, application_name=application_name)
    if target.startswith(_SQLITE_PREFIX):
        path = target.removeprefix(_SQLITE_PREFIX)
        if not path:
            raise StoreError(f"no file path in the store URL {target!r}")
        return SqliteStore(path, readonly=readonly)
    if "://" in target:
        scheme = target.split("://", 1)[0]
        raise StoreError(f"unknown store {scheme!r} in {target!r}: use a file path or sqlite:///")
    return SqliteStore(target, readonly=readonly)
