"""What one group commit of flash-sale orders costs SQLite, on the driver path the server uses
(``orders/recording.py``), in a fresh file with the shop's schema:

- the commit's latency (P50, P99, max) with SQLite's own checkpoint every 1,000 pages, as
  before, and with the shop's settings (writers at 10,000 pages, ``WalCheckpointer`` in
  its thread);
- the WAL pages one commit writes, and the CPU per order, by batch size.

    python benchmarks/sqlite_commit_cost.py [--orders 4000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import peakshop.models  # noqa: F401 -- every table on the metadata
from peakshop.db import metadata
from peakshop.jobs.queue import JobMessage
from peakshop.kit.sqlite_checkpoint import (
    WAL_SIZE_LIMIT_BYTES,
    WRITER_CHECKPOINT_PAGES,
    WalCheckpointer,
)
from peakshop.orders.recording import Admitted, _record_plain_batch_on_driver

PAGE_FRAME = 4096 + 24  # a WAL frame: the page and its header


def _orders(count: int) -> list[Admitted]:
    now = datetime.now(UTC)
    batch = []
    for n in range(count):
        order_id = f"ord_{n:016d}"
        payload: dict[str, Any] = {
            "order_id": order_id, "sale_id": 1, "product_id": 1,
            "unit_price_cents": 999, "per_user_limit": 1, "user_id": f"user_{n}",
            "quantity": 1, "idempotency_key": f"key-{n:016d}", "request_hash": "h" * 64,
        }  # fmt: skip
        message = JobMessage(
            id=f"job_{n:016d}", name="orders.process", payload="{}" * 80, max_attempts=5,
            subject=order_id,
        )  # fmt: skip
        batch.append(Admitted(payload=payload, message=message, now=now, pay_by=now))
    return batch


def _fresh_file() -> tuple[Path, sa.Engine]:
    path = Path(tempfile.mkdtemp(prefix="peakshop-commits-")) / "shop.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    return path, engine


def _writer(path: Path, *, autocheckpoint: int) -> tuple[sqlite3.Connection, sa.Connection]:
    """A connection set up as the server's writer, and a SQLAlchemy view of it for the
    recording function (which takes the driver connection from it)."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"isolation_level": None})
    conn = engine.connect()
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    for pragma in (
        "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=OFF",
        f"wal_autocheckpoint={autocheckpoint}", f"journal_size_limit={WAL_SIZE_LIMIT_BYTES}",
    ):  # fmt: skip
        driver.execute(f"PRAGMA {pragma}")
    driver.execute(
        "INSERT INTO flash_sales (id, product_id, price_cents, quantity, remaining, reserved,"
        " sold, per_user_limit, starts_at, ends_at, created_at) VALUES (1, 1, 100, 10000000,"
        " 10000000, 0, 0, 1, '2026-01-01', '2027-01-01', '2026-01-01')"
    )
    return driver, conn


def commit_latency(orders: int, *, checkpointer: bool) -> dict[str, float]:
    path, _ = _fresh_file()
    driver, conn = _writer(path, autocheckpoint=WRITER_CHECKPOINT_PAGES if checkpointer else 1000)
    background = WalCheckpointer(str(path)) if checkpointer else None
    if background is not None:
        background.start()
    seconds = []
    try:
        for item in _orders(orders):
            started = time.perf_counter()
            driver.execute("BEGIN IMMEDIATE")
            assert _record_plain_batch_on_driver(conn, [item])
            driver.execute("COMMIT")
            seconds.append(time.perf_counter() - started)
            time.sleep(0.0005)  # orders arrive, they are not written back to back
    finally:
        if background is not None:
            background.close()
        conn.close()
    seconds.sort()
    return {
        "p50_ms": seconds[len(seconds) // 2] * 1e3,
        "p99_ms": seconds[int(len(seconds) * 0.99)] * 1e3,
        "max_ms": seconds[-1] * 1e3,
    }


def pages_and_cpu(orders: int, batch_size: int) -> dict[str, float]:
    path, _ = _fresh_file()
    driver, conn = _writer(path, autocheckpoint=0)  # the WAL only grows: count its frames
    items = _orders(orders)
    before = os.path.getsize(f"{path}-wal")
    cpu = time.process_time()
    for start in range(0, orders, batch_size):
        driver.execute("BEGIN IMMEDIATE")
        assert _record_plain_batch_on_driver(conn, items[start : start + batch_size])
        driver.execute("COMMIT")
    cpu = time.process_time() - cpu
    commits = -(-orders // batch_size)
    frames = (os.path.getsize(f"{path}-wal") - before) / PAGE_FRAME
    conn.close()
    return {"pages_per_commit": frames / commits, "cpu_us_per_order": cpu / orders * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000)
    args = parser.parse_args()
    for label, with_thread in (("checkpoint in the commit, every 1,000 pages", False),
                               ("WalCheckpointer thread, writers at 10,000", True)):  # fmt: skip
        result = commit_latency(args.orders, checkpointer=with_thread)
        print(
            f"commit of 1 order, {label}: P50 {result['p50_ms']:.2f} ms, "
            f"P99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms"
        )
    for batch_size in (1, 2, 5, 20):
        result = pages_and_cpu(args.orders, batch_size)
        print(
            f"batch of {batch_size:2d}: {result['pages_per_commit']:.1f} WAL pages per commit, "
            f"{result['cpu_us_per_order']:.0f} us of CPU per order"
        )


if __name__ == "__main__":
    main()
