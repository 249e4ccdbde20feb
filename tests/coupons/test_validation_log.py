"""The asynchronous validation log: the BatchWriter on its own, then the real writer against
real databases: flush by size, by time and on shutdown, the bounded buffer, retries with
backoff, the dead-letter file and its replay by the real CLI, and the counts adding up."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from peakshop.coupons.tasks import (
    ValidationLogRecord,
    append_dead_letters,
    build_validation_log,
    replay_dead_letters,
)
from peakshop.db import Database, log_database_path
from peakshop.kit.batch_writer import MAX_BATCH, BatchWriter
from tests.conftest import ADMIN, make_settings, settings_env
from tests.coupons.support import (
    Client,
    count_rows,
    eventually,
    fetch_rows,
    validate,
    wait_until,
)
from tests.fixtures.factories import time_window_coupon, unique_user, validation_record
from tests.fixtures.processes import server_env
from tests.fixtures.servers import free_port

# --- the BatchWriter on its own (a list as the sink) --------------------------------------------


class Sink:
    """A destination that records every batch, and can fail or hold its writes on demand."""

    def __init__(self, *, failures: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.calls: list[float] = []
        self.failures = failures
        self.gate: asyncio.Event | None = None
        self.dead: list[list[int]] = []
        self.dead_letter_fails = False

    async def write(self, batch: list[int]) -> None:
        self.calls.append(time.monotonic())
        if self.gate is not None:
            await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        self.batches.append(list(batch))

    async def dead_letter(self, batch: list[int]) -> None:
        if self.dead_letter_fails:
            raise OSError("disk full")
        self.dead.append(list(batch))

    @property
    def written(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


def writer_for(sink: Sink, **overrides: Any) -> BatchWriter[int]:
    options: dict[str, Any] = {
        "batch_size": 100,
        "flush_interval": 60.0,
        "max_buffer": 1_000,
        "attempts": 3,
        "retry_base_delay": 0.01,
    }
    options.update(overrides)
    return BatchWriter(name="test", write=sink.write, dead_letter=sink.dead_letter, **options)


def assert_balanced(writer: BatchWriter[Any]) -> None:
    stats = writer.stats()
    assert stats.balanced, stats
    assert stats.emitted == stats.written + stats.dead_lettered + stats.dropped + stats.pending


async def test_flush_by_size_does_not_wait_for_the_interval() -> None:
    sink = Sink()
    writer = writer_for(sink, batch_size=3, flush_interval=60.0)
    writer.start()
    try:
        writer.emit(1)
        writer.emit(2)
        await asyncio.sleep(0.05)  # give the background task every chance to (wrongly) flush
        assert sink.batches == []
        assert writer.stats().pending == 2
        writer.emit(3)
        await wait_until(lambda: sink.written == [1, 2, 3], within=2.0)
        assert writer.written == 3
        assert_balanced(writer)
    finally:
        await writer.close()


async def test_flush_by_time_below_the_batch_size() -> None:
    sink = Sink()
    writer = writer_for(sink, batch_size=1_000, flush_interval=0.1)
    writer.start()
    try:
        started = time.monotonic()
        writer.emit(1)
        writer.emit(2)
        assert sink.batches == []
        await wait_until(lambda: sink.written == [1, 2], within=2.0)
        assert time.monotonic() - started < 1.0
        # The next interval writes what came since, and nothing twice.
        writer.emit(3)
        await wait_until(lambda: sink.written == [1, 2, 3], within=2.0)
        assert_balanced(writer)
    finally:
        await writer.close()


async def test_bounded_buffer_drops_and_counts_the_overflow() -> None:
    sink = Sink()
    writer = writer_for(sink, max_buffer=3)  # not started: nothing leaves the buffer
    assert [writer.emit(n) for n in range(5)] == [True, True, True, False, False]
    stats = writer.stats()
    assert (stats.emitted, stats.pending, stats.dropped, stats.written) == (5, 3, 2, 0)
    assert_balanced(writer)
    await writer.flush()
    assert sink.written == [0, 1, 2]
    # Room again once written.
    assert writer.emit(5) is True
    await writer.close()
    assert sink.written == [0, 1, 2, 5]
    stats = writer.stats()
    assert stats.emitted == stats.written + stats.dead_lettered + stats.dropped == 6
    assert stats.pending == 0


async def test_records_being_written_count_against_the_bound() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    writer = writer_for(sink, max_buffer=3)
    for n in range(3):
        writer.emit(n)
    flushing = asyncio.create_task(writer.flush())
    await wait_until(lambda: bool(sink.calls), within=2.0)
    assert writer.stats().pending == 3  # in flight, not yet written
    assert writer.emit(99) is False
    sink.gate.set()
    await flushing
    assert sink.written == [0, 1, 2]
    assert writer.dropped == 1
    assert_balanced(writer)


async def test_emit_never_blocks_even_while_the_sink_hangs() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()  # the database hangs
    writer = writer_for(sink, batch_size=10, max_buffer=10_000)
    writer.start()
    try:
        started = time.perf_counter()
        for n in range(5_000):
            writer.emit(n)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"5,000 emits took {elapsed:.3f}s"
    finally:
        sink.gate.set()
        await writer.close()
    assert len(sink.written) == 5_000
    assert_balanced(writer)


async def test_failed_flush_is_retried_with_backoff_then_written() -> None:
    sink = Sink(failures=3)
    writer = writer_for(sink, attempts=4, retry_base_delay=0.04)
    for n in range(5):
        writer.emit(n)
    await writer.flush()
    assert sink.written == [0, 1, 2, 3, 4]
    assert len(sink.calls) == 4
    assert writer.flush_failures == 3
    assert (writer.written, writer.dead_lettered, writer.dropped) == (5, 0, 0)
    # Exponential backoff with jitter in [0.5, 1.5): the k-th wait is at least half of
    # base * 2**(k-1), so the gaps grow: >= 0.02, 0.04, 0.08 s.
    gaps = [later - earlier for earlier, later in zip(sink.calls, sink.calls[1:], strict=False)]
    for k, gap in enumerate(gaps, start=1):
        assert gap >= 0.5 * 0.04 * 2 ** (k - 1) * 0.95, gaps
    assert_balanced(writer)


async def test_after_the_last_attempt_the_batch_is_dead_lettered() -> None:
    sink = Sink(failures=10)
    writer = writer_for(sink, attempts=3)
    for n in range(4):
        writer.emit(n)
    await writer.flush()
    assert sink.batches == []
    assert sink.dead == [[0, 1, 2, 3]]
    assert writer.flush_failures == 3
    assert (writer.written, writer.dead_lettered, writer.dropped) == (0, 4, 0)
    assert_balanced(writer)


async def test_a_failing_dead_letter_counts_the_batch_as_dropped() -> None:
    sink = Sink(failures=10)
    sink.dead_letter_fails = True
    writer = writer_for(sink, attempts=2)
    for n in range(4):
        writer.emit(n)
    await writer.flush()
    assert (writer.written, writer.dead_lettered, writer.dropped) == (0, 0, 4)
    assert_balanced(writer)


async def test_close_flushes_everything_and_drops_later_records() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    writer = writer_for(sink, batch_size=3, flush_interval=60.0)
    writer.start()
    for n in range(3):
        writer.emit(n)  # wakes the task: this batch is in flight when close() starts
    await wait_until(lambda: bool(sink.calls), within=2.0)
    writer.emit(3)
    writer.emit(4)
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.01)
    writer.emit(5)  # still accepted while the final flush has not finished
    sink.gate.set()
    await closing
    assert sorted(sink.written) == [0, 1, 2, 3, 4, 5]
    assert writer.emit(6) is False  # after close: dropped and counted
    stats = writer.stats()
    assert (stats.emitted, stats.written, stats.dropped, stats.pending) == (7, 6, 1, 0)
    assert_balanced(writer)


async def test_one_insert_never_carries_more_than_max_batch() -> None:
    sink = Sink()
    writer = writer_for(sink, max_buffer=3 * MAX_BATCH)
    total = 2 * MAX_BATCH + 7
    for n in range(total):
        writer.emit(n)
    await writer.flush()
    assert [len(batch) for batch in sink.batches] == [MAX_BATCH, MAX_BATCH, 7]
    assert sink.written == list(range(total))


# --- the real writer through the app -------------------------------------------------------------


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def _health_log(client: Client) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/health")).json()["validation_log"]
    return body


async def test_app_flushes_by_size(settings: Settings) -> None:
    settings = settings.replace(validation_log_batch_size=5, validation_log_flush_interval=60.0)
    async with running(settings) as client:
        code = (
            await client.post("/api/v1/coupons", json=time_window_coupon(), headers=ADMIN)
        ).json()["code"]
        for _ in range(4):
            await validate(client, code, unique_user())
        log = await _health_log(client)
        assert (log["emitted"], log["pending"], log["written"]) == (4, 4, 0)
        await validate(client, code, unique_user())
        await eventually(lambda: count_rows(settings, "validation_logs"), within=5.0)
        assert await count_rows(settings, "validation_logs") == 5
        assert (await _health_log(client))["written"] == 5


async def test_app_flushes_by_time(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url,
        validation_log_batch_size=1_000,
        validation_log_flush_interval=0.2,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
    )
    async with running(settings) as client:
        for _ in range(3):
            await validate(client, "NO-SUCH-CODE", unique_user())
        await eventually(lambda: count_rows(settings, "validation_logs"), within=5.0)
        assert await count_rows(settings, "validation_logs") == 3


async def test_app_shutdown_flushes_everything(settings: Settings) -> None:
    settings = settings.replace(validation_log_batch_size=1_000, validation_log_flush_interval=60.0)
    users = [unique_user() for _ in range(7)]
    async with running(settings) as client:
        code = (
            await client.post("/api/v1/coupons", json=time_window_coupon(), headers=ADMIN)
        ).json()["code"]
        for user in users:
            await validate(client, code, user, "10.00")
        assert await count_rows(settings, "validation_logs") == 0
        assert (await _health_log(client))["pending"] == 7
        app = client.app
    rows = await fetch_rows(settings, "validation_logs")
    assert [row["user_id"] for row in rows] == users
    assert all(row["code"] == code and row["order_total_cents"] == 1_000 for row in rows)
    assert all(row["valid"] and row["discount_cents"] == 100 for row in rows)
    stats = app.state.runtime.validation_log.stats()
    assert (stats.emitted, stats.written, stats.pending, stats.dropped) == (7, 7, 0, 0)


async def test_app_buffer_overflow_is_dropped_and_counted(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url,
        validation_log_batch_size=1_000,
        validation_log_flush_interval=60.0,
        validation_log_max_buffer=3,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
    )
    async with running(settings) as client:
        for _ in range(5):
            await validate(client, "NO-SUCH-CODE", unique_user())  # each still answered
        health = (await client.get("/health")).json()
        assert health["validation_log_dropped"] == 2
        assert health["validation_log_queue_size"] == 3
        assert health["validation_log"]["balanced"] is True
        app = client.app
    assert await count_rows(settings, "validation_logs") == 3
    stats = app.state.runtime.validation_log.stats()
    assert (stats.emitted, stats.written, stats.dropped, stats.dead_lettered) == (5, 3, 2, 0)


# --- the database unavailable: retries, dead letters, replay -----------------------------------


def log_file(settings: Settings) -> str:
    """The SQLite file the validation log is written to (beside the shop's)."""
    return log_database_path(settings.database_url.split("///", 1)[1])


@contextmanager
def write_locked(path: str) -> Iterator[sqlite3.Connection]:
    """Another process-like connection holds SQLite's write lock until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peakshop", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def run_replay(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `peakshop logs replay`, with the settings as PEAKSHOP_* variables only."""
    env = server_env(settings_env(settings))
    return await asyncio.to_thread(_run_cli, env, "logs", "replay", *args)


def exists(path: Path | str) -> bool:
    return Path(path).exists()


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def as_rows(records: list[ValidationLogRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            r.code,
            r.user_id,
            r.order_total_cents,
            bool(r.valid),
            r.reason,
            r.discount_cents,
            r.latency_us,
        )
        for r in records
    ]


def stored(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["code"], r["user_id"], r["order_total_cents"], bool(r["valid"]), r["reason"],
         r["discount_cents"], r["latency_us"])
        for r in rows
    ]  # fmt: skip


