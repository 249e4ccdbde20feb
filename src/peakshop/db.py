"""Engines and transaction helpers.

The request (or job) owns the transaction: routes open ``db.write()`` or ``db.read()``
and pass the connection to services, which never commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from peakshop.config import Settings
from peakshop.kit.sqlite_checkpoint import (
    WAL_SIZE_LIMIT_BYTES,
    WRITER_CHECKPOINT_PAGES,
    WalCheckpointer,
)
from peakshop.kit.sqlite_inline import OverBudget, is_locked, read_within
from peakshop.kit.sqlite_writer import SqliteWriterProcess
from peakshop.kit.write_turn import WriteTurn
from peakshop.monitoring import metrics

T = TypeVar("T")


class Record(Protocol):
    """A row read by column name: Core's ``RowMapping``, or the sqlite3 driver's ``Row``
    (kit/sqlite_driver.py)."""

    def __getitem__(self, key: str, /) -> Any: ...


# How long a write on the event loop's thread (``Database.run_write(inline=True)``) waits
# for another process's write lock before it moves to the write thread instead.
INLINE_BUSY_MS = 20
# How long a read on the event loop's thread (``run_read(inline=True)``) may run before it
# is interrupted and run again in a thread: a catalog page takes ~0.5-1 ms.
INLINE_READ_BUDGET_SECONDS = 0.003

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


# The schema name under which SQLite read connections see the log file (see Database).
LOGS_SCHEMA = "logs"


def log_database_path(database_path: str) -> str:
    """The SQLite file of the append-only logs beside the shop's: ``shop.db`` -> ``shop.logs.db``."""
    path = Path(database_path)
    return str(path.with_name(f"{path.stem}.logs{path.suffix or '.db'}"))


def sqlite_log_engine(log_path: str, *, busy_timeout_ms: int, cache_mib: int) -> sa.Engine:
    """The one writing connection of the log file (the sqlite3 driver, used from a thread)."""
    return _sync_sqlite_engine(
        f"sqlite+pysqlite:///{log_path}",
        pool_size=1,
        begin="BEGIN IMMEDIATE",
        busy_timeout_ms=busy_timeout_ms,
        cache_mib=cache_mib,
    )


def _sync_sqlite_engine(
    url: str | sa.URL,
    *,
    pool_size: int,
    begin: str,
    busy_timeout_ms: int,
    cache_mib: int = 0,
    manual_checkpoints: bool = False,
) -> sa.Engine:
    """An engine of the plain sqlite3 driver whose connections are used from threads."""
    engine = sa.create_engine(
        make_url(url).set(drivername="sqlite+pysqlite"),
        pool_size=pool_size,
        max_overflow=0 if pool_size == 1 else pool_size,
        connect_args={"check_same_thread": False},
    )
    _configure_sqlite(
        engine,
        begin=begin,
        busy_timeout_ms=busy_timeout_ms,
        cache_mib=cache_mib,
        manual_checkpoints=manual_checkpoints,
    )
    return engine


def _configure_sqlite(
    engine: AsyncEngine | sa.Engine,
    *,
    begin: str,
    busy_timeout_ms: int,
    cache_mib: int = 0,
    attach_logs: str | None = None,
    manual_checkpoints: bool = False,
) -> None:
    # pysqlite's own transaction handling emits a deferred BEGIN lazily; take it over so that
    # write transactions start with BEGIN IMMEDIATE (they take the write lock up front and
    # never fail with "database is locked" on upgrade from a read lock).
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First: the PRAGMAs after it may wait for a lock, and should wait this long.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if cache_mib:
            cursor.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")  # negative: KiB
        if attach_logs is not None:
            cursor.execute(f"ATTACH DATABASE ? AS {LOGS_SCHEMA}", (attach_logs,))
        if manual_checkpoints:  # a WalCheckpointer does most of them (kit/sqlite_checkpoint.py)
            cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


