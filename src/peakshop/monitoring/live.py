"""Live events for the dashboard, through Litestar's channels (``litestar.channels``): a
``MemoryChannelsBackend`` in embedded mode, a ``RedisChannelsPubSubBackend`` on the shop's
Redis in scaled mode, so an event published by any process (API or worker) reaches the
WebSocket clients of every API process.

Publishing never waits: ``order_update``, ``stock_changed`` and ``publish`` are plain
function calls that append an encoded frame to a bounded outbox, which a task hands to the
backend in batches (one pipelined round trip for a batch on Redis). Nothing is encoded or
sent while nobody listens: each process knows whether any client is connected anywhere
(its own clients, and in scaled mode the channel's subscriber count on Redis, checked every
second), so a flash sale without a dashboard pays one attribute check per event.

Inventory updates are coalesced: a stock change only marks its sale; every 100 ms the
marked sales are read from the system of record and published, so a sale gets at most ten
updates a second with its latest numbers (in scaled mode a 100 ms slot per sale in Redis
keeps it to ten a second across all processes).

Order updates are sent for every transition up to ``PEAKSHOP_LIVE_ORDER_EVENTS_PER_SECOND``
per process (a flash sale confirms thousands a second; past the rate they are counted in
``peakshop_live_events_dropped_total{where="rate_limit"}``, not sent).

Receiving: one channels subscriber per process, subscribed while the process has clients
(in scaled mode that is what the channel's subscriber count on Redis counts), relays the
events to the process's fan-out (fanout.py), which sends each one to every client from one
place. Slow clients: each WebSocket client has a bounded backlog
(``PEAKSHOP_WS_CLIENT_BACKLOG`` events; what does not fit is not delivered to it). A client
whose backlog overflowed and is still over half full ``PEAKSHOP_WS_SEND_TIMEOUT_SECONDS``
later, or whose single send takes longer than that, is dropped (closed with 1013): it never
slows the others or the server, and a burst that a healthy client drains in time does not
drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from litestar.channels import ChannelsPlugin, Subscriber
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.types import Receive, Send
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from peakshop.config import Settings
from peakshop.inventory import repository as inventory_repository
from peakshop.monitoring import metrics
from peakshop.monitoring.fanout import ConnectedClient, FanOut
from peakshop.monitoring.schemas import Event, EventType, OrderUpdate, SaleStock

if TYPE_CHECKING:
    from peakshop.db import Database

log = structlog.get_logger(__name__)

CHANNEL = "peakshop:live"
OUTBOX_LIMIT = 10_000  # frames waiting for the backend; past it the oldest are dropped
RELAY_LIMIT = 10_000  # frames received and waiting for the fan-out; past it they are dropped
PUBLISH_BATCH = 500
INVENTORY_FLUSH_SECONDS = 0.1  # at most ten inventory updates a second per sale
LISTENERS_CHECK_SECONDS = 1.0
_SLOT_KEY = "peakshop:live:inventory:{sale_id}"

_encode = msgspec.json.Encoder().encode


def encode_event(event_type: EventType, data: Any, at: datetime | None = None) -> bytes:
    return _encode(Event(type=event_type, at=at or datetime.now(UTC), data=data))


class RelaySubscriber(Subscriber):
    """The process's one subscriber: counts what its bounded stream could not take (the
    fan-out drains it at once, so only a starved event loop fills it), and ending the
    subscription never waits on a full one."""

    def put_nowait(self, item: bytes | None) -> bool:
        if super().put_nowait(item):
            return True
        metrics.LIVE_DROPPED_RELAY.inc()
        return False

    async def put(self, item: bytes | None) -> None:
        if item is None:  # the end of the stream: make room rather than wait for it
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self._queue.get_nowait()
            self._queue.put_nowait(None)
            return
        await super().put(item)


class RedisBackend(RedisChannelsPubSubBackend):
    """The pub/sub backend with batched publishing and a listener that outlives a Redis
    restart (the stock one ends its stream on the first connection error)."""

    async def publish_many(self, frames: list[bytes], channel: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for frame in frames:
                pipe.publish(channel, frame)
            await pipe.execute()

    async def listeners(self, channel: str) -> int:
        numbers = await self._redis.pubsub_numsub(channel)
        return int(numbers[0][1]) if numbers else 0

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        delay = 0.1
        while True:
            try:
                async for item in super().stream_events():
                    delay = 0.1
                    yield item
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("live_events_reconnecting", error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class LiveEvents:
    def __init__(self, settings: Settings, db: Database) -> None:
        self._db = db
        self._redis: aioredis.Redis | None = None
        backend: ChannelsBackend
        if settings.redis_url:
            # Its own client: the channels backend reads bytes (no decode_responses), and a
            # pub/sub connection must not have the shop client's read timeout.
            self._redis = aioredis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=2.0, health_check_interval=15
            )
            backend = RedisBackend(redis=self._redis)
        else:
            backend = MemoryChannelsBackend()
        self.backend = backend
        self.plugin = ChannelsPlugin(
            backend,
            arbitrary_channels_allowed=True,  # subscribed on Redis only while clients are here
            subscriber_max_backlog=RELAY_LIMIT,
            subscriber_backlog_strategy="backoff",
            subscriber_class=RelaySubscriber,
        )
        self.fanout = FanOut(
            backlog=settings.ws_client_backlog,
            send_timeout=settings.ws_send_timeout_seconds,
            spread=settings.ws_send_spread_seconds,
        )
        self._relay: tuple[Subscriber, asyncio.Task[None]] | None = None
        self._subscription = asyncio.Lock()
        # Off: never started, so every publish returns at its first check and the WebSocket
        # refuses clients (routes.py).
        self.enabled = settings.monitoring_enabled
        self._remote_listeners = 0
        # Order updates per process and second: a dashboard watches a feed, it cannot read
        # ten thousand lines a second, and every event costs each API process and client.
        self._order_limit = settings.live_order_events_per_second
        self._order_window = 0.0
        self._order_count = 0
        self._outbox: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._dirty_sales: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._failures_logged_at = 0.0

    # --- publishing (never waits) -----------------------------------------------------------

    @property
    def local_clients(self) -> int:
        return len(self.fanout.clients)

    @property
    def listening(self) -> bool:
        return self.local_clients > 0 or self._remote_listeners > 0

    def publish(self, event_type: EventType, data: Any, at: datetime | None = None) -> None:
        if not self.listening or not self._started:
            return
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            metrics.LIVE_DROPPED_OUTBOX.inc()
        self._outbox.append(encode_event(event_type, data, at))
        metrics.LIVE_EVENTS_BY_TYPE[event_type].inc()
        self._wake.set()

    def order_update(self, *, order_id: str, status: str, kind: str, sale_id: int | None) -> None:
        if not self.listening:
            return
        if self._order_limit:
            now = time.monotonic()
            if now - self._order_window >= 1.0:
                self._order_window, self._order_count = now, 0
            if self._order_count >= self._order_limit:
                metrics.LIVE_DROPPED_RATE.inc()
                return
            self._order_count += 1
        self.publish(
            "order-update",
            OrderUpdate(order_id=order_id, status=status, kind=kind, sale_id=sale_id),
        )

    def stock_changed(self, sale_id: int | None) -> None:
        """A sale's stock moved (after the commit): an inventory-update follows within
        100 ms, coalesced with the sale's other changes."""
        if sale_id is not None and self.listening:
            self._dirty_sales.add(sale_id)

    # --- subscribing (the WebSocket handler) -------------------------------------------------

    @contextlib.asynccontextmanager
    async def connect(self, receive: Receive, send: Send) -> AsyncIterator[ConnectedClient]:
        """A WebSocket joins the fan-out until the block ends; ``client.ended`` says when and
        why it is over (it left, it was too slow, the server shuts down)."""
        client = self.fanout.connect(receive, send)
        metrics.LIVE_CLIENTS.inc()
        try:
            if self._started:
                await self._follow_clients()
            yield client
        finally:
            self.fanout.disconnect(client)
            metrics.LIVE_CLIENTS.dec()
            with contextlib.suppress(Exception):  # Redis gone: nothing to unsubscribe from
                await self._follow_clients()

    async def _follow_clients(self) -> None:
        """Subscribed to the channel while this process has clients, not otherwise."""
        async with self._subscription:
            if self.fanout.clients and self._relay is None and self._started:
                subscriber = await self.plugin.subscribe(CHANNEL)
                relay = asyncio.create_task(self._relay_forever(subscriber), name="live-relay")
                self._relay = (subscriber, relay)
            elif not self.fanout.clients and self._relay is not None:
                subscriber, relay = self._relay
                self._relay = None
                relay.cancel()
                await self.plugin.unsubscribe(subscriber, CHANNEL)

    async def _relay_forever(self, subscriber: Subscriber) -> None:
        async for frame in subscriber.iter_events():
            try:
                await self.fanout.deliver(frame)
            except Exception as exc:  # one bad frame must not silence every dashboard
                self._log_failure("live_events_relay_failed", exc)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.plugin.__aenter__()
        self._started = True
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="live-events-publish"),
            asyncio.create_task(self._flush_inventory_forever(), name="live-events-inventory"),
            asyncio.create_task(self.fanout.watch_forever(), name="live-events-watchdog"),
        ]
        if isinstance(self.backend, RedisBackend):
            self._tasks.append(
                asyncio.create_task(self._check_listeners_forever(), name="live-events-listeners")
            )

    async def stop(self) -> None:
        self._started = False
        self.fanout.close_all()  # the WebSocket handlers close their sockets (1001)
        if self._relay is not None:
            self._tasks.append(self._relay[1])  # its subscription ends with the plugin
            self._relay = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.enabled:
            with contextlib.suppress(Exception):
                await self.plugin.__aexit__(None, None, None)
        if self._redis is not None:
            await self._redis.aclose()

    # --- background ---------------------------------------------------------------------------

    async def _publish_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch = [
                    self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))
                ]
                try:
                    if isinstance(self.backend, RedisBackend):
                        await self.backend.publish_many(batch, CHANNEL)
                    else:
                        for frame in batch:
                            await self.backend.publish(frame, [CHANNEL])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    metrics.LIVE_DROPPED_OUTBOX.inc(len(batch))
                    self._log_failure("live_events_publish_failed", exc)
                    await asyncio.sleep(0.5)

    async def _check_listeners_forever(self) -> None:
        assert isinstance(self.backend, RedisBackend)
        while True:
            try:
                self._remote_listeners = await self.backend.listeners(CHANNEL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log_failure("live_events_listeners_check_failed", exc)
            await asyncio.sleep(LISTENERS_CHECK_SECONDS)

    async def _flush_inventory_forever(self) -> None:
        while True:
            await asyncio.sleep(INVENTORY_FLUSH_SECONDS)
            if not self._dirty_sales:
                continue
            due, self._dirty_sales = self._dirty_sales, set()
            try:
                due = await self._claim_slots(due)
                if due:
                    now = datetime.now(UTC)
                    async with self._db.read() as conn:
                        rows = await inventory_repository.active_sale_stock(
                            conn, now=now, sale_ids=sorted(due)
                        )
                    for row in rows:
                        self.publish("inventory-update", SaleStock(*row), now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dirty_sales |= due  # tried again at the next flush
                self._log_failure("live_inventory_flush_failed", exc)

    async def _claim_slots(self, sale_ids: Iterable[int]) -> set[int]:
        """In scaled mode: the sales whose 100 ms slot this process got (the others are
        kept marked for the next flush, so their latest numbers still go out)."""
        wanted = sorted(sale_ids)
        if self._redis is None:
            return set(wanted)
        async with self._redis.pipeline(transaction=False) as pipe:
            for sale_id in wanted:
                pipe.set(
                    _SLOT_KEY.format(sale_id=sale_id),
                    b"1",
                    nx=True,
                    px=int(INVENTORY_FLUSH_SECONDS * 1000),
                )
            granted = await pipe.execute()
        self._dirty_sales.update(s for s, ok in zip(wanted, granted, strict=True) if not ok)
        return {s for s, ok in zip(wanted, granted, strict=True) if ok}

    def _log_failure(self, event: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._failures_logged_at >= 10.0:  # at most one line every 10 s
            self._failures_logged_at = now
            log.warning(event, error=repr(exc))
