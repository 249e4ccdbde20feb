"""The two-level cache: L1 in the process (cache_l1), L2 in Redis in scaled mode (cache_redis).

``body = await cache.get_or_load(key, tags=[...], load=..., ttl=...)`` answers from L1, else
from L2, else runs ``load`` once for every concurrent caller of the key (single flight) and
stores its bytes in both levels. ``await cache.invalidate(*tags)``, after a write's commit,
drops every entry stored under one of the tags: in this process at once, in L2 before it
returns, in every other process through the broadcast (Redis pub/sub).

No stale store: a load records nothing if one of its tags was invalidated while it ran (the
reader that read the database before a write committed, and finishes after the write's
invalidation). In the process each load in flight is marked when one of its tags is
invalidated (a per-load flag rather than per-tag counters: it needs no table of every tag
ever seen); in Redis the tag versions are checked by the storing script (cache_redis).

Redis down or slow: L2 calls time out quickly, the circuit breaker skips L2, and the cache
serves from L1 and the loads, never raising for it. While L2 or the broadcast is unhealthy
(this process's own heartbeat, published every ``TICK_SECONDS``, has not come back), other
processes' invalidations may not reach this one, so L1 entries live at most
``DEGRADED_L1_SECONDS``. Invalidations that could not be written to L2 are replayed before
L2 is used again; a broadcast resync (after a reconnection) clears L1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec
import structlog

from peakshop.config import Settings
from peakshop.monitoring import metrics
from peakshop.state.cache_l1 import L1
from peakshop.state.cache_redis import L2Unavailable, RedisL2
from peakshop.state.ports import Broadcast

log = structlog.get_logger(__name__)

CHANNEL = "cache"
DEGRADED_L1_SECONDS = 1.0
TICK_SECONDS = 0.25  # heartbeat, and probe of an open circuit
BEAT_TIMEOUT_SECONDS = 1.0  # no own heartbeat back for this long: the broadcast is unhealthy
L2_RETRY_SECONDS = 2.0  # an open circuit is probed after this long
MAX_PENDING_TAGS = 10_000  # beyond this, recovery drops the whole L2 instead of replaying
CLEAR_TIMEOUT_SECONDS = 30.0
REPLAY_BATCH = 500  # tags per replayed invalidation (a script with 2 keys per tag)

Load = Callable[[], Awaitable[bytes]]


class _Note(msgspec.Struct, omit_defaults=True):
    """A broadcast message: tags invalidated, everything dropped, or a heartbeat."""

    origin: str
    tags: list[str] = []
    clear: bool = False
    beat: bool = False


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Note).decode


class LevelStats(msgspec.Struct):
    hits: int
    misses: int
    evictions: int
    hit_rate: float | None  # hits / lookups of this level; None before any


class CacheStats(msgspec.Struct):
    hit_rate: float | None  # lookups answered without running a load
    l1: LevelStats
    l2: LevelStats | None  # None: no L2 (embedded mode)
    l1_entries: int
    loads: int
    load_errors: int
    l2_healthy: bool | None  # None: no L2
    broadcast_healthy: bool | None
    degraded: bool  # L2 or the broadcast unhealthy: L1 entries live at most 1 s
    pending_invalidations: int  # tags to replay into L2 when Redis is back


class _Flight:
    __slots__ = ("stale", "tags", "task")

    def __init__(self, tags: tuple[str, ...]) -> None:
        self.tags = tags
        self.stale = False  # one of its tags was invalidated: its result is not stored
        self.task: asyncio.Task[bytes] | None = None


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


class Cache:
    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        l2: RedisL2 | None = None,
        broadcast: Broadcast | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if (l2 is None) != (broadcast is None):
            raise ValueError("L2 and the broadcast go together (scaled mode) or not at all")
        self._l1 = L1(max_entries)
        self._ttl = ttl
        self._l2 = l2
        self._broadcast = broadcast
        self._origin = uuid.uuid4().hex
        self._flights: dict[str, _Flight] = {}
        self._pending: set[str] = set()
        self._pending_all = False
        self._beat_seen = float("-inf")  # monotonic; none yet: unhealthy until the first
        self._first_beat = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._counts = dict.fromkeys(
            ("l1_hit", "l1_miss", "l1_evict", "l2_hit", "l2_miss", "load", "load_error"), 0
        )
        self._metric = {
            "l1_hit": metrics.CACHE_REQUESTS.labels("l1", "hit"),
            "l1_miss": metrics.CACHE_REQUESTS.labels("l1", "miss"),
            "l2_hit": metrics.CACHE_REQUESTS.labels("l2", "hit"),
            "l2_miss": metrics.CACHE_REQUESTS.labels("l2", "miss"),
        }
        self._l1_evictions = metrics.CACHE_EVICTIONS.labels("l1")
        self._l1_latency = metrics.CACHE_LATENCY.labels("l1")
        self._load_latency = metrics.CACHE_LATENCY.labels("load")
        if broadcast is not None:
            # Here, not in start(): the broadcast only listens to the channels subscribed
            # before it starts.
            broadcast.subscribe(CHANNEL, self._on_message, on_resync=self._on_resync)

    # --- reads --------------------------------------------------------------------------------

    async def get_or_load(
        self, key: str, *, tags: Iterable[str], load: Load, ttl: float | None = None
    ) -> bytes:
        started = time.perf_counter()
        now = time.monotonic()
        value = self._l1.get(key, now, DEGRADED_L1_SECONDS if self._degraded(now) else None)
        self._l1_latency.observe(time.perf_counter() - started)
        if value is not None:
            self._count("l1_hit")
            return value
        self._count("l1_miss")
        flight = self._flights.get(key)
        if flight is None or flight.stale:  # a stale flight's result predates a write: not joined
            if ttl is not None and ttl <= 0:
                raise ValueError("ttl must be positive")
            flight = _Flight(tuple(dict.fromkeys(tags)))
            self._flights[key] = flight
            flight.task = asyncio.create_task(self._fill(key, flight, load, ttl or self._ttl))
        assert flight.task is not None
        # Shielded: a caller that goes away (client disconnected) does not cancel the others'.
        return await asyncio.shield(flight.task)

    def peek(self, key: str) -> bytes | None:
        """An L1 hit, counted as one, or None (not counted: the caller then goes through
        get_or_load, which counts the miss). For a response served before any parsing."""
        now = time.monotonic()
        value = self._l1.get(key, now, DEGRADED_L1_SECONDS if self._degraded(now) else None)
        if value is not None:
            self._count("l1_hit")
        return value

    def alias(self, alias: str, key: str) -> None:
        """Make ``key``'s L1 entry findable under ``alias`` (e.g. the raw request) as well.
        A load that a write made stale was never stored under ``key``, so it gets no alias."""
        evicted = self._l1.alias(alias, key)
        if evicted:
            self._counts["l1_evict"] += evicted
            self._l1_evictions.inc(evicted)

    async def _fill(self, key: str, flight: _Flight, load: Load, ttl: float) -> bytes:
        try:
            l2, versions = self._l2, None
            if l2 is not None and l2.healthy:
                try:
                    value, versions = await l2.fetch(key, flight.tags)
                except L2Unavailable:
                    versions = None
                else:
                    if value is not None:
                        self._count("l2_hit")
                        if not flight.stale:
                            self._put(key, value, flight.tags, ttl)
                        return value
                    self._count("l2_miss")
            started = time.perf_counter()
            self._counts["load"] += 1
            try:
                value = await load()
            except Exception:
                self._counts["load_error"] += 1
                raise
            finally:
                self._load_latency.observe(time.perf_counter() - started)
            if flight.stale:
                return value
            if l2 is not None and versions is not None:
                with contextlib.suppress(L2Unavailable):
                    if not await l2.store(key, value, flight.tags, versions, ttl):
                        return value  # a tag was invalidated elsewhere since the load began
                if flight.stale:
                    return value
            self._put(key, value, flight.tags, ttl)
            return value
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _put(self, key: str, value: bytes, tags: tuple[str, ...], ttl: float) -> None:
        evicted = self._l1.put(key, value, tags, ttl, time.monotonic())
        if evicted:
            self._counts["l1_evict"] += evicted
            self._l1_evictions.inc(evicted)

    def _count(self, name: str) -> None:
        self._counts[name] += 1
        self._metric[name].inc()

    # --- invalidation -------------------------------------------------------------------------

    async def invalidate(self, *tags: str) -> None:
        """Drop every entry stored under one of ``tags``, in every level and process. Call it
        after the write's commit; when it returns, reads in this process see the write."""
        unique = list(dict.fromkeys(tags))
        if not unique:
            return
        self._drop_local(unique)
        if self._l2 is None:
            return
        # Tried even with the circuit open (writes are rare; a read would pay nothing): the
        # sooner L2 and the other processes drop the entries, the sooner they see the write.
        try:
            await self._l2.invalidate(unique, force=True)
            await self._publish(_Note(self._origin, tags=unique))
        except L2Unavailable:
            self._defer(unique)

    def _drop_local(self, tags: Sequence[str]) -> None:
        dropped = set(tags)
        for flight in self._flights.values():
            if not flight.stale and not dropped.isdisjoint(flight.tags):
                flight.stale = True
        self._l1.drop_tags(tags)

    def _drop_all(self) -> None:
        for flight in self._flights.values():
            flight.stale = True
        self._l1.clear()

    def _defer(self, tags: Sequence[str]) -> None:
        """Keep tags that did not reach L2 or the broadcast for the recovery, and skip L2 until
        they are replayed (it may hold their stale entries)."""
        assert self._l2 is not None
        if not self._pending_all:
            self._pending.update(tags)
            if len(self._pending) > MAX_PENDING_TAGS:
                self._pending_all = True
                self._pending.clear()
        self._l2.trip()

    async def _publish(self, note: _Note, *, seconds: float | None = None) -> None:
        assert self._broadcast is not None and self._l2 is not None
        try:
            async with asyncio.timeout(seconds or self._l2.timeout):
                await self._broadcast.publish(CHANNEL, _encode(note).decode())
        except Exception as exc:
            raise L2Unavailable(f"broadcast: {exc!r}") from exc

    async def _on_message(self, raw: str) -> None:
        note = _decode(raw)
        if note.origin == self._origin:
            if note.beat:
                self._beat_seen = time.monotonic()
                self._first_beat.set()
            return  # our own invalidations were applied here before they were published
        if note.clear:
            self._drop_all()
        elif note.tags:
            self._drop_local(note.tags)

    async def _on_resync(self) -> None:
        log.info("cache_l1_cleared_on_resync")  # messages may have been lost meanwhile
        self._drop_all()

    # --- health and recovery ------------------------------------------------------------------

    def _broadcast_healthy(self, now: float) -> bool:
        return now - self._beat_seen < BEAT_TIMEOUT_SECONDS

    def _degraded(self, now: float) -> bool:
        return self._l2 is not None and not (self._l2.healthy and self._broadcast_healthy(now))

    async def start(self) -> None:
        if self._l2 is None:
            metrics.CACHE_L2_HEALTHY.set(1)  # embedded: nothing to degrade
            return
        with contextlib.suppress(L2Unavailable):  # tripped: the maintenance task probes it
            await self._l2.warm_up(seconds=BEAT_TIMEOUT_SECONDS)
        self._task = asyncio.create_task(self._maintain(), name="cache-maintain")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_beat.wait(), timeout=BEAT_TIMEOUT_SECONDS)
        self._report()

    async def _maintain(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:
                log.exception("cache_maintenance_failed")
            await asyncio.sleep(TICK_SECONDS)

    async def _tick(self) -> None:
        assert self._l2 is not None
        # With invalidations to replay, every tick: until they are, other processes may read
        # their stale entries from L2 (a probe in the background costs no request anything).
        if self._l2.retry_due() or (not self._l2.healthy and (self._pending or self._pending_all)):
            await self._recover()
        with contextlib.suppress(L2Unavailable):
            # Not on a request's path: a slow beat is not a lost one.
            await self._publish(_Note(self._origin, beat=True), seconds=BEAT_TIMEOUT_SECONDS / 2)
        self._report()

    def _report(self) -> None:
        metrics.CACHE_L2_HEALTHY.set(0 if self._degraded(time.monotonic()) else 1)

    async def _recover(self) -> None:
        """Replay what was not written, then use L2 again (an invalidation deferred while this
        ran is replayed in the same pass)."""
        assert self._l2 is not None
        try:
            if self._pending_all:
                await self._l2.clear(seconds=CLEAR_TIMEOUT_SECONDS)
                await self._publish(_Note(self._origin, clear=True), seconds=BEAT_TIMEOUT_SECONDS)
                self._pending_all = False
            while self._pending and not self._pending_all:
                # In the background: more time than a read gets, for a batch of many tags.
                batch = list(self._pending)[:REPLAY_BATCH]
                await self._l2.invalidate(batch, force=True, seconds=BEAT_TIMEOUT_SECONDS)
                await self._publish(_Note(self._origin, tags=batch), seconds=BEAT_TIMEOUT_SECONDS)
                self._pending.difference_update(batch)
            await self._l2.ping()
        except L2Unavailable:
            return  # tripped again: probed again next tick (replays left) or after the delay
        if not self._pending and not self._pending_all:
            self._l2.reset()

    def stats(self) -> CacheStats:
        counts, now = self._counts, time.monotonic()
        gets = counts["l1_hit"] + counts["l1_miss"]
        l2 = None
        if self._l2 is not None:
            l2_total = counts["l2_hit"] + counts["l2_miss"]
            l2 = LevelStats(
                counts["l2_hit"], counts["l2_miss"], 0, _rate(counts["l2_hit"], l2_total)
            )
        return CacheStats(
            hit_rate=_rate(gets - counts["load"], gets),
            l1=LevelStats(
                counts["l1_hit"],
                counts["l1_miss"],
                counts["l1_evict"],
                _rate(counts["l1_hit"], gets),
            ),
            l2=l2,
            l1_entries=len(self._l1),
            loads=counts["load"],
            load_errors=counts["load_error"],
            l2_healthy=None if self._l2 is None else self._l2.healthy,
            broadcast_healthy=None if self._l2 is None else self._broadcast_healthy(now),
            degraded=self._degraded(now),
            pending_invalidations=len(self._pending) + (1 if self._pending_all else 0),
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._l2 is not None:
            await self._l2.close()


def build_cache(settings: Settings, broadcast: Broadcast) -> Cache:
    """L1 only in embedded mode (one process: nothing to share, nobody else to tell); L1 + L2
    + invalidation over ``broadcast`` in scaled mode. Build it before the broadcast starts."""
    l2 = None
    if settings.redis_url:
        l2 = RedisL2(
            settings.redis_url,
            timeout=settings.cache_l2_timeout_ms / 1000,
            retry_seconds=L2_RETRY_SECONDS,
        )
    return Cache(
        max_entries=settings.cache_l1_max_entries,
        ttl=settings.cache_ttl_seconds,
        l2=l2,
        broadcast=broadcast if l2 is not None else None,
    )
