"""The scaled queue: one Redis stream and a consumer group.

- publish: XADD; a flash-sale admission's Lua script XADDs the same entry itself.
- receive: XREADGROUP for new entries, and XAUTOCLAIM, at most once a second, for entries a
  consumer took and never acked for longer than the lease (a killed worker).
- ack: XACK and XDEL, so the stream's length is the backlog.
- retry_later: the message waits in a sorted set scored by its due time; a Lua script moves
  due messages back to the stream atomically (no loss, no duplicate between the two).

Durability: an acknowledged order must survive a Redis restart, so run Redis with
``appendonly yes`` and ``appendfsync always`` (or replicas). The jobs table is the outbox
behind it: a sweep republishes jobs whose message was lost anyway (a flush).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from peakshop.jobs.queue import Delivery, JobMessage

STREAM = "peakshop:jobs"
DELAYED = "peakshop:jobs:delayed"
GROUP = "workers"
FIELD = "job"
AUTOCLAIM_EVERY = 1.0  # seconds

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(JobMessage).decode

# KEYS[1] delayed zset, KEYS[2] stream; ARGV[1] now, ARGV[2] batch, ARGV[3] field
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, message in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', ARGV[3], message)
  redis.call('ZREM', KEYS[1], message)
end
return #due
"""


def encode_message(message: JobMessage) -> bytes:
    return _encode(message)


class RedisJobQueue:
    # The admission script XADDs before the API commits the order: hold fresh messages this
    # long, so that the API records the order and the worker does not race it.
    settle_seconds = 0.2

    def __init__(self, client: aioredis.Redis, *, lease_seconds: float) -> None:
        self._client = client
        self._lease_ms = int(lease_seconds * 1000)
        self._move_due = client.register_script(_MOVE_DUE)
        self._last_autoclaim = 0.0

    async def start(self) -> None:
        await self.ensure_group()

    async def ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def close(self) -> None:
        return None

    async def publish(self, message: JobMessage) -> None:
        await self._client.xadd(STREAM, {FIELD: encode_message(message)})

    async def publish_many(self, messages: list[JobMessage]) -> None:
        if not messages:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.xadd(STREAM, {FIELD: encode_message(message)})
            await pipe.execute()

    async def receive(self, *, consumer: str, count: int, wait: float) -> list[Delivery]:
        await self._move_due(keys=[DELAYED, STREAM], args=[time.time(), count, FIELD])
        deliveries: list[Delivery] = []
        now = time.monotonic()
        if now - self._last_autoclaim >= AUTOCLAIM_EVERY:
            self._last_autoclaim = now
            deliveries += await self._autoclaim(consumer, count)
        if len(deliveries) < count:
            try:
                response = await self._client.xreadgroup(
                    GROUP,
                    consumer,
                    {STREAM: ">"},
                    count=count - len(deliveries),
                    # BLOCK 0 would wait forever: none at all when something is in hand.
                    block=None if deliveries else max(1, int(wait * 1000)),
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()  # Redis lost its data: the group is gone too
                return deliveries
            streams: list[Any] = response or []  # type: ignore[assignment]
            for _stream, entries in streams:
                deliveries += self._deliveries(entries)
        return deliveries

    async def _autoclaim(self, consumer: str, count: int) -> list[Delivery]:
        try:
            result = await self._client.xautoclaim(
                STREAM, GROUP, consumer, min_idle_time=self._lease_ms, start_id="0-0", count=count
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return []
        return self._deliveries(result[1])

    def _deliveries(self, entries: list[tuple[str, dict[str, str] | None]]) -> list[Delivery]:
        deliveries = []
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending
                continue
            deliveries.append(Delivery(message=_decode(fields[FIELD]), receipt=entry_id))
        return deliveries

    async def ack(self, delivery: Delivery) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, delivery.receipt)
            pipe.xdel(STREAM, delivery.receipt)
            await pipe.execute()

    async def ack_many(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        receipts = [d.receipt for d in deliveries]
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *receipts)
            pipe.xdel(STREAM, *receipts)
            await pipe.execute()

    async def retry_later(self, delivery: Delivery, *, at: float) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(DELAYED, {encode_message(delivery.message): at})
            pipe.xack(STREAM, GROUP, delivery.receipt)
            pipe.xdel(STREAM, delivery.receipt)
            await pipe.execute()

    async def retry_many(self, deliveries: list[Delivery], *, at: float) -> None:
        if not deliveries:
            return
        receipts = [d.receipt for d in deliveries]
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(DELAYED, {encode_message(d.message): at for d in deliveries})
            pipe.xack(STREAM, GROUP, *receipts)
            pipe.xdel(STREAM, *receipts)
            await pipe.execute()

    async def depth(self) -> int:
        return int(await self._client.xlen(STREAM))
