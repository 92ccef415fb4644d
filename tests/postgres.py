"""The PostgreSQL server of the tests (127.0.0.1:5432, database ``test``): a fresh schema each."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

SERVER_URL = os.environ.get("VOE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _admin():
    """A connection to the test server, or skip the test saying why."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (voe[postgres])")
    try:
        return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        first = (str(error).strip().splitlines() or ["no answer"])[0]
        pytest.skip(f"PostgreSQL at {SERVER_URL} does not answer: {first}")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """Yield a store URL whose ``search_path`` is a new empty schema, dropped afterwards."""
    admin = _admin()
    schema = f"voe_test_{secrets.token_hex(6)}"
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in SERVER_URL else "?"
        yield f"{SERVER_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