class Database:
    """One engine for writes and one for reads (the same one on PostgreSQL).

    On SQLite the append-only logs (the validation log) live in a second file beside the
    shop's, ``<name>.logs.db``, whose batches a child process writes at idle CPU priority
    (``log_writer``, see kit/sqlite_writer.py). SQLite has one writer per file: in the shop's
    file a log batch would hold the write lock that redemptions and orders need, and a writer
    at idle priority holding that lock could stall them behind any other busy process. Read
    connections attach the log file, so queries name ``validation_logs`` as on PostgreSQL."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        self.log_engine: sa.Engine | None = None
        self.log_writer: SqliteWriterProcess | None = None
        if self.is_sqlite:
            self.log_path = log_database_path(make_url(self.url).database or "peakshop.db")
            self.log_engine = sqlite_log_engine(
                self.log_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms, cache_mib=0
            )
            self.log_writer = SqliteWriterProcess(
                self.log_path,
                busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                cache_mib=settings.sqlite_log_cache_mib,
            )
            # SQLite has one writer at a time: a single pooled write connection queues writers
            # inside the process instead of spinning on the busy timeout.
            self.write_engine = create_async_engine(self.url, pool_size=1, max_overflow=0)
            # ``run_write``'s connection: the plain sqlite3 driver on one thread of its own.
            # It and ``write_engine`` take turns through ``_write_turn``, so the process
            # still has one writer at a time.
            self.sync_write_engine: sa.Engine | None = _sync_sqlite_engine(
                self.url,
                pool_size=1,
                begin="BEGIN IMMEDIATE",
                busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                cache_mib=settings.sqlite_write_cache_mib,
                manual_checkpoints=True,
            )
            self.read_engine = create_async_engine(self.url, pool_size=4, max_overflow=4)
            _configure_sqlite(
                self.write_engine,
                begin="BEGIN IMMEDIATE",
                busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                cache_mib=settings.sqlite_write_cache_mib,
                manual_checkpoints=True,
            )
            _configure_sqlite(
                self.read_engine,
                begin="BEGIN",
                busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                attach_logs=self.log_path,
            )
            # ``run_read``'s engine: the plain sqlite3 driver, used from worker threads.
            self.sync_read_engine: sa.Engine | None = _sync_sqlite_engine(
                self.url,
                pool_size=4,
                begin="BEGIN",
                busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            )
            # ``run_read(inline=True)``'s one connection, used only from the event loop's
            # thread (one read at a time: it never waits for the pool).
            # A short busy timeout: the loop must not sleep in SQLite's busy handler (a WAL
            # reader is refused only while another process holds the file exclusively).
            self.inline_read_engine: sa.Engine | None = _sync_sqlite_engine(
                self.url,
                pool_size=1,
                begin="BEGIN",
                busy_timeout_ms=INLINE_BUSY_MS,
                cache_mib=settings.sqlite_read_cache_mib,
            )
        else:
            self.write_engine = create_async_engine(
                self.url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_pre_ping=True,
            )
            self.read_engine = self.write_engine
            self.sync_read_engine = None
            self.inline_read_engine = None
            self.sync_write_engine = None
        # The shop file's WAL checkpoints, off the write path; started by the first write.
        self.checkpointer: WalCheckpointer | None = None
        if self.is_sqlite:
            self.checkpointer = WalCheckpointer(make_url(self.url).database or "peakshop.db")
        self._busy_timeout_ms = settings.sqlite_busy_timeout_ms
        self._write_thread: ThreadPoolExecutor | None = None  # started by the first run_write
        self._write_turn = WriteTurn()

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        if self.sync_write_engine is None:
            async with self.write_engine.begin() as conn:
                yield conn
            return
        assert self.checkpointer is not None
        self.checkpointer.start()
        async with self._write_turn.hold(), self.write_engine.begin() as conn:
            yield conn

    async def run_write(
        self, write: Callable[[sa.Connection], T], *, background: bool = False, inline: bool = False
    ) -> T:
        """``write(conn)`` in a write transaction, with a synchronous connection: committed
        when it returns, rolled back if it raises. Never call it inside ``write()``.

        For the hot write paths (group commits of orders, the worker's batches). On SQLite
        the whole transaction runs in one thread with the sqlite3 driver: one hand-off from
        the event loop and back, where aiosqlite hands every statement's execute, fetch and
        close to its thread and back (a batch of orders took ~30). On PostgreSQL it runs on
        an asyncpg connection through ``run_sync``, statement by statement.

        ``background``: nobody waits for this write's answer (the worker's batches). On
        SQLite a request's write that is waiting for its turn goes first (kit/write_turn.py).

        ``inline`` (SQLite): run it on the event loop's own thread, for small transactions
        that requests wait for (a group commit of a few orders: ~0.3 ms, nearly all of it in
        SQLite's C code). The two thread hand-offs cost more than that: each wakes a thread
        and passes the GIL, and on the 2-core machine they were most of an admitted order's
        CPU at a few hundred orders/s. It waits at most ``INLINE_BUSY_MS`` for a lock held
        by another process (checkpoints are not on this path: kit/sqlite_checkpoint.py),
        then runs in the thread with the full timeout."""
        engine = self.sync_write_engine
        if engine is None:
            async with self.write() as conn:
                return await conn.run_sync(write)
        if self._write_thread is None:
            self._write_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sqlite-write"
            )
            assert self.checkpointer is not None
            self.checkpointer.start()

        def in_thread() -> T:
            with engine.begin() as conn:
                return write(conn)

        async with self._write_turn.hold(background=background):
            if inline:
                try:
                    return self._write_inline(engine, write)
                except sa.exc.OperationalError as exc:
                    if not is_locked(exc):
                        raise
                    # Another process holds the write lock: wait for it off the loop.
            done = asyncio.get_running_loop().run_in_executor(self._write_thread, in_thread)
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                # The transaction still runs in its thread: keep the turn until it ends.
                await asyncio.wait([done])
                raise

    def _write_inline(self, engine: sa.Engine, write: Callable[[sa.Connection], T]) -> T:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
            try:
                with conn.begin():  # BEGIN IMMEDIATE (see _configure_sqlite)
                    return write(conn)
            finally:
                driver.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (rolled back at the end)."""
        async with self.read_engine.connect() as conn:
            yield conn

    async def run_read(self, read: Callable[[sa.Connection], T], *, inline: bool = False) -> T:
        """``read(conn)`` in a read-only transaction, with a synchronous connection.

        For reads of several statements on a hot path. On SQLite the whole of ``read`` runs
        in one worker thread with the sqlite3 driver: one hand-off from the event loop and
        back, where aiosqlite hands every cursor, execute, fetch and close to its thread
        and back (8 hand-offs for one product page, ~2.5 ms in-process). With ``inline``
        (short indexed reads: a catalog page) it runs on the loop's own thread, unless it
        takes longer than ``INLINE_READ_BUDGET_SECONDS``: then it is interrupted and run in
        a thread (kit/sqlite_inline.py). On PostgreSQL it runs on an asyncpg connection
        through ``run_sync``, statement by statement (with ``inline``, each in a
        transaction of its own)."""
        engine = self.sync_read_engine
        if engine is None:
            async with self.read() as conn:
                if inline:
                    # A catalog page's statements need no snapshot of their own: in
                    # autocommit they go without the BEGIN and ROLLBACK round trips (~8 % of
                    # the server's samples under uncached lists on PostgreSQL, py-spy).
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(read)
        if inline and self.inline_read_engine is not None:
            result = read_within(
                self.inline_read_engine, read, budget_seconds=INLINE_READ_BUDGET_SECONDS
            )
            if not isinstance(result, OverBudget):
                return result
            metrics.INLINE_READS_OVER_BUDGET.inc()

        def in_thread() -> T:
            with engine.connect() as conn:
                return read(conn)

        return await asyncio.to_thread(in_thread)

    async def run_log_write(self, write: Callable[[sa.Connection], T]) -> T:
        """``write(conn)`` in a write transaction of the log store (see the class), for its
        occasional writes (its table, replays); batches go through ``log_writer``.

        On SQLite: the log file, in a worker thread, with the sqlite3 driver. On PostgreSQL:
        the shop's database through ``run_sync``."""
        engine = self.log_engine
        if engine is None:
            async with self.write() as conn:
                return await conn.run_sync(write)

        def in_thread() -> T:
            with engine.begin() as conn:
                return write(conn)

        return await asyncio.to_thread(in_thread)

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        if self.log_writer is not None:
            await self.log_writer.close()
        if self._write_thread is not None:
            self._write_thread.shutdown(wait=True)
            self._write_thread = None
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)
        for sync_engine in (
            self.sync_read_engine,
            self.inline_read_engine,
            self.sync_write_engine,
            self.log_engine,
        ):
            if sync_engine is not None:
                sync_engine.dispose()
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def upsert_insert(conn: AsyncConnection | sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT construct, which has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` on both SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
