"""Statements on the sqlite3 driver: rendered from the tables, counted as SQLite counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import peakshop.models  # noqa: F401 -- every table on the shared metadata
from peakshop.db import metadata as shop_metadata
from peakshop.jobs import repository as jobs_repository
from peakshop.kit.sqlite_driver import (
    IN_JSON,
    datetime_processor,
    execute,
    execute_many,
    fetch,
    insert_sql,
    json_list,
    usable,
)
from peakshop.orders import repository as orders_repository

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


def test_fetch_and_execute_run_in_the_open_transaction(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        execute_many(conn, insert_sql(things, ("id", "name")), [(1, "a"), (2, "b"), (3, "c")])
        rows = fetch(
            conn, f"SELECT id, name FROM things WHERE id {IN_JSON} ORDER BY id", ("[1, 3]",)
        )
        assert [(row["id"], row[1]) for row in rows] == [(1, "a"), (3, "c")]
        renamed = f"UPDATE things SET name = 'z' WHERE id {IN_JSON}"
        assert execute(conn, renamed, (json_list([2, 3, 4]),)) == 2
    with engine.connect() as conn:
        assert usable(conn)
        names = conn.execute(sa.select(things.c.name).order_by(things.c.id)).scalars().all()
    assert names == ["a", "z", "z"]


def _plan(conn: sa.Connection, sql: str, parameters: tuple[object, ...]) -> str:
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters).all()
    return "\n".join(str(row[-1]) for row in rows)


def test_the_worker_batch_statements_look_rows_up_by_id(tmp_path: Path) -> None:
    """With the ids in a JSON array SQLite cannot tell how many there are, and would search
    the status index instead (every pending order, every queued job, per statement) if the
    status conditions were not written ``+status``."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    shop_metadata.create_all(engine)
    ids = json_list(["a", "b"])
    with engine.connect() as conn:
        claim = _plan(conn, jobs_repository._CLAIM_SQLITE, (1.0, "t", ids, 1.0, 1.0))
        finish = _plan(conn, jobs_repository._FINISH_SQLITE, ("t", "t", ids))
        confirm = _plan(conn, orders_repository._CONFIRM_SQLITE, ("t", ids))
        read = _plan(conn, orders_repository._BATCH_SQLITE, (ids,))
    for plan in (claim, finish):
        assert re.search(r"SEARCH jobs USING INDEX \S+ \(id=\?\)", plan), plan
        assert "ix_jobs_status" not in plan, plan
    for plan in (confirm, read):
        assert re.search(r"SEARCH orders USING INDEX \S+ \(id=\?\)", plan), plan
        assert "ix_orders_status" not in plan, plan
