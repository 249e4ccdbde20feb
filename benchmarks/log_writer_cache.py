"""What the validation log writer's SQLite page cache buys: the real child process
(``kit/sqlite_writer.py``) fed batches of 100 log rows (random users among 1M, codes among
5,000, as the validate suite sends them) into a fresh log file, once per cache size; for each,
the child's CPU seconds per batch over the last quarter of the run (the log then holds most
of its rows) and its RSS at the end.

    python benchmarks/log_writer_cache.py [--rows 1000000] [--cache 64 --cache 16 ...] (default 64, 16, 8, 2)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import sqlalchemy as sa

from peakshop.coupons.models import validation_logs
from peakshop.kit.sqlite_writer import SqliteWriterProcess

BATCH = 100
COLUMNS = [c.name for c in validation_logs.columns if c.name != "id"]
INSERT = (
    f"INSERT INTO validation_logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def batch(rng: random.Random, now: datetime) -> list[tuple[object, ...]]:
    return [
        (
            f"CODE{rng.randrange(5000):05d}",
            f"user_{rng.randrange(1_000_000):07d}",
            5000,
            True,
            None,
            500,
            120,
            now,
        )
        for _ in range(BATCH)
    ]


async def run(rows: int, cache_mib: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        validation_logs.create(engine)
        engine.dispose()
        writer = SqliteWriterProcess(str(path), busy_timeout_ms=5000, cache_mib=cache_mib)
        rng = random.Random(7)
        batches = rows // BATCH
        tail_from = batches * 3 // 4
        cpu_at_tail = 0.0
        started = time.perf_counter()
        for n in range(batches):
            if n == tail_from:
                assert writer.pid is not None
                times = psutil.Process(writer.pid).cpu_times()
                cpu_at_tail = times.user + times.system
            await writer.insert(INSERT, batch(rng, datetime.now(UTC)))
        assert writer.pid is not None
        child = psutil.Process(writer.pid)
        times = child.cpu_times()
        result = {
            "cache_mib": cache_mib,
            "seconds": time.perf_counter() - started,
            "tail_cpu_ms_per_batch": (times.user + times.system - cpu_at_tail)
            * 1000
            / (batches - tail_from),
            "rss_mb": child.memory_info().rss / 1e6,
        }
        await writer.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cache", type=int, action="append", help="MiB (repeatable)")
    args = parser.parse_args()
    for cache in args.cache or [64, 16, 8, 2]:
        r = asyncio.run(run(args.rows, cache))
        print(
            f"cache {r['cache_mib']:>3} MiB: {r['seconds']:6.1f} s in all, "
            f"{r['tail_cpu_ms_per_batch']:.2f} ms of the child's CPU a batch in the last "
            f"quarter, RSS {r['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
