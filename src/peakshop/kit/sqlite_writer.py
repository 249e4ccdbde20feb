"""Batch inserts into one SQLite file, done by a child process at idle CPU priority.

Written by hand because what it is for is specific: the validation log's batches (a few ms of
SQLite CPU each, ten a second at 1,000 validations/s) must not touch the serving process's
event loop. In a thread of that process, even at idle priority, they still cost the loop its
GIL at every row and raised the open-loop P99 of validation to ~1.5x the minimal app's; the
same inserts done by another process at idle priority left it where it was with no log at
all (README, Performance). A plain child process on two pipes, rather than a
``multiprocessing`` pool: a spawned pool worker re-imports the parent's ``__main__`` (the
whole server, ~90 MB) and brings a resource-tracker process along; this child imports
msgspec and sqlite3 only (``python -m peakshop.kit.sqlite_writer``).

Protocol: the parent sends ``(sql, rows)`` as one length-prefixed MessagePack message and
waits for ``{"written": n}`` or ``{"error": "..."}``; one batch at a time, one transaction
each. Datetimes are stored as SQLAlchemy stores them on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import struct
import sys
from datetime import datetime
from typing import Any, BinaryIO

import msgspec

# SQLAlchemy's SQLite DateTime stores (and parses back) exactly this text, in UTC.
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_HEADER = struct.Struct("!I")


class SqliteWriteError(Exception):
    """The child's insert failed (its message names SQLite's error); nothing was written."""


class WriterGone(ConnectionError):
    """The child process died or stopped answering; the next batch starts a new one."""


def yield_cpu_to_requests() -> None:
    """Run the calling process only on CPU time nothing else wants (Linux ``SCHED_IDLE``)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: the normal policy
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


# --- the child -----------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    return value.strftime(SQLITE_TIME_FORMAT) if isinstance(value, datetime) else value


def _insert(conn: sqlite3.Connection, sql: str, rows: list[list[Any]]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, [tuple(_stored(v) for v in row) for row in rows])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def _read_message(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None  # the parent closed the pipe: time to go
    return stream.read(_HEADER.unpack(header)[0])


def serve(path: str, busy_timeout_ms: int, cache_mib: int) -> None:
    yield_cpu_to_requests()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    if cache_mib:
        conn.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")  # negative: KiB
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while (message := _read_message(requests)) is not None:
        sql, rows = msgspec.msgpack.decode(message)
        try:
            reply: dict[str, Any] = {"written": _insert(conn, sql, rows)}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        data = msgspec.msgpack.encode(reply)
        answers.write(_HEADER.pack(len(data)) + data)
        answers.flush()
    conn.close()


# --- the parent ----------------------------------------------------------------------------


class SqliteWriterProcess:
    """``await insert(sql, rows)``: the rows written in one transaction by the child, which is
    started at the first batch and again after it died."""

    def __init__(self, path: str, *, busy_timeout_ms: int, cache_mib: int) -> None:
        self._args = (path, str(busy_timeout_ms), str(cache_mib))
        self._process: asyncio.subprocess.Process | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def _started(self) -> asyncio.subprocess.Process:
        process = self._process
        if process is None or process.returncode is not None:
            process = self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        return process

    async def insert(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        payload = msgspec.msgpack.encode((sql, rows))
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            process = await self._started()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(_HEADER.pack(len(payload)) + payload)
                await process.stdin.drain()
                size = _HEADER.unpack(await process.stdout.readexactly(_HEADER.size))[0]
                reply = msgspec.msgpack.decode(await process.stdout.readexactly(size))
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                await self._stop(kill=True)
                raise WriterGone(f"the log writer process ended: {exc!r}") from exc
            except BaseException:
                # Cancelled halfway through an exchange: the pipes are out of step.
                await self._stop(kill=True)
                raise
        if "error" in reply:
            raise SqliteWriteError(reply["error"])
        return int(reply["written"])

    async def _stop(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        if kill:
            process.kill()
        elif process.stdin is not None:
            process.stdin.close()  # the child finishes its batch, sees the end and exits
        try:
            await asyncio.wait_for(process.wait(), timeout=10.0)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        await self._stop(kill=False)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
