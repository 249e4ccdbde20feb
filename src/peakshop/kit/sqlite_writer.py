"""Batch inserts into one SQLite file, done by a child process at idle CPU priority.

Written by hand because what it is for is specific: the validation log's batches (a few ms of
SQLite CPU each, ten a second at 1,000 validations/s) must not touch the serving process's
event loop. In a thread of that process, even at idle priority, they still cost the loop its
GIL at every row and raised the open-loop P99 of validation to ~1.5x the minimal app's;
the same inserts done by another process at idle priority left it where it was with no log
at all (README, Performance). ``concurrent.futures`` gives the process, the pipe and the
error passing; this module adds the idle priority, the one connection and the restart of a
process that died.

The child imports nothing of peakshop's but this module: batches travel as MessagePack bytes
(one C call each way), and datetimes are stored as SQLAlchemy stores them on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

import msgspec

# SQLAlchemy's SQLite DateTime stores (and parses back) exactly this text, in UTC.
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

_connection: sqlite3.Connection | None = None  # the child's one connection


def yield_cpu_to_requests() -> None:
    """Run the calling thread only on CPU time nothing else wants (Linux ``SCHED_IDLE``)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: the normal policy
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _open(path: str, busy_timeout_ms: int, cache_mib: int) -> None:
    global _connection
    yield_cpu_to_requests()
    _connection = sqlite3.connect(path, isolation_level=None)
    _connection.execute("PRAGMA journal_mode=WAL")
    _connection.execute("PRAGMA synchronous=NORMAL")
    _connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if cache_mib:
        _connection.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")


def _stored(value: Any) -> Any:
    return value.strftime(SQLITE_TIME_FORMAT) if isinstance(value, datetime) else value


def _insert(sql: str, payload: bytes) -> int:
    """In the child: one transaction of ``sql`` for every row of the MessagePack payload."""
    assert _connection is not None, "the process was started without its connection"
    rows = [tuple(_stored(v) for v in row) for row in msgspec.msgpack.decode(payload)]
    _connection.execute("BEGIN IMMEDIATE")
    try:
        _connection.executemany(sql, rows)
        _connection.execute("COMMIT")
    except BaseException:
        _connection.execute("ROLLBACK")
        raise
    return len(rows)


class SqliteWriterProcess:
    """``await insert(sql, rows)``: the rows written in one transaction by the child."""

    def __init__(self, path: str, *, busy_timeout_ms: int, cache_mib: int) -> None:
        self._init_args = (path, busy_timeout_ms, cache_mib)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the serving process has threads (the server's, SQLite's).
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_open,
                initargs=self._init_args,
            )
        return self._pool

    async def insert(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        payload = msgspec.msgpack.encode(rows)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor(), _insert, sql, payload
            )
        except BrokenProcessPool:
            # The child died (killed, out of memory): the next batch starts a new one. This
            # batch is reported failed, and the caller's retry writes it.
            self._discard()
            raise

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)
