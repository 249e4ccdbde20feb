"""Peak memory of report generation: flat in the number of rows, or not?

    python benchmarks/report_memory.py [--orders 200000 --orders 1000000]
                                       [--database-url URL] [--naive] [--json FILE]

Generates orders into a scratch database (a migrated SQLite file in a temporary directory by
default, or an empty PostgreSQL database given by URL), then writes the sales report over all of
them the way the report job does, under tracemalloc: the peak of traced Python allocations
during the generation is the figure (the process's peak RSS is recorded too, but it also holds
what generating the orders left behind). Each --orders is measured in turn, the orders added up
to that count. ``--naive`` also measures fetching every row at once, for contrast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from peakshop import migrate
from peakshop.bench.report import machine_info, now_iso
from peakshop.config import load_settings
from peakshop.db import Database
from peakshop.jobs.report_files import QUERIES, write_csv
from peakshop.orders.models import orders

INSERT_CHUNK = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ("confirmed", "confirmed", "confirmed", "pending", "cancelled", "failed")


def order_rows(first: int, count: int) -> list[dict[str, Any]]:
    """Orders ``first`` .. ``first + count - 1``: one a second from START, every fifth with a
    coupon."""
    rows = []
    for n in range(first, first + count):
        created = START + timedelta(seconds=n)
        subtotal = 1_000 + n % 9_000
        discount = subtotal // 10 if n % 5 == 0 else 0
        rows.append(
            {
                "id": f"ord_bench{n:016d}",
                "user_id": f"user_{n % 100_000:07d}",
                "kind": "regular",
                "flash_sale_id": None,
                "status": STATUSES[n % len(STATUSES)],
                "subtotal_cents": subtotal,
                "discount_cents": discount,
                "total_cents": subtotal - discount,
                "coupon_code": "BENCH10" if discount else None,
                "idempotency_scope": "orders",
                "idempotency_key": f"bench-{n}",
                "request_hash": "0" * 64,
                "job_id": f"job_bench{n:016d}",
                "failure_reason": None,
                "created_at": created,
                "updated_at": created,
                "pay_by": created + timedelta(minutes=15),
            }
        )
    return rows


async def insert_orders(db: Database, *, first: int, count: int) -> None:
    """Bulk insert (executemany, large transactions), a chunk of rows in memory at a time."""
    for start in range(first, first + count, INSERT_CHUNK):
        size = min(INSERT_CHUNK, first + count - start)
        async with db.write() as conn:
            await conn.execute(sa.insert(orders), order_rows(start, size))


async def measure(db: Database, *, path: Path, naive: bool = False) -> dict[str, Any]:
    """Generate the sales report over every order; the traced peak during the generation."""
    range_to = START + timedelta(days=10_000)
    # Warm-up: imports, the compiled statement and the pools are not what is measured.
    await write_csv(db, report_type="sales", range_from=START, range_to=START, path=path)
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        if naive:
            async with db.read() as conn:
                rows = (await conn.execute(QUERIES["sales"](START, range_to))).all()
            count, size = len(rows), 0
            del rows
        else:
            count, size = await write_csv(
                db, report_type="sales", range_from=START, range_to=range_to, path=path
            )
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {
        "method": "fetch all" if naive else "streamed",
        "rows": count,
        "file_bytes": size,
        "traced_peak_bytes": peak,
        "seconds": round(seconds, 3),
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


async def run(*, counts: list[int], database_url: str | None, naive: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        url = database_url or f"sqlite+aiosqlite:///{scratch}/report-memory.db"
        settings = load_settings(environ={}, database_url=url)
        await migrate.upgrade_async(settings)
        db = Database(settings)
        results = []
        try:
            async with db.read() as conn:
                present = int(
                    (
                        await conn.execute(sa.select(sa.func.count()).select_from(orders))
                    ).scalar_one()
                )
            if present:
                raise SystemExit(f"the database already has {present} orders: give an empty one")
            have = 0
            for count in sorted(counts):
                await insert_orders(db, first=have, count=count - have)
                have = count
                result = await measure(db, path=Path(scratch) / "sales.csv")
                results.append(result)
                print(
                    f"{result['rows']:>9,} orders  streamed: traced peak "
                    f"{result['traced_peak_bytes'] / 2**20:6.2f} MiB, "
                    f"{result['seconds']:6.2f} s, file {result['file_bytes'] / 2**20:.1f} MiB"
                )
                if naive:
                    contrast = await measure(db, path=Path(scratch) / "sales.csv", naive=True)
                    results.append(contrast)
                    print(
                        f"{contrast['rows']:>9,} orders  fetch all: traced peak "
                        f"{contrast['traced_peak_bytes'] / 2**20:6.2f} MiB"
                    )
        finally:
            await db.dispose()
    return {
        "scenario": "report-memory",
        "command": " ".join(["python", *sys.argv]),
        "measured_at": now_iso(),
        "database": "postgresql" if database_url else "sqlite",
        "machine": machine_info(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, action="append", help="orders (repeatable)")
    parser.add_argument("--database-url", help="an empty, migrated-or-not PostgreSQL database")
    parser.add_argument("--naive", action="store_true", help="also measure fetching all rows")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    report = asyncio.run(
        run(
            counts=args.orders or [200_000, 1_000_000],
            database_url=args.database_url,
            naive=args.naive,
        )
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