@pytest.fixture
def locked_db_settings(sqlite_url: str, tmp_path: Path) -> Settings:
    # WAL, as the app leaves every database it has opened (WAL mode persists in the file).
    conn = sqlite3.connect(log_database_path(sqlite_url.split("///", 1)[1]))
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.close()
    return make_settings(
        sqlite_url,
        sqlite_busy_timeout_ms=50,
        validation_log_flush_attempts=3,
        validation_log_retry_base_delay=0.02,
        validation_log_dead_letter_path=str(tmp_path / "var" / "dead-letters.jsonl"),
    )


async def test_locked_sqlite_dead_letters_then_cli_replay_inserts(
    locked_db_settings: Settings,
) -> None:
    settings = locked_db_settings
    dead_letters = Path(settings.validation_log_dead_letter_path)
    db = Database(settings)
    writer = build_validation_log(settings, db)
    records = [
        validation_record(valid=False, reason="expired", discount_cents=0),
        validation_record(),
        validation_record(order_total_cents=1, discount_cents=1, latency_us=0),
    ]
    try:
        with write_locked(log_file(settings)):
            for record in records:
                assert writer.emit(record)
            await writer.flush()
            assert writer.flush_failures == 3
            assert (writer.written, writer.dead_lettered, writer.dropped) == (0, 3, 0)
        # Still consistent after the lock is gone: nothing half-written.
        assert await count_rows(settings, "validation_logs") == 0
        lines = read_lines(dead_letters)
        assert [json.loads(line)["user_id"] for line in lines] == [r.user_id for r in records]

        # Records emitted after the outage are written normally.
        late = validation_record()
        writer.emit(late)
        await writer.close()
        assert writer.written == 1
    finally:
        await db.dispose()
    stats = writer.stats()
    assert stats.emitted == stats.written + stats.dead_lettered + stats.dropped == 4

    result = await run_replay(settings)
    assert result.returncode == 0, result.stderr
    assert f"replayed 3 validation log records from {dead_letters}" in result.stdout
    rows = await fetch_rows(settings, "validation_logs")
    assert sorted(stored(rows)) == sorted(as_rows([*records, late]))
    assert not exists(dead_letters)

    # Running it again finds nothing to do and inserts nothing twice.
    again = await run_replay(settings)
    assert again.returncode == 0, again.stderr
    assert "replayed 0" in again.stdout
    assert await count_rows(settings, "validation_logs") == 4


