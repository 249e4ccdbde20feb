"""In-process implementations of the ports (embedded mode: one process holds all hot state)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import structlog

from peakshop.db import Database
from peakshop.jobs.queue_sql import SqlJobQueue
from peakshop.state.memory_sales import MemorySaleCounters
from peakshop.state.ports import MessageHandler, ResyncHandler

log = structlog.get_logger(__name__)


class MemoryUsageCounters:
    def __init__(self) -> None:
        self._totals: dict[int, int] = {}
        self._per_user: dict[tuple[int, str], int] = {}
        self._loaded = False

    async def get(self, coupon_id: int, user_id: str) -> tuple[int, int]:
        return self._totals.get(coupon_id, 0), self._per_user.get((coupon_id, user_id), 0)

    async def record(self, coupon_id: int, user_id: str) -> None:
        self._totals[coupon_id] = self._totals.get(coupon_id, 0) + 1
        key = (coupon_id, user_id)
        self._per_user[key] = self._per_user.get(key, 0) + 1

    async def release(self, coupon_id: int, user_id: str) -> None:
        self._totals[coupon_id] = max(0, self._totals.get(coupon_id, 0) - 1)
        key = (coupon_id, user_id)
        self._per_user[key] = max(0, self._per_user.get(key, 0) - 1)

    async def load(
        self, *, totals: dict[int, int], per_user: Iterable[tuple[int, str, int]]
    ) -> None:
        self._totals = dict(totals)
        self._per_user = {(coupon_id, user): count for coupon_id, user, count in per_user}
        self._loaded = True

    async def is_loaded(self) -> bool:
        return self._loaded


class MemoryBroadcast:
    def __init__(self) -> None:
        self._handlers: dict[str, list[MessageHandler]] = defaultdict(list)

    async def publish(self, channel: str, message: str) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                await handler(message)
            except Exception:  # a failing subscriber must not fail the publisher's request
                log.exception("broadcast_handler_failed", channel=channel)

    def subscribe(
        self, channel: str, handler: MessageHandler, *, on_resync: ResyncHandler | None = None
    ) -> None:
        self._handlers[channel].append(handler)

    async def start(self) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        self._handlers.clear()


class MemoryState:
    def __init__(self, db: Database) -> None:
        self.counters = MemoryUsageCounters()
        self.broadcast = MemoryBroadcast()
        self.sales = MemorySaleCounters()
        # The queue is the system of record's jobs table (durable in the SQLite file).
        self.queue = SqlJobQueue(db)

    async def start(self) -> None:
        await self.broadcast.start()
        await self.queue.start()

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        await self.broadcast.close()
