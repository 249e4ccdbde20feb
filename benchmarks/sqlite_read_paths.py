"""What a catalog page's read costs on SQLite by the path it takes from the event loop: on
the loop's own thread (``Database.run_read(inline=True)``), through one worker thread, and
through asyncio's default executor (what ``run_read`` uses otherwise), 16 reads in flight.

    PEAKSHOP_DATABASE_URL=sqlite+aiosqlite:///var/catalog.db python benchmarks/sqlite_read_paths.py [--reads 4000]

It needs a seeded catalog (``peakshop seed ... --products 100000``). Each read is a first
``price_asc`` page from a random minimum price (an uncached list page); CPU is the
process's, wall is the run's, both per read.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from peakshop.catalog import listing
from peakshop.config import load_settings
from peakshop.db import Database

IN_FLIGHT = 16


async def _measure(label: str, reads: int, one: Callable[[], Awaitable[Any]]) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def gated() -> None:
        async with gate:
            await one()

    for _ in range(2):  # the first pass warms the caches
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(gated() for _ in range(reads)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<28} {cpu / reads * 1e6:7.0f} us CPU {wall / reads * 1e6:7.0f} us wall per read")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=4_000)
    args = parser.parse_args()
    db = Database(load_settings())
    if db.sync_read_engine is None or db.inline_read_engine is None:
        raise SystemExit(
            "a SQLite database is needed (PEAKSHOP_DATABASE_URL=sqlite+aiosqlite:///...)"
        )
    rng = random.Random(1)

    def page(conn: sa.Connection) -> Any:
        filters = listing.Filters(min_price_cents=rng.randrange(1, 20_000), sort="price_asc")
        return listing.cursor_page(conn, filters, path=None, cursor=None, limit=20)

    engine = db.sync_read_engine

    def in_thread() -> Any:
        with engine.connect() as conn:
            return page(conn)

    loop = asyncio.get_running_loop()
    one_thread = ThreadPoolExecutor(1)
    try:
        await _measure("on the loop's thread", args.reads, lambda: db.run_read(page, inline=True))
        await _measure(
            "one worker thread", args.reads, lambda: loop.run_in_executor(one_thread, in_thread)
        )
        await _measure("default executor", args.reads, lambda: db.run_read(page))
    finally:
        one_thread.shutdown()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
