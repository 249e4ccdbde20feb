"""What SQLite's CHECK constraints cost the seed's insert of orders: the seed's own statement
and row shape (``bench/seed_catalog_store.py``) into the shop's orders table, in a fresh file
each time, with the checks on and off (``PRAGMA ignore_check_constraints``), alternating.

    python benchmarks/sqlite_check_cost.py [--orders 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import peakshop.models  # noqa: F401 -- every table on the metadata
from peakshop.bench.seed_catalog_store import CHUNK, SQLITE_INSERT_ORDER
from peakshop.bench.seed_store import check_constraints_hold
from peakshop.db import metadata
from peakshop.orders.models import orders as orders_table

STAMP = "2026-01-01 10:00:00.000000"
PAY_BY = "2026-01-01 10:15:00.000000"


def insert_seconds(count: int, *, checks: bool) -> tuple[float, float]:
    """Seconds to insert ``count`` orders, and to check them afterwards in one scan."""
    rows = [
        (f"ord_seed{n:08d}", f"user_{n * 7919 % 1_000_000:07d}", "confirmed", 1234, None,
         STAMP, PAY_BY)
        for n in range(count)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checks.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        metadata.create_all(engine, tables=[metadata.tables["flash_sales"], orders_table])
        engine.dispose()
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for index in orders_table.indexes:  # the seed builds them after the load
                conn.execute(f"DROP INDEX {index.name}")
            conn.execute(f"PRAGMA ignore_check_constraints={'OFF' if checks else 'ON'}")
            conn.execute("BEGIN")
            started = time.perf_counter()
            for start in range(0, count, CHUNK):
                conn.executemany(SQLITE_INSERT_ORDER, rows[start : start + CHUNK])
            inserted = time.perf_counter() - started
            started = time.perf_counter()
            check_constraints_hold(conn, orders_table)
            checked = time.perf_counter() - started
            conn.execute("COMMIT")
        finally:
            conn.close()
    return inserted, checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for checks in (True, False):
            inserted, checked = insert_seconds(args.orders, checks=checks)
            print(
                f"checks {'on ' if checks else 'off'}: insert {inserted:6.2f} s "
                f"({inserted / args.orders * 1e6:5.2f} us a row), one scan after {checked:5.2f} s"
            )


if __name__ == "__main__":
    main()
