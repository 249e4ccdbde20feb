"""Statements run straight on the sqlite3 driver, for the hottest group commits and the
in-process worker's batches.

SQLAlchemy Core spends tens of microseconds of Python on every statement it runs
(coercion, cache key, parameter processing, rendering a multi-row INSERT), all of it with
the GIL held: in a flash sale's group commits that was ~220 us per admitted order which the
event loop spent waiting to answer requests. These statements are rendered once, from the
tables' metadata, and run with the driver's ``executemany`` in the connection's current
transaction (the one ``Database.run_write`` opened with ``BEGIN IMMEDIATE``). Values are
converted by SQLAlchemy's own SQLite type processors, so rows read back through Core are
exactly those Core would have written.

The worker's batches (jobs claimed, orders read and confirmed, jobs finished: ~100 ids a
statement) go the same way, for the same reason: as Core statements they cost ~2.8 ms more
CPU per 100 orders (``benchmarks/flash_winner_cost.py``: 159 against 131 us per winner),
Python that held the GIL in the write thread, and each request that arrived meanwhile
waited for the GIL at every step from granian to the event loop and back (the admissions'
median went from 1.0 to 3-8 ms while 10,000 winners were confirmed).
On the driver, nearly all of a statement is SQLite's C code, which runs without the GIL.
Their ids go in as one JSON array (``IN_JSON``): one parameter, one statement text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

_DIALECT = sqlite.dialect()

# ``column IN_JSON`` with ``json_list(values)`` bound: the column is one of the values.
# SQLite cannot tell how many values the array holds, and a condition on an indexed
# column beside it (``status = 'pending'``) then looks cheaper to search by: write such a
# condition ``+status`` (no index), or the statement walks every pending row.
IN_JSON = "IN (SELECT value FROM json_each(?))"


def json_list(values: Iterable[Any]) -> str:
    return msgspec.json.encode(list(values)).decode()


def insert_sql(table: sa.Table, columns: Sequence[str], *, conflict: str = "") -> str:
    """``INSERT INTO table (columns) VALUES (?, ...) [conflict]``; the columns must exist."""
    for name in columns:
        if name not in table.c:
            raise KeyError(f"{table.name} has no column {name!r}")
    placeholders = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"
    return f"{sql} {conflict}" if conflict else sql


def datetime_processor(column: sa.Column[Any]) -> Callable[[datetime], str]:
    """How SQLAlchemy stores this column's datetimes in SQLite (its text format)."""
    process = column.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
    if process is None:
        raise TypeError(f"{column} has no SQLite bind processor")
    return cast(Callable[[datetime], str], process)


def usable(conn: sa.Connection) -> bool:
    """Whether ``conn`` runs on the plain sqlite3 driver (``Database.run_read`` and
    ``run_write``'s connections), not on PostgreSQL or aiosqlite (``run_sync`` inside
    ``Database.read`` and ``write``): where not, the caller runs its Core statement."""
    return isinstance(conn.connection.driver_connection, sqlite3.Connection)


def _driver(conn: sa.Connection) -> sqlite3.Connection:
    if conn.dialect.name != "sqlite":
        raise RuntimeError("this statement runs on the sqlite3 driver only")
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def execute_many(conn: sa.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run ``sql`` once per row on the driver's cursor; the number of rows it changed (an
    ``ON CONFLICT DO NOTHING`` that skipped, or an upsert whose ``WHERE`` refused, counts 0)."""
    cursor = _driver(conn).cursor()
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def fetch(conn: sa.Connection, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """The rows of one statement (a ``SELECT``, or a write with ``RETURNING``) run on the
    driver in the connection's current transaction, read by name or position. Values come
    as SQLite stores them: select no datetime column for code that expects datetimes."""
    cursor = _driver(conn).cursor()
    cursor.row_factory = sqlite3.Row
    try:
        return cursor.execute(sql, parameters).fetchall()
    finally:
        cursor.close()


def execute(conn: sa.Connection, sql: str, parameters: Sequence[Any] = ()) -> int:
    """Run one statement with no rows to read on the driver; the number of rows changed."""
    cursor = _driver(conn).cursor()
    try:
        return int(cursor.execute(sql, parameters).rowcount)
    finally:
        cursor.close()
