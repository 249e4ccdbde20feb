"""Redis implementations of the ports (scaled mode: state shared by every API process).

Every key of one coupon shares a hash tag (``{cpn:ID}``) so the layout works on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable

import structlog
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from peakshop.jobs.queue_redis import RedisJobQueue
from peakshop.state.ports import MessageHandler, ResyncHandler
from peakshop.state.redis_sales import RedisSaleCounters

log = structlog.get_logger(__name__)

PREFIX = "peakshop:"
TOTAL_FIELD = "__total__"  # user ids never contain underscores at both ends like this
LOADED_KEY = PREFIX + "coupons:counters-loaded"
POOL_SIZE = 128  # connections per process; Redis serves tens of thousands
POOL_WAIT_SECONDS = 5.0


def _coupon_key(coupon_id: int) -> str:
    return f"{PREFIX}{{cpn:{coupon_id}}}:usage"


class RedisUsageCounters:
    """One hash per coupon: the total under ``__total__`` and one field per user, so the hot
    path reads both with a single HMGET."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def get(self, coupon_id: int, user_id: str) -> tuple[int, int]:
        total, mine = await self._client.hmget(_coupon_key(coupon_id), [TOTAL_FIELD, user_id])
        return int(total or 0), int(mine or 0)

    async def record(self, coupon_id: int, user_id: str) -> None:
        key = _coupon_key(coupon_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, TOTAL_FIELD, 1)
            pipe.hincrby(key, user_id, 1)
            await pipe.execute()

    async def release(self, coupon_id: int, user_id: str) -> None:
        key = _coupon_key(coupon_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, TOTAL_FIELD, -1)
            pipe.hincrby(key, user_id, -1)
            await pipe.execute()

    async def load(
        self, *, totals: dict[int, int], per_user: Iterable[tuple[int, str, int]]
    ) -> None:
        grouped: dict[int, dict[str, int]] = defaultdict(dict)
        for coupon_id, total in totals.items():
            grouped[coupon_id][TOTAL_FIELD] = total
        for coupon_id, user_id, count in per_user:
            grouped[coupon_id][user_id] = count
        existing = [key async for key in self._client.scan_iter(match=f"{PREFIX}{{cpn:*}}:usage")]
        async with self._client.pipeline(transaction=False) as pipe:
            for key in existing:
                pipe.delete(key)
            for coupon_id, fields in grouped.items():
                pipe.hset(_coupon_key(coupon_id), mapping=fields)  # type: ignore[arg-type]
            pipe.set(LOADED_KEY, "1")
            await pipe.execute()

    async def is_loaded(self) -> bool:
        return bool(await self._client.exists(LOADED_KEY))


class RedisBroadcast:
    """Redis pub/sub with automatic reconnection; after each (re)subscription the resync
    handlers run, because messages published while disconnected are lost."""

    def __init__(self, url: str, client: aioredis.Redis) -> None:
        self._url = url
        self._client = client
        self._handlers: dict[str, list[MessageHandler]] = defaultdict(list)
        self._resyncs: list[ResyncHandler] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closing = False

    async def publish(self, channel: str, message: str) -> None:
        await self._client.publish(PREFIX + channel, message)

    def subscribe(
        self, channel: str, handler: MessageHandler, *, on_resync: ResyncHandler | None = None
    ) -> None:
        self._handlers[PREFIX + channel].append(handler)
        if on_resync is not None:
            self._resyncs.append(on_resync)

    async def start(self) -> None:
        if self._handlers and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="redis-broadcast")
            # Wait (briefly) for the first subscription so that no change is missed after start.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout=5)

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        # Left on the flag too, not only on the cancellation: a cancellation that a client
        # library turns into a connection error would otherwise read as a lost connection,
        # and the loop would reconnect instead of ending (a shutdown waiting for it forever).
        while not self._closing:
            # A dedicated connection without a read timeout: pub/sub connections sit idle.
            subscriber = aioredis.Redis.from_url(self._url, decode_responses=True)
            pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)
                if not first:
                    for resync in self._resyncs:
                        await resync()
                first = False
                delay = 0.1
                self._subscribed.set()
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    for handler in self._handlers.get(message["channel"], ()):
                        try:
                            await handler(message["data"])
                        except Exception:
                            log.exception("broadcast_handler_failed", channel=message["channel"])
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self._closing:
                    return
                log.warning("redis_pubsub_reconnecting", error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await subscriber.aclose()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class RedisState:
    def __init__(self, url: str, *, lease_seconds: float = 30.0) -> None:
        # After a Redis restart every pooled connection is dead: retry once on a new one, or the
        # first command on each fails (a 500 from validation, a lost broadcast). from_url sets no
        # retry by default. Connection errors only: a command that timed out may have run.
        #
        # A blocking pool: past max_connections a command waits for a connection (up to the
        # timeout) instead of failing at once, as the default pool does; a burst of
        # admissions larger than the pool would otherwise turn into 500s.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_SECONDS,
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.counters = RedisUsageCounters(self.client)
        self.broadcast = RedisBroadcast(url, self.client)
        self.sales = RedisSaleCounters(self.client)
        self.queue = RedisJobQueue(self.client, lease_seconds=lease_seconds)

    async def start(self) -> None:
        await self.broadcast.start()
        await self.queue.start()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self.broadcast.close()
        await self.client.aclose()