async def test_locked_sqlite_then_released_is_written_on_a_retry(
    locked_db_settings: Settings,
) -> None:
    settings = locked_db_settings.replace(
        validation_log_flush_attempts=5, validation_log_retry_base_delay=0.2
    )
    db = Database(settings)
    writer = build_validation_log(settings, db)
    records = [validation_record() for _ in range(4)]
    try:
        lock = write_locked(log_file(settings))
        lock.__enter__()
        try:
            for record in records:
                writer.emit(record)
            flushing = asyncio.create_task(writer.flush())
            await wait_until(lambda: writer.flush_failures >= 1, within=5.0)
        finally:
            lock.__exit__(None, None, None)
        await flushing
    finally:
        await db.dispose()
    assert (writer.written, writer.dead_lettered, writer.dropped) == (4, 0, 0)
    assert 1 <= writer.flush_failures < 5
    assert not exists(settings.validation_log_dead_letter_path)
    assert sorted(stored(await fetch_rows(settings, "validation_logs"))) == sorted(as_rows(records))


async def test_postgres_down_dead_letters_then_cli_replay_into_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    down = make_settings(
        f"postgresql+asyncpg://postgres:postgres@127.0.0.1:{free_port()}/nowhere",
        validation_log_flush_attempts=2,
        validation_log_retry_base_delay=0.01,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
    )
    db = Database(down)
    writer = build_validation_log(down, db)
    records = [validation_record() for _ in range(3)]
    try:
        for record in records:
            writer.emit(record)
        await writer.close()
    finally:
        await db.dispose()
    assert writer.flush_failures == 2
    stats = writer.stats()
    assert (stats.written, stats.dead_lettered, stats.dropped, stats.pending) == (0, 3, 0, 0)
    assert stats.emitted == stats.written + stats.dead_lettered + stats.dropped

    up = make_settings(postgres_url, validation_log_dead_letter_path=str(tmp_path / "other.jsonl"))
    result = await run_replay(up, "--file", down.validation_log_dead_letter_path)
    assert result.returncode == 0, result.stderr
    assert "replayed 3" in result.stdout
    rows = await fetch_rows(up, "validation_logs")
    assert sorted(stored(rows)) == sorted(as_rows(records))
    created = {row["user_id"]: row["created_at"] for row in rows}
    for record in records:
        assert created[record.user_id] == record.created_at


async def test_failed_replay_can_be_run_again_without_duplicates(
    locked_db_settings: Settings,
) -> None:
    settings = locked_db_settings
    path = Path(settings.validation_log_dead_letter_path)
    first = [validation_record() for _ in range(3)]
    append_dead_letters(path, first)
    db = Database(settings)
    try:
        with write_locked(log_file(settings)), pytest.raises(Exception, match="locked"):
            await replay_dead_letters(db, path)
        # The claimed file survives the failure; new dead letters go to a fresh file.
        later = [validation_record()]
        append_dead_letters(path, later)
        assert await replay_dead_letters(db, path) == 4
        assert await replay_dead_letters(db, path) == 0
    finally:
        await db.dispose()
    assert sorted(stored(await fetch_rows(settings, "validation_logs"))) == sorted(
        as_rows([*first, *later])
    )
    assert not exists(path)
    assert not exists(path.with_name(path.name + ".replaying"))
