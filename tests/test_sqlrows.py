"""Many rows a statement leave a table as one row a statement does (``voe.sqlrows``)."""

from __future__ import annotations

import sqlite3

import pytest

from voe import sqlrows

_TABLE = "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, a INTEGER, b TEXT)"
_INSERT = "INSERT INTO t (k, a, b) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"


def _table(rows: list[tuple], many_a_statement: bool) -> list[tuple]:
    db = sqlite3.connect(":memory:")
    db.execute(_TABLE)
    if many_a_statement:
        sqlrows.insert_rows(db, _INSERT, rows)
    else:
        db.executemany(_INSERT, rows)
    return db.execute("SELECT id, k, a, b FROM t ORDER BY id").fetchall()


@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 137])
def test_rows_land_in_order_with_the_same_row_numbers(count):
    rows = [(f"k{n}", n, None if n % 3 else f"b{n}") for n in range(count)]
    assert _table(rows, True) == _table(rows, False)
    assert len(_table(rows, True)) == count


def test_a_conflict_inside_one_statement_keeps_the_first_row_as_row_by_row_does():
    rows = [(f"k{n % 7}", n, "x") for n in range(60)]  # each key seven or eight times
    assert _table(rows, True) == _table(rows, False)
    assert [row[2] for row in _table(rows, True)] == list(range(7))


def test_wide_rows_stay_within_sqlites_oldest_parameter_limit():
    columns = [f"c{n}" for n in range(300)]
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE w ({', '.join(columns)})")
    sql = f"INSERT INTO w ({', '.join(columns)}) VALUES ({', '.join('?' * 300)})"
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    sqlrows.insert_rows(db, sql, [tuple(range(300))] * 10)
    assert db.execute("SELECT COUNT(*) FROM w").fetchone()[0] == 10
    assert max(statement.count("(") - 1 for statement in statements) * 300 <= 999


def test_a_statement_that_is_no_insert_of_values_is_refused():
    with pytest.raises(ValueError, match="INSERT"):
        sqlrows.multi_row("UPDATE t SET a = ?", 5)
    assert sqlrows.multi_row(_INSERT, 2) == (
        "INSERT INTO t (k, a, b) VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT DO NOTHING")


@pytest.mark.parametrize("count", [0, 1, 50, 51, 120])
def test_rows_given_as_one_flat_list_land_as_the_rows_do(count):
    rows = [(f"k{n}", n, f"b{n}") for n in range(count)]
    db = sqlite3.connect(":memory:")
    db.execute(_TABLE)
    sqlrows.insert_values(db, _INSERT, 3, [value for row in rows for value in row])
    assert db.execute("SELECT id, k, a, b FROM t ORDER BY id").fetchall() == _table(rows, False)
    with pytest.raises(ValueError, match="rows of 3"):
        sqlrows.insert_values(db, _INSERT, 3, ["k", 1])


def test_every_batch_size_uses_a_handful_of_statement_shapes():
    db = sqlite3.connect(":memory:")
    db.execute(_TABLE)
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    for count in range(1, 121):  # a sink's batches come in every size
        sqlrows.insert_rows(db, _INSERT, [(f"k{count}-{n}", n, "b") for n in range(count)])
    shapes = {sql.count("), (") + 1 for sql in statements if sql.startswith("INSERT")}
    assert shapes == {50, 32, 16, 8, 4, 2, 1}
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == sum(range(1, 121))


class _Recording:
    """A real connection that notes each statement's text and the values bound to it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.bound = db, []

    def execute(self, sql, values=()):
        self.bound.append((sql, list(values)))
        return self.db.execute(sql, values)

    def executemany(self, sql, many):
        many = list(many)
        self.bound.extend((sql, list(values)) for values in many)
        return self.db.executemany(sql, many)


def test_a_column_none_in_every_row_is_written_null_not_bound_and_not_defaulted():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE d (k TEXT, a INTEGER DEFAULT 7, b TEXT DEFAULT '')")
    recording = _Recording(db)
    rows = [(f"k{n}", None, None) for n in range(53)]
    sqlrows.insert_rows(recording, "INSERT INTO d (k, a, b) VALUES (?, ?, ?)", rows)
    assert db.execute("SELECT k, a, b FROM d ORDER BY rowid").fetchall() == rows
    assert [len(values) for _, values in recording.bound] == [50, 2, 1]
    assert all(None not in values for _, values in recording.bound)
    assert all(sql.startswith("INSERT INTO d (k, a, b) VALUES (?, NULL, NULL), (?, NULL, NULL)")
               or sql.endswith("VALUES (?, NULL, NULL)") for sql, _ in recording.bound)


@pytest.mark.parametrize("rows", [
    [(f"k{n}", n, None) for n in range(60)],          # b None in every row
    [(f"k{n}", None, f"b{n}") for n in range(3)],     # a None in every row
    [(None, None, None)] * 4,                          # every value None
    [(f"k{n}", None, None if n else "b0") for n in range(5)],  # b None in all rows but one
])
def test_rows_with_none_columns_land_as_row_by_row(rows):
    assert _table(rows, True) == _table(rows, False)


def test_nulls_are_placed_only_in_an_insert_of_question_marks():
    assert sqlrows.with_nulls(_INSERT, (0, 2)) == (
        "INSERT INTO t (k, a, b) VALUES (NULL, ?, NULL) ON CONFLICT DO NOTHING")
    with pytest.raises(ValueError, match="INSERT"):
        sqlrows.with_nulls("INSERT INTO t (k) VALUES (%s)", (0,))
    with pytest.raises(ValueError, match="INSERT"):
        sqlrows.with_nulls(_INSERT, (3,))
