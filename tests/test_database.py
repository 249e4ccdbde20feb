"""``Database.run_write``: a whole write transaction with a synchronous connection, in one
thread hand-off on SQLite, through ``run_sync`` on PostgreSQL; and on SQLite it takes turns
with ``Database.write()`` (one writer at a time in the process)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from peakshop.db import Database
from tests.conftest import make_settings

scratch = sa.Table(
    "scratch_rows", sa.MetaData(), sa.Column("n", sa.Integer, primary_key=True, autoincrement=False)
)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(make_settings(database_url))
    await database.run_write(lambda conn: scratch.create(conn, checkfirst=True))
    try:
        yield database
    finally:
        await database.dispose()


async def _rows(db: Database) -> list[int]:
    async with db.read() as conn:
        return list((await conn.execute(sa.select(scratch.c.n).order_by(scratch.c.n))).scalars())


async def test_run_write_commits_what_returns_and_rolls_back_what_raises(db: Database) -> None:
    def insert(conn: sa.Connection) -> int:
        conn.execute(sa.insert(scratch), [{"n": 1}, {"n": 2}])
        return 2

    def insert_then_fail(conn: sa.Connection) -> None:
        conn.execute(sa.insert(scratch), [{"n": 3}])
        raise RuntimeError("half way")

    assert await db.run_write(insert) == 2
    with pytest.raises(RuntimeError, match="half way"):
        await db.run_write(insert_then_fail)
    assert await _rows(db) == [1, 2]


async def test_on_sqlite_one_thread_writes_and_the_event_loop_is_not_it(sqlite_url: str) -> None:
    db = Database(make_settings(sqlite_url))
    try:
        threads = {await db.run_write(lambda _: threading.get_ident()) for _ in range(5)}
        assert len(threads) == 1
        assert threading.get_ident() not in threads
    finally:
        await db.dispose()


async def test_on_sqlite_run_write_waits_for_an_open_write_transaction(sqlite_url: str) -> None:
    db = Database(make_settings(sqlite_url, sqlite_busy_timeout_ms=100))
    try:
        await db.run_write(lambda conn: scratch.create(conn, checkfirst=True))
        order: list[str] = []
        holding = asyncio.Event()

        async def long_write() -> None:
            async with db.write() as conn:
                await conn.execute(sa.insert(scratch).values(n=1))
                holding.set()
                await asyncio.sleep(0.3)  # longer than the busy timeout
                order.append("write")

        def insert(conn: sa.Connection) -> None:
            conn.execute(sa.insert(scratch).values(n=2))
            order.append("run_write")

        writer = asyncio.create_task(long_write())
        await holding.wait()
        await db.run_write(insert)  # no "database is locked": it waited for its turn
        await writer
        assert order == ["write", "run_write"]
        assert await _rows(db) == [1, 2]
    finally:
        await db.dispose()
