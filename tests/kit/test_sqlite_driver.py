"""Statements on the sqlite3 driver: rendered from the tables, counted as SQLite counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from peakshop.kit.sqlite_driver import datetime_processor, execute_many, insert_sql

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(20), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=True),
)


def test_insert_sql_names_only_columns_that_exist() -> None:
    assert insert_sql(things, ("id", "name")) == "INSERT INTO things (id, name) VALUES (?, ?)"
    with pytest.raises(KeyError, match="no column 'colour'"):
        insert_sql(things, ("id", "colour"))


def test_execute_many_counts_what_changed_in_the_open_transaction(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    metadata.create_all(engine)
    sql = insert_sql(things, ("id", "name", "at"), conflict="ON CONFLICT DO NOTHING")
    at = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
    stored_at = datetime_processor(things.c.at)(at)
    with engine.begin() as conn:
        assert execute_many(conn, sql, [(1, "a", stored_at), (2, "b", None)]) == 2
        assert execute_many(conn, sql, [(2, "again", None), (3, "c", None)]) == 1
    with pytest.raises(RuntimeError, match="boom"), engine.begin() as conn:
        execute_many(conn, sql, [(4, "d", None)])
        raise RuntimeError("boom")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(things).order_by(things.c.id)).all()
    # Rolled back with its transaction; the datetime reads back through Core unchanged.
    assert [row.id for row in rows] == [1, 2, 3]
    assert rows[0].at.replace(tzinfo=UTC) == at


def test_execute_many_refuses_other_databases() -> None:
    class Fake:
        dialect = postgresql.dialect()

    with pytest.raises(RuntimeError, match="sqlite3 driver only"):
        execute_many(Fake(), "SELECT 1", [])  # type: ignore[arg-type]
