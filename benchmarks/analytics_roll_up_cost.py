"""What the analytics' scheduled work and the top-products read cost on a seeded catalog,
in process: the windows' freshness check, the top-products read over a year, one finished
day's roll-up reads (the minutely job re-reads the last few days), and the once-a-day
refresh of the windows (timed first, as the day's first roll-up runs it).

    PEAKSHOP_DATABASE_URL=sqlite+aiosqlite:///var/catalog.db python benchmarks/analytics_roll_up_cost.py [--repeat 5]

It needs a seeded catalog (``peakshop seed --sellers 1000 --products 100000 --orders
1000000``). Wall time per call: the first call of each (cold caches) and the median of the
others. The refresh rewrites the windows: run it on a copy you do not mind being written.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from peakshop.analytics import repository, service, tasks
from peakshop.config import load_settings
from peakshop.db import Database


async def _timed(name: str, repeat: int, call: Callable[[], Awaitable[Any]]) -> None:
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1e3)
    print(f"{name:<36} first {times[0]:8.1f} ms   median {statistics.median(times[1:]):8.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    db = Database(load_settings())
    now = datetime.now(UTC)
    today = now.date()
    yesterday = service.day_start(today - timedelta(days=1))

    async def windows_ending() -> None:
        async with db.read() as conn:
            await repository.windows_ending(conn)

    async def top_products() -> None:
        async with db.read() as conn:
            first = today - timedelta(days=364)
            await service.top_products(conn, first=first, last=today, limit=10, now=now)

    async def day_reads() -> None:
        async with db.read() as conn:
            end = yesterday + timedelta(days=1)
            await repository.totals(conn, yesterday, end)
            await repository.product_totals(conn, yesterday, end)
            await repository.coupon_totals(conn, yesterday, end)

    try:
        # First, as the day's first roll-up does: the reads below then find the windows
        # current (else top products sums a year of daily rows).
        refresh = partial(tasks.refresh_windows, db, today)
        await _timed("refresh of the windows", max(1, args.repeat // 2), refresh)
        await _timed("windows' freshness check", args.repeat, windows_ending)
        await _timed("top products over a year", args.repeat, top_products)
        await _timed("a finished day's roll-up reads", args.repeat, day_reads)
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
