"""The embedded queue: the ``jobs`` table itself. A worker polls for due rows; a publish in
this process wakes it at once, so a job enqueued by a request starts without waiting for the
poll. Claiming (the conditional update that makes one worker own a job) is the worker's
``start`` step, the same in both modes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial

from peakshop.db import Database
from peakshop.jobs import repository
from peakshop.jobs.queue import Delivery, JobMessage

POLL_INTERVAL = 0.5  # seconds: due retries and jobs of other processes are found this fast
# A poll that finds fewer rows than asked waits this long once and looks again, so that jobs
# arriving in a flood (a flash sale's group commits every few ms) are worked in batches of
# up to ``count``, not a few at a time: each batch costs a dozen statements whatever its
# size, and with batches of a few orders the worker took ~0.9 ms of CPU per order.
LINGER_SECONDS = 0.05


class SqlJobQueue:
    settle_seconds = 0.0  # a row is committed before anyone can see it

    def __init__(self, db: Database) -> None:
        self._db = db
        self._wake = asyncio.Event()
        # Delivered in this process and not yet acked: not handed out twice meanwhile.
        self._in_flight: set[str] = set()

    async def start(self) -> None:
        self._wake.set()  # look at once: jobs may have waited while no process ran

    async def close(self) -> None:
        self._wake.set()

    async def publish(self, message: JobMessage) -> None:
        self._wake.set()

    async def publish_many(self, messages: list[JobMessage]) -> None:
        self._wake.set()

    async def receive(self, *, consumer: str, count: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        lingered = False
        while True:
            self._wake.clear()
            rows = await self._db.run_read(
                partial(
                    repository.due_jobs, now=time.time(), limit=count, exclude=set(self._in_flight)
                )
            )
            if rows and len(rows) < count and not lingered:
                lingered = True
                await asyncio.sleep(LINGER_SECONDS)
                continue
            if rows:
                deliveries = [
                    Delivery(message=repository.message_of(row), receipt=row["id"]) for row in rows
                ]
                self._in_flight.update(d.receipt for d in deliveries)
                return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(remaining, POLL_INTERVAL))

    async def ack(self, delivery: Delivery) -> None:
        self._in_flight.discard(delivery.receipt)

    async def ack_many(self, deliveries: list[Delivery]) -> None:
        self._in_flight.difference_update(d.receipt for d in deliveries)

    async def retry_later(self, delivery: Delivery, *, at: float) -> None:
        # The row's available_at (written by the worker) is the schedule.
        self._in_flight.discard(delivery.receipt)

    async def retry_many(self, deliveries: list[Delivery], *, at: float) -> None:
        self._in_flight.difference_update(d.receipt for d in deliveries)

    async def depth(self) -> int:
        async with self._db.read() as conn:
            return await repository.count_waiting(conn, now=time.time())
