"""The embedded queue (the jobs table): a flood of jobs is handed out in batches, not a few
at a time, and nothing is handed out twice while it is in flight."""

from __future__ import annotations

import asyncio
import time

from peakshop.db import Database
from peakshop.jobs import repository
from peakshop.jobs.queue import JobMessage
from peakshop.jobs.queue_sql import LINGER_SECONDS, SqlJobQueue
from peakshop.kit.clock import utcnow
from tests.conftest import make_settings


async def enqueue(db: Database, queue: SqlJobQueue, first: int, count: int) -> None:
    messages = [
        JobMessage(id=f"job_{n:04d}", name="test.noop", payload="{}", max_attempts=1)
        for n in range(first, first + count)
    ]
    async with db.write() as conn:
        await conn.run_sync(
            repository.insert_jobs, messages, now=utcnow(), available_at=time.time()
        )
    await queue.publish_many(messages)


async def test_jobs_arriving_in_a_flood_are_received_as_one_batch(sqlite_url: str) -> None:
    db = Database(make_settings(sqlite_url))
    queue = SqlJobQueue(db)
    try:
        await enqueue(db, queue, 0, 3)

        async def more_while_lingering() -> None:
            await asyncio.sleep(LINGER_SECONDS / 5)
            await enqueue(db, queue, 3, 5)

        arriving = asyncio.create_task(more_while_lingering())
        first = await queue.receive(consumer="c", count=100, wait=1.0)
        await arriving
        # The poll found 3, waited once, and took the 5 that came meanwhile with them.
        assert sorted(d.receipt for d in first) == [f"job_{n:04d}" for n in range(8)]
        await enqueue(db, queue, 8, 2)
        second = await queue.receive(consumer="c", count=100, wait=1.0)
        assert sorted(d.receipt for d in second) == ["job_0008", "job_0009"]  # none twice
        full = await queue.receive(consumer="c", count=100, wait=0.2)
        assert full == []  # everything is in flight in this process
    finally:
        await db.dispose()
