"""The store's tables, described once: both dialects' DDL and migrations come from here.

A table is columns of a logical type, a key and unique constraints; an index may belong
to one dialect only. ``MIGRATIONS`` is the ordered list of logical steps and
``SCHEMA_VERSION`` their count: the one version both stores record (SQLite in
``PRAGMA user_version``, PostgreSQL in its ``voe_schema`` table).

The fares table has no index in SQLite: each would be updated by every stored fare, the
sink's hottest path (a route index cost 15-18% of its CPU); reports scan instead.
PostgreSQL reads fares per job and cycle (exports, audits) through ``fares_cycle_job``.
The previous cycle's prices are kept per job in ``last_prices`` (one row per job, not an
index on every fare), so raising ``fare.price_changed`` costs one indexed lookup per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

from voe.store.base import NoStore, StoreError


class Column(NamedTuple):
    """A column: its name, logical type (a key of ``Dialect.types``), whether NULL fits, the
    migration that gave it to its table (the one creating the table, unless later), and its
    default as SQL (what rows stored before a later migration hold)."""

    name: str
    type: str
    null: bool = False
    since: int = 1
    default: str | None = None


class Unique(NamedTuple):
    """A unique constraint over ``columns``; ``only`` names the one dialect that has it."""

    columns: tuple[str, ...]
    only: str | None = None


class Table(NamedTuple):
    """A table: its columns, primary key (if not a serial column) and unique constraints."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    unique: tuple[Unique, ...] = ()


class Index(NamedTuple):
    """An index of ``table``'s ``columns``; ``only`` names the one dialect that has it."""

    name: str
    table: str
    columns: tuple[str, ...]
    only: str | None = None


class Migration(NamedTuple):
    """One logical schema step: tables and indexes it creates, tables it adds columns to
    (those whose ``since`` is this step), and whether it then fills ``last_prices`` from
    the fares already stored."""

    doc: str
    tables: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    fills_last_prices: bool = False
    widens: tuple[str, ...] = ()


class Dialect(NamedTuple):
    """How a database spells the logical types (None: no such column, e.g. SQLite's rowid),
    and whether a table with a primary key is ``WITHOUT ROWID``."""

    name: str
    types: Mapping[str, str | None]
    without_rowid: bool


SQLITE = Dialect("sqlite", {
    "int": "INTEGER", "count": "INTEGER", "text": "TEXT", "real": "REAL", "bytes": "BLOB",
    "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "rowid": None,
}, without_rowid=True)
POSTGRES = Dialect("postgresql", {
    "int": "INTEGER", "count": "BIGINT", "text": "TEXT", "real": "DOUBLE PRECISION",
    "bytes": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY", "rowid": "BIGSERIAL PRIMARY KEY",
}, without_rowid=False)
"""``serial`` numbers rows for readers to follow; ``rowid`` only keeps insertion order
(SQLite has its implicit rowid, PostgreSQL a column ``id``)."""


def _columns(spec: str, since: int = 1) -> tuple[Column, ...]:
    """Columns from ``"name type, name type?, ..."`` (``?``: NULL allowed), added by
    migration ``since``."""
    found = []
    for item in spec.split(","):
        name, kind = item.split()
        found.append(Column(name, kind.rstrip("?"), kind.endswith("?"), since))
    return tuple(found)


_ROUTE = "backend text, origin text, destination text, date text, return_date text?"
# A search's options as text (``voe.model.SearchOptions``; '' for the defaults), and a
# multi-city trip's legs (``voe.model.legs_text``; '' for any other search).
_SEARCH = (Column("options", "text", since=6, default="''"),
           Column("legs", "text", since=6, default="''"))

TABLES = {table.name: table for table in (
    Table("fares", _columns(f"id rowid, cycle int, job_id text, {_ROUTE}, flight text,"
                            " departure text, arrival text, price text, currency text")
          + _columns("return_flight text?, return_departure text?, return_arrival text?", 5)
          + _SEARCH + _columns("leg_flights text?", 6)),
    Table("results", _columns(f"cycle int, job_id text, {_ROUTE}, fare_count int,"
                              " worker text, stored_at real") + _SEARCH
          + _columns("answer count?", 7), key=("cycle", "job_id")),
    Table("outcomes", _columns("id rowid, cycle int, job_id text, attempt int, worker text,"
                               " status text, duration real, error text?, at real"),
          unique=(Unique(("cycle", "job_id", "attempt", "worker")),)),
    # An event's id is unique without an index in SQLite: it names a (cycle, job) that
    # the results table's key lets a batch store once, in the same transaction.
    Table("outbox", _columns("seq serial, id text, kind text, cycle int, job_id text,"
                             " backend text, origin text, destination text,"
                             " created_at real, payload bytes"),
          unique=(Unique(("id",), only="postgresql"),)),
    Table("outbox_cursors", _columns("destination text, seq count, updated_at real"),
          key=("destination",)),
    Table("outbox_dead", _columns("destination text, seq count, attempts int, error text,"
                                  " state text, at real"), key=("destination", "seq")),
    Table("last_prices", _columns("job_id text, cycle int, prices bytes"), key=("job_id",)),
    Table("outbox_paused", _columns("since real")),
    Table("field_counts", _columns("cycle int, backend text, field text, valid count,"
                                   " invalid count"), key=("cycle", "backend", "field")),
)}

