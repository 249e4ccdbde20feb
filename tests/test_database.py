"""``Database.run_write``: a whole write transaction with a synchronous connection, in one
thread hand-off on SQLite, through ``run_sync`` on PostgreSQL; and on SQLite it takes turns
with ``Database.write()`` (one writer at a time in the process)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from peakshop.db import Database
from peakshop.kit.sqlite_inline import OVER_BUDGET, read_within
from peakshop.monitoring import metrics
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


class LoopTicks:
    """Counts a 10 ms timer while the block runs: that the event loop kept running."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.count += 1

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _rows_and_thread(conn: sa.Connection) -> tuple[list[int], int]:
    """The scratch rows, and the thread that read them."""
    rows = [n for (n,) in conn.execute(sa.select(scratch.c.n).order_by(scratch.c.n))]
    return rows, threading.get_ident()


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


async def test_on_sqlite_an_inline_write_runs_on_the_event_loop_and_rolls_back_on_error(
    sqlite_url: str,
) -> None:
    db = Database(make_settings(sqlite_url))
    try:
        await db.run_write(lambda conn: scratch.create(conn, checkfirst=True))

        def insert(conn: sa.Connection) -> int:
            conn.execute(sa.insert(scratch).values(n=1))
            return threading.get_ident()

        def insert_then_fail(conn: sa.Connection) -> None:
            conn.execute(sa.insert(scratch).values(n=2))
            raise RuntimeError("half way")

        assert await db.run_write(insert, inline=True) == threading.get_ident()
        with pytest.raises(RuntimeError, match="half way"):
            await db.run_write(insert_then_fail, inline=True)
        assert await _rows(db) == [1]
    finally:
        await db.dispose()


async def test_on_sqlite_an_inline_write_blocked_by_another_process_moves_to_the_thread(
    sqlite_url: str,
) -> None:
    """Another connection (another process, for SQLite) holds the write lock longer than
    the inline wait: the write is not refused, it waits for the lock off the event loop."""
    db = Database(make_settings(sqlite_url, sqlite_busy_timeout_ms=5_000))
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    try:
        await db.run_write(lambda conn: scratch.create(conn, checkfirst=True))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")

        async def release_later() -> None:
            await asyncio.sleep(0.3)
            other.execute("COMMIT")

        def insert(conn: sa.Connection) -> int:
            conn.execute(sa.insert(scratch).values(n=7))
            return threading.get_ident()

        async with LoopTicks() as ticks:
            releaser = asyncio.create_task(release_later())
            thread = await db.run_write(insert, inline=True)
            await releaser
        other.close()
        assert thread != threading.get_ident()  # it moved to the write thread
        assert ticks.count >= 10  # and the event loop kept running while it waited
        assert await _rows(db) == [7]
    finally:
        await db.dispose()


async def test_on_sqlite_the_checkpointer_copies_the_log_back_and_stops(sqlite_url: str) -> None:
    db = Database(make_settings(sqlite_url))
    assert db.checkpointer is not None
    try:
        await db.run_write(lambda conn: scratch.create(conn, checkfirst=True))
        for start in range(0, 2_000, 100):
            rows = [{"n": n} for n in range(start, start + 100)]
            await db.run_write(lambda conn, rows=rows: conn.execute(sa.insert(scratch), rows))
        # The writers' own checkpoint is at 10,000 pages: these few hundred are copied back
        # by the checkpointer's thread, all of them once the writes stop.
        deadline = time.monotonic() + 5
        result = db.checkpointer.last_result
        while (result is None or result[2] == 0 or result[1] != result[2]) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
            result = db.checkpointer.last_result
        assert result is not None and result[1] > 0 and result[2] == result[1]
    finally:
        await db.dispose()
    assert db.checkpointer._thread is None


# A read that takes SQLite well over the inline budget (a few hundred milliseconds).
SLOW_COUNT = sa.text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c"
)


async def test_an_inline_read_sees_what_was_written(db: Database) -> None:
    await db.run_write(lambda conn: conn.execute(sa.insert(scratch), [{"n": 1}, {"n": 2}]))
    rows, thread = await db.run_read(_rows_and_thread, inline=True)
    assert rows == [1, 2]
    if db.is_sqlite:  # on the event loop's own thread
        assert thread == threading.get_ident()


async def test_on_sqlite_an_inline_read_over_its_budget_runs_again_in_a_thread(
    sqlite_url: str,
) -> None:
    db = Database(make_settings(sqlite_url))
    threads: list[int] = []

    def slow(conn: sa.Connection) -> int:
        threads.append(threading.get_ident())
        return int(conn.execute(SLOW_COUNT).scalar_one())

    before = metrics.INLINE_READS_OVER_BUDGET._value.get()
    try:
        assert await db.run_read(slow, inline=True) == 3_000_000
        # Tried on the loop's thread, interrupted at the budget, then read in a thread.
        assert threads[0] == threading.get_ident() and threads[1] != threading.get_ident()
        assert len(threads) == 2
        assert metrics.INLINE_READS_OVER_BUDGET._value.get() == before + 1
        # The interrupted connection reads again, with no budget left behind on it.
        assert await db.run_read(lambda conn: conn.execute(sa.text("SELECT 7")).scalar_one()) == 7
    finally:
        await db.dispose()


def test_read_within_interrupts_at_the_budget_and_leaves_the_connection_usable(
    tmp_path: Path,
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'budget.db'}", pool_size=1)
    try:
        started = time.perf_counter()
        result = read_within(
            engine, lambda conn: conn.execute(SLOW_COUNT).scalar_one(), budget_seconds=0.01
        )
        assert result is OVER_BUDGET
        assert time.perf_counter() - started < 0.2  # the count alone takes longer
        quick = read_within(
            engine, lambda conn: conn.execute(sa.text("SELECT 1")).scalar_one(), budget_seconds=0.01
        )
        assert quick == 1
        # Without the handler, the same connection finishes the slow count.
        with engine.connect() as conn:
            assert conn.execute(SLOW_COUNT).scalar_one() == 3_000_000
    finally:
        engine.dispose()


async def test_on_sqlite_an_inline_read_refused_by_a_lock_waits_for_it_in_a_thread(
    sqlite_url: str,
) -> None:
    """A connection holding the file exclusively (``locking_mode=EXCLUSIVE``: what a WAL
    reader can be refused by) makes the inline read give up after its short busy timeout
    and wait in a thread, while the event loop keeps running."""
    db = Database(make_settings(sqlite_url, sqlite_busy_timeout_ms=5_000))
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    try:
        await db.run_write(lambda conn: scratch.create(conn, checkfirst=True))
        await db.run_write(lambda conn: conn.execute(sa.insert(scratch).values(n=3)))
        await db.dispose()  # every connection closed: the other one can take the file
        db = Database(make_settings(sqlite_url, sqlite_busy_timeout_ms=5_000))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO scratch_rows (n) VALUES (4)")
        other.execute("COMMIT")  # the exclusive lock stays until the connection closes

        async def release_later() -> None:
            await asyncio.sleep(0.3)
            other.close()

        async with LoopTicks() as ticks:
            releaser = asyncio.create_task(release_later())
            rows, thread = await db.run_read(_rows_and_thread, inline=True)
            await releaser
        assert rows == [3, 4]
        assert thread != threading.get_ident()  # read in a thread, once the lock went
        assert ticks.count >= 10  # and the event loop kept running meanwhile
    finally:
        await db.dispose()
