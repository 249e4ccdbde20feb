"""Embedded mode keeps the validation log in a SQLite file of its own (``shop.logs.db``),
written by one thread at idle CPU priority: the migration that moves it there, and what the
separate file is for (a log batch never holds the lock that redemptions need)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from alembic import command
from litestar.testing import AsyncTestClient

from peakshop import migrate
from peakshop.app import create_app
from peakshop.coupons.tasks import build_validation_log
from peakshop.db import Database, log_database_path
from tests.conftest import make_settings
from tests.coupons.support import count_rows, create_coupon, redeem
from tests.fixtures.factories import time_window_coupon, unique_user, validation_record

ROW = (
    "INSERT INTO validation_logs (id, code, user_id, order_total_cents, valid, reason,"
    " discount_cents, latency_us, created_at) VALUES (?, ?, 'user_1', 100, 1, NULL, 0, 7,"
    " '2026-12-01 10:00:00.000000')"
)


def tables(path: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def log_rows(path: str) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT id, code FROM validation_logs ORDER BY id"))


def test_migration_moves_the_log_to_its_file_and_back(tmp_path: Path) -> None:
    shop = str(tmp_path / "shop.db")
    settings = make_settings(f"sqlite+aiosqlite:///{shop}")
    migrate.upgrade(settings, "0007")
    with sqlite3.connect(shop) as conn:
        conn.executemany(ROW, [(1, "A"), (2, "B"), (5, "C")])
    # As if an earlier run had copied one row and stopped before dropping the old table.
    logs = log_database_path(shop)
    assert logs == str(tmp_path / "shop.logs.db")
    with sqlite3.connect(logs) as conn:
        conn.execute(
            "CREATE TABLE validation_logs (id INTEGER PRIMARY KEY, code VARCHAR(64) NOT NULL,"
            " user_id VARCHAR(64) NOT NULL, order_total_cents BIGINT NOT NULL,"
            " valid BOOLEAN NOT NULL, reason VARCHAR(32), discount_cents BIGINT NOT NULL,"
            " latency_us INTEGER NOT NULL, created_at DATETIME NOT NULL)"
        )
        conn.execute(ROW, (1, "A"))

    migrate.upgrade(settings)
    assert "validation_logs" not in tables(shop)
    assert log_rows(logs) == [(1, "A"), (2, "B"), (5, "C")]  # ids kept, none twice

    command.downgrade(migrate.alembic_config(settings.database_url), "0007")
    assert log_rows(shop) == [(1, "A"), (2, "B"), (5, "C")]
    assert log_rows(logs) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")
async def test_log_batches_are_written_by_a_child_process_at_idle_priority(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, sqlite_log_cache_mib=3, sqlite_write_cache_mib=64)
    db = Database(settings)
    writer = build_validation_log(settings, db)
    try:
        for record in (validation_record(), validation_record(valid=False, reason="expired")):
            assert writer.emit(record)
        await writer.flush()
        assert writer.written == 2
        assert db.log_writer is not None and db.log_writer.pid is not None
        pid = db.log_writer.pid
        assert pid != os.getpid()
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the serving process keeps its own
        # its page cache is the log's setting, not the shop's write connections'
        assert psutil.Process(pid).cmdline()[-1] == "3"
    finally:
        await db.dispose()
    assert await count_rows(settings, "validation_logs") == 2
    with pytest.raises(ProcessLookupError):  # closed with the database
        os.kill(pid, 0)


async def test_a_killed_log_writer_process_is_replaced_and_the_batch_retried(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, validation_log_retry_base_delay=0.01)
    db = Database(settings)
    writer = build_validation_log(settings, db)
    try:
        assert writer.emit(validation_record())
        await writer.flush()
        assert db.log_writer is not None and db.log_writer.pid is not None
        first = db.log_writer.pid
        os.kill(first, signal.SIGKILL)
        # At once: the batch meets the dead child (a failure, then the retry) unless its exit
        # was seen first (then a new child takes the batch straight away).
        assert writer.emit(validation_record())
        await writer.flush()
        stats = writer.stats()
        assert (stats.written, stats.dead_lettered, stats.dropped) == (2, 0, 0)
        assert stats.flush_failures <= 1
        assert db.log_writer.pid not in (None, first)
    finally:
        await db.dispose()
    assert await count_rows(settings, "validation_logs") == 2


async def test_a_log_batch_in_progress_does_not_hold_up_redemptions(sqlite_url: str) -> None:
    """The log writer holding its transaction (as a slow batch would) leaves the shop's
    write lock free: a redemption meanwhile answers at once."""
    settings = make_settings(sqlite_url)
    entered = threading.Event()

    def slow_batch(conn: sa.Connection) -> None:
        conn.exec_driver_sql(ROW, (1, "SLOW"))
        entered.set()
        time.sleep(2.0)

    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        coupon = await create_coupon(client, time_window_coupon(usage_limit=10))
        batch = asyncio.ensure_future(app.state.runtime.db.run_log_write(slow_batch))
        assert await asyncio.to_thread(entered.wait, 5.0)
        started = time.monotonic()
        response = await redeem(client, coupon["code"], unique_user(), "order-1", "50.00")
        elapsed = time.monotonic() - started
        assert not batch.done()
        await batch
    assert response.status_code == 201, response.text
    assert elapsed < 1.0, elapsed
