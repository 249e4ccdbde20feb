"""Batched statements run straight on the sqlite3 driver, for the hottest group commits.

SQLAlchemy Core spends tens of microseconds of Python on every statement it runs
(coercion, cache key, parameter processing, rendering a multi-row INSERT), all of it with
the GIL held: in a flash sale's group commits that was ~220 us per admitted order which the
event loop spent waiting to answer requests. These statements are rendered once, from the
tables' metadata, and run with the driver's ``executemany`` in the connection's current
transaction (the one ``Database.run_write`` opened with ``BEGIN IMMEDIATE``). Values are
converted by SQLAlchemy's own SQLite type processors, so rows read back through Core are
exactly those Core would have written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

_DIALECT = sqlite.dialect()


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


def execute_many(conn: sa.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run ``sql`` once per row on the driver's cursor; the number of rows it changed (an
    ``ON CONFLICT DO NOTHING`` that skipped, or an upsert whose ``WHERE`` refused, counts 0)."""
    if conn.dialect.name != "sqlite":
        raise RuntimeError("execute_many runs on the sqlite3 driver only")
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    finally:
        cursor.close()
