"""Where a flash sale's open-loop latency tail lies in time: the hyper scenario's attempts
(10,000 units, one attempt per buyer) sent at a fixed rate to a spawned ``peakshop serve``,
every latency recorded from its scheduled send time, then P50/P99 by window of send time
and each window's share of the run's slowest 1 %.

    PEAKSHOP_DATABASE_URL=sqlite+aiosqlite:///var/timeline.db python benchmarks/flash_open_timeline.py [--attempts 50000] [--rate 1000] [--window 2.5]

Run ``peakshop db upgrade`` on that database first. One sender process with aiohttp (at
1,000/s it keeps to its schedule on the 2-core machine); ``peakshop bench flash-sale
--rate`` gives the run's official figures, this only where in the run its tail falls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time

import aiohttp

from peakshop.bench.flash_sale_check import attempts, create_sale
from peakshop.bench.servers import spawn_peakshop
from peakshop.config import load_settings

UNITS = 10_000
WARM_ATTEMPTS = 500
# (scheduled offset s, latency s, status) of one attempt
Record = tuple[float, float, int]
# the records, and how late the sender sent each attempt (s)
Run = tuple[list[Record], list[float]]


async def drive(url: str, token: str, sale_id: int, count: int, rate: float) -> Run:
    """The records of ``count`` attempts sent at ``rate`` a second, and how late this
    sender's own loop ran (a stall here would show as server latency)."""
    bodies, headers = attempts(sale_id, count=count, users=count, tag=f"t{sale_id}")
    base = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    path = f"{url}/api/v1/flash-sales/{sale_id}/orders"
    records: list[Record] = []
    stalls: list[float] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        # What lives through the run (bodies, headers, the session) out of the collector's
        # sight, and no finished task kept: full collections over a growing heap paused this
        # sender for 90-200 ms every ~15 s, which read as server stalls.
        gc.collect()
        gc.freeze()
        start = time.monotonic() + 0.2

        async def one(index: int, scheduled: float) -> None:
            headers_of = {**base, **headers[index]}
            async with session.post(path, data=bodies[index], headers=headers_of) as response:
                await response.read()
            records.append((scheduled - start, time.monotonic() - scheduled, response.status))

        in_flight: set[asyncio.Task[None]] = set()
        for index in range(count):
            scheduled = start + index / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            stalls.append(time.monotonic() - scheduled)
            task = asyncio.create_task(one(index, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
        gc.unfreeze()
    return records, stalls


def report(records: list[Record], stalls: list[float], window: float) -> None:
    latencies = sorted(r[1] for r in records)

    def at(values: list[float], share: float) -> float:
        return values[min(len(values) - 1, int(share * len(values)))] * 1e3

    tail = at(latencies, 0.99) / 1e3
    admitted = sum(r[2] == 202 for r in records)
    print(f"all: {len(latencies)} attempts, {admitted} admitted; P50 {at(latencies, 0.5):.1f} "
          f"ms, P95 {at(latencies, 0.95):.1f} ms, P99 {at(latencies, 0.99):.1f} ms")  # fmt: skip
    windows: dict[int, list[Record]] = {}
    for record in records:
        windows.setdefault(int(record[0] // window), []).append(record)
    slowest = sum(1 for value in latencies if value >= tail)
    late = sorted(stalls)
    print(f"the sender sent late by: P99 {at(late, 0.99):.1f} ms, max {late[-1] * 1e3:.1f} ms")
    for number in sorted(windows):
        group = windows[number]
        values = sorted(r[1] for r in group)
        print(
            f"{number * window:6.2f} s  admitted {sum(r[2] == 202 for r in group):5d}  "
            f"P50 {at(values, 0.5):6.1f} ms  P99 {at(values, 0.99):6.1f} ms  "
            f"share of the slowest 1 % {sum(v >= tail for v in values) / slowest:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--window", type=float, default=2.5, help="seconds of send time")
    args = parser.parse_args()
    settings = load_settings()
    with spawn_peakshop(env=dict(os.environ)) as server:
        # A warm-up on a sale of its own, as `peakshop bench flash-sale` does.
        warm = asyncio.run(
            create_sale(server.url, settings.admin_token, quantity=100, per_user_limit=1)
        )
        asyncio.run(drive(server.url, settings.service_token, warm, WARM_ATTEMPTS, 200.0))
        sale = asyncio.run(
            create_sale(server.url, settings.admin_token, quantity=UNITS, per_user_limit=1)
        )
        records, stalls = asyncio.run(
            drive(server.url, settings.service_token, sale, args.attempts, args.rate)
        )
    report(records, stalls, args.window)


if __name__ == "__main__":
    main()