MIGRATIONS: tuple[Migration, ...] = (
    Migration("1: fares, stored-job markers and every attempt's outcome",
              tables=("fares", "results", "outcomes")),
    Migration("2: fares are read per job and cycle (PostgreSQL only, see above)",
              indexes=(Index("fares_cycle_job", "fares", ("cycle", "job_id"), "postgresql"),)),
    Migration("3: the transactional outbox, its delivery state per destination, and each"
              " job's latest prices, filled from the fares kept",
              tables=("outbox", "outbox_cursors", "outbox_dead", "last_prices", "outbox_paused"),
              fills_last_prices=True),
    Migration("4: the per-field yield: fares with each field valid and invalid per cycle"
              " and backend", tables=("field_counts",)),
    Migration("5: a round-trip fare's return flight and times (NULL for one-way fares)",
              widens=("fares",)),
    Migration("6: a search's options (party, cabin, point of sale, currency asked) and a"
              " multi-city trip's legs with its fares and its stored-job marker ('' for none),"
              " and a multi-city fare's later flights",
              widens=("fares", "results")),
    Migration("7: each stored result's answer digest (voe.answers; NULL for results stored"
              " before), so a repeated attempt is acknowledged with the answer stored",
              widens=("results",)),
)
SCHEMA_VERSION = len(MIGRATIONS)
"""The one schema version of both stores: how many ``MIGRATIONS`` a store has applied."""


def create_table(table: Table, dialect: Dialect, version: int = SCHEMA_VERSION) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table`` in ``dialect``, as at ``version``."""
    parts = []
    for column in table.columns:
        spelled = dialect.types[column.type]
        if spelled is None or column.since > version:
            continue
        parts.append(f"{column.name} {spelled}{_constraints(column)}")
    if table.key:
        parts.append(f"PRIMARY KEY ({', '.join(table.key)})")
    parts.extend(f"UNIQUE ({', '.join(unique.columns)})" for unique in table.unique
                 if unique.only in (None, dialect.name))
    suffix = " WITHOUT ROWID" if table.key and dialect.without_rowid else ""
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(parts)}){suffix}"


def create_index(index: Index) -> str:
    """``CREATE INDEX IF NOT EXISTS`` for ``index``."""
    return (f"CREATE INDEX IF NOT EXISTS {index.name} ON {index.table}"
            f" ({', '.join(index.columns)})")


def add_columns(table: Table, dialect: Dialect, version: int) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for each column migration ``version`` gives ``table``."""
    # PostgreSQL can say IF NOT EXISTS (SQLite cannot; its file records its version with
    # the change, in one transaction).
    missing = " IF NOT EXISTS" if dialect.name == "postgresql" else ""
    return [f"ALTER TABLE {table.name} ADD COLUMN{missing} {column.name}"
            f" {dialect.types[column.type]}{_constraints(column)}"
            for column in table.columns if column.since == version]


def _constraints(column: Column) -> str:
    """`` NOT NULL`` unless NULL fits (or the column is serial), then its default if any."""
    serial = column.type in ("serial", "rowid")
    text = "" if serial or column.null else " NOT NULL"
    return text if column.default is None else f"{text} DEFAULT {column.default}"


def statements(migration: Migration, dialect: Dialect, number: int) -> list[str]:
    """The DDL statements of migration ``number`` in ``dialect`` (none: a step it does not
    need)."""
    return ([create_table(TABLES[name], dialect, number) for name in migration.tables]
            + [sql for name in migration.widens
               for sql in add_columns(TABLES[name], dialect, number)]
            + [create_index(index) for index in migration.indexes
               if index.only in (None, dialect.name)])


def ddl(dialect: Dialect, through: int = SCHEMA_VERSION) -> list[str]:
    """Every statement of the migrations up to ``through``: a new store of that version."""
    return [sql for number, migration in enumerate(MIGRATIONS[:through], start=1)
            for sql in statements(migration, dialect, number)]


def pending(version: int, dialect: Dialect, store: str) -> Iterator[tuple[int, list[str], bool]]:
    """The migrations a store at ``version`` still needs: (number, statements, fills
    ``last_prices``) each; ``StoreError`` for a store newer than this voe."""
    refuse_newer(version, store)
    for number in range(version + 1, SCHEMA_VERSION + 1):
        migration = MIGRATIONS[number - 1]
        yield number, statements(migration, dialect, number), migration.fills_last_prices


def refuse_newer(version: int, store: str) -> None:
    """Refuse a store whose schema is newer than this voe (never a passing error)."""
    if version > SCHEMA_VERSION:
        raise StoreError(f"the store {store} has unknown schema version {version}, newer than"
                         f" this voe ({SCHEMA_VERSION}): upgrade voe")


def check_readable(version: int, store: str, empty: StoreError | None = None) -> None:
    """What a report (which never migrates) accepts: a store of exactly ``SCHEMA_VERSION``.

    ``empty`` is raised for version 0 (default: ``NoStore``, nothing stored yet).
    """
    if version == 0:
        raise empty or NoStore(f"no voe store at {store} (nothing stored yet?)")
    refuse_newer(version, store)
    if version != SCHEMA_VERSION:
        raise StoreError(f"the store {store} has schema version {version}, expected "
                         f"{SCHEMA_VERSION} (start the sink once to migrate)")
