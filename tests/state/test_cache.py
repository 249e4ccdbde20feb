"""The two-level cache against the real storages: L1 only (embedded mode) and L1 + Redis
(scaled mode, with the real pub/sub broadcast of state/redis.py).

The promises: TTL and a bounded L1 (least recently used out first, evictions counted); one
load per cold key under a stampede; invalidation by tag; no value computed before a write is
stored after its invalidation (in the process and across processes); a write is seen at once
in its process and within 1 s in every other; with Redis stopped or hung the cache answers,
within a bounded time and without raising, and says it is degraded; with Redis back it uses
L2 again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import SettingsError, load_settings
from peakshop.state import cache as cache_module
from peakshop.state.cache import DEGRADED_L1_SECONDS, Cache, LevelStats, build_cache
from peakshop.state.cache_redis import RedisL2, value_key
from peakshop.state.memory import MemoryBroadcast
from peakshop.state.redis import RedisState
from tests.conftest import make_settings
from tests.fixtures.faults import RedisServer, redis_server


class Source:
    """A system of record for the tests: values by key, and the loads made from it."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.loads: dict[str, int] = {}

    def loader(self, key: str) -> Callable[[], Any]:
        async def load() -> bytes:
            self.loads[key] = self.loads.get(key, 0) + 1
            return self.values.get(key, f"{key}:v0".encode())

        return load


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    """None: L1 only (embedded mode); else the URL of a real, flushed Redis."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return None


@pytest.fixture
async def make_cache() -> AsyncIterator[Callable[..., Any]]:
    """``await make_cache(redis_url, **settings)``: a started cache as one process has it (its
    own hot state and broadcast in scaled mode), closed after the test."""
    made: list[tuple[Cache, RedisState | None]] = []

    async def make(redis_url: str | None, **overrides: Any) -> Cache:
        # A read timeout above the default (50 ms) unless a test is about it: the tests share
        # the machine with others, and a tripped circuit would change what they observe.
        overrides = {"cache_l2_timeout_ms": 250, **overrides}
        settings = load_settings(environ={}, redis_url=redis_url, **overrides)
        state = RedisState(redis_url) if redis_url else None
        cache = build_cache(settings, state.broadcast if state else MemoryBroadcast())
        if state is not None:
            await state.start()
        await cache.start()
        made.append((cache, state))
        return cache

    yield make
    for cache, state in made:
        await cache.close()
        if state is not None:
            await state.close()


async def get(cache: Cache, source: Source, key: str, *tags: str, **kw: Any) -> bytes:
    return await cache.get_or_load(key, tags=tags or (key,), load=source.loader(key), **kw)


async def eventually(check: Callable[[], Any], *, within: float, step: float = 0.02) -> float:
    """Poll ``check`` (sync or async) until true; returns the seconds it took."""
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(step)


# --- one process -----------------------------------------------------------------------------


async def test_entries_expire_after_their_ttl(
    storage_url: str | None, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(storage_url, cache_ttl_seconds=60)
    source = Source()
    assert await get(cache, source, "a", ttl=0.2) == b"a:v0"
    assert await get(cache, source, "a", ttl=0.2) == b"a:v0"
    assert await get(cache, source, "b") == b"b:v0"  # the default TTL (60 s)
    assert source.loads == {"a": 1, "b": 1}
    await asyncio.sleep(0.3)
    await get(cache, source, "a", ttl=0.2)
    await get(cache, source, "b")
    assert source.loads == {"a": 2, "b": 1}  # expired in both levels, not b
    with pytest.raises(ValueError, match="ttl"):
        await get(cache, source, "c", ttl=0)


async def test_l1_is_bounded_least_recently_used_out_first(
    storage_url: str | None, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(storage_url, cache_l1_max_entries=3)
    source = Source()
    for key in ("k0", "k1", "k2"):
        await get(cache, source, key)
    await get(cache, source, "k0")  # k0 is now the most recently used: k1 goes first
    await get(cache, source, "k3")
    stats = cache.stats()
    assert stats.l1_entries == 3
    assert stats.l1.evictions == 1
    before = cache.stats()
    for key in ("k0", "k2", "k3"):
        await get(cache, source, key)
    assert cache.stats().l1.hits == before.l1.hits + 3
    await get(cache, source, "k1")  # evicted from L1
    after = cache.stats()
    assert after.l1.misses == before.l1.misses + 1
    if storage_url is None:
        assert source.loads["k1"] == 2
    else:  # still in L2: no load
        assert source.loads["k1"] == 1
        assert after.l2 is not None and before.l2 is not None
        assert after.l2.hits == before.l2.hits + 1
    assert cache.stats().l1.evictions == 2  # k1 came back: another one went


async def test_a_stampede_on_a_cold_key_runs_one_load(
    storage_url: str | None, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(storage_url)
    calls = 0

    async def slow_load() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b'{"hot": true}'

    results = await asyncio.gather(
        *(cache.get_or_load("hot", tags=["t"], load=slow_load) for _ in range(100))
    )
    assert calls == 1
    assert set(results) == {b'{"hot": true}'}
    stats = cache.stats()
    assert stats.loads == 1 and stats.l1.misses == 100
    assert stats.hit_rate == 0.99  # 99 of 100 answered without a load of their own


async def test_a_failing_load_fails_every_waiter_and_caches_nothing(
    storage_url: str | None, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(storage_url)
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("database down")

    results = await asyncio.gather(
        *(cache.get_or_load("k", tags=["t"], load=failing) for _ in range(20)),
        return_exceptions=True,
    )
    assert calls == 1
    assert all(isinstance(result, RuntimeError) for result in results)
    assert cache.stats().load_errors == 1
    source = Source()
    assert await get(cache, source, "k") == b"k:v0"  # nothing was cached: loaded now
    assert source.loads == {"k": 1}


async def test_invalidation_drops_the_entries_of_its_tags_only(
    storage_url: str | None, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(storage_url)
    source = Source()
    await get(cache, source, "product:1", "product:1", "products")
    await get(cache, source, "list:a", "products")
    await get(cache, source, "product:2", "product:2")
    source.values = {"product:1": b"p1:v1", "list:a": b"la:v1", "product:2": b"p2:v1"}
    await cache.invalidate("products")
    assert await get(cache, source, "product:1", "product:1", "products") == b"p1:v1"
    assert await get(cache, source, "list:a", "products") == b"la:v1"
    assert await get(cache, source, "product:2", "product:2") == b"product:2:v0"
    assert source.loads == {"product:1": 2, "list:a": 2, "product:2": 1}
    await cache.invalidate()  # nothing: no error
    await cache.invalidate("unknown-tag")


async def test_a_load_that_began_before_a_write_stores_nothing(
    storage_url: str | None, make_cache: Callable[..., Any]
) -> None:
    """The classic race: the reader reads the record, the writer commits and invalidates, then
    the reader stores what it read. Here the reader's load waits on an event in between."""
    cache = await make_cache(storage_url)
    record = {"value": b"old"}
    read, release = asyncio.Event(), asyncio.Event()

    async def reader_load() -> bytes:
        value = record["value"]
        read.set()
        await release.wait()
        return value

    reader = asyncio.create_task(cache.get_or_load("p", tags=["product:1"], load=reader_load))
    await read.wait()
    record["value"] = b"new"  # the write commits...
    await cache.invalidate("product:1")  # ...and invalidates, before the reader stores

    # A read that starts now must not join the reader's flight: it loads the new value.
    async def fresh_load() -> bytes:
        return record["value"]

    assert await cache.get_or_load("p", tags=["product:1"], load=fresh_load) == b"new"
    release.set()
    assert await reader == b"old"  # it began before the write: it may answer the old value
    # ...but it stored nothing over the new one, in either level.
    calls = 0

    async def counting_load() -> bytes:
        nonlocal calls
        calls += 1
        return record["value"]

    assert await cache.get_or_load("p", tags=["product:1"], load=counting_load) == b"new"
    assert calls == 0  # the fresh read's value is the one cached


async def test_embedded_cache_is_never_degraded(make_cache: Callable[..., Any]) -> None:
    cache = await make_cache(None)
    stats = cache.stats()
    assert stats.l2 is None and stats.l2_healthy is None and stats.broadcast_healthy is None
    assert not stats.degraded and stats.hit_rate is None


def test_cache_settings_are_validated() -> None:
    for bad in (
        {"cache_l1_max_entries": 0},
        {"cache_ttl_seconds": 0},
        {"cache_l2_timeout_ms": 0},
        {"cache_l2_timeout_ms": 60_000},
    ):
        with pytest.raises(SettingsError, match="PEAKSHOP_CACHE_"):
            load_settings(environ={}, **bad)
    with pytest.raises(SettingsError, match="invalid setting"):
        load_settings(environ={"PEAKSHOP_CACHE_TTL_SECONDS": "soon"})


# --- processes sharing Redis -------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_refuses_a_value_computed_before_another_process_invalidated(
    redis_url: str,
) -> None:
    """The version check of the storing script: process B read the versions and loaded; process
    A invalidated meanwhile; B's store is refused and nothing is recorded."""
    b, a = (RedisL2(redis_url, timeout=0.5, retry_seconds=1.0) for _ in range(2))
    try:
        value, versions = await b.fetch("p", ["product:1", "products"])
        assert value is None and len(versions) == 3  # the epoch and two tags
        await a.invalidate(["products"])
        assert not await b.store("p", b"old", ["product:1", "products"], versions, 60)
        value, versions = await b.fetch("p", ["product:1", "products"])
        assert value is None
        assert await b.store("p", b"new", ["product:1", "products"], versions, 60)
        assert (await a.fetch("p", ["product:1", "products"]))[0] == b"new"
        await a.invalidate(["product:1"])
        assert (await b.fetch("p", ["product:1", "products"]))[0] is None  # deleted by tag
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_a_write_is_seen_in_its_process_at_once_and_in_another_within_a_second(
    redis_url: str, make_cache: Callable[..., Any]
) -> None:
    first, second = await make_cache(redis_url), await make_cache(redis_url)
    source = Source()
    tags = ("product:7", "products")
    assert await get(second, source, "product:7", *tags) == b"product:7:v0"
    assert await get(first, source, "product:7", *tags) == b"product:7:v0"
    assert source.loads == {"product:7": 1}  # the first process answered from L2
    assert first.stats().l2 == LevelStats(hits=1, misses=0, evictions=0, hit_rate=1.0)

    for version in range(1, 4):
        source.values["product:7"] = f"v{version}".encode()  # the write commits
        await first.invalidate("product:7")
        assert await get(first, source, "product:7", *tags) == f"v{version}".encode()

        async def second_sees_it(expected: bytes = f"v{version}".encode()) -> bool:
            return await get(second, source, "product:7", *tags) == expected

        assert await eventually(second_sees_it, within=1.0) < 1.0
    assert not first.stats().degraded and not second.stats().degraded


@pytest.mark.redis
async def test_a_burst_of_cold_keys_beyond_the_pool_does_not_trip_l2(
    redis_url: str, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(redis_url)
    source = Source()
    keys = [f"cold:{i}" for i in range(400)]
    values = await asyncio.gather(*(get(cache, source, key) for key in keys))
    assert values == [f"{key}:v0".encode() for key in keys]
    stats = cache.stats()
    assert stats.l2_healthy and not stats.degraded
    assert stats.loads == 400


@pytest.mark.redis
async def test_keys_live_under_the_cache_prefix(
    redis_url: str, make_cache: Callable[..., Any]
) -> None:
    cache = await make_cache(redis_url)
    await get(cache, Source(), "product:1", "product:1")
    await cache.invalidate("other")
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = sorted([key.decode() async for key in client.scan_iter(match="*cache*")])
    finally:
        await client.aclose()
    assert keys == [
        "peakshop:{cache}:tk:product:1",
        "peakshop:{cache}:tv:other",
        "peakshop:{cache}:v:product:1",
    ]


# --- Redis stopped, hung, back -----------------------------------------------------------------


async def _in_redis(server: RedisServer, key: str) -> bool:
    client = aioredis.Redis.from_url(server.url)
    try:
        return bool(await client.exists(value_key(key)))
    finally:
        await client.aclose()


async def _timed_get(cache: Cache, source: Source, key: str) -> bytes:
    started = time.monotonic()
    value = await get(cache, source, key)
    assert time.monotonic() - started < 0.5, "a read waited on a dead Redis"
    return value


async def _healthy(cache: Cache) -> bool:
    return not cache.stats().degraded


@pytest.mark.redis
async def test_with_redis_stopped_the_cache_serves_and_recovers(
    make_cache: Callable[..., Any],
) -> None:
    with redis_server() as server:
        first, second = await make_cache(server.url), await make_cache(server.url)
        source = Source()
        await get(first, source, "cached")
        assert await _in_redis(server, "cached")

        server.stop()
        for i in range(20):  # new keys: load and serve, no error, no wait on Redis
            assert await _timed_get(first, source, f"new:{i}") == f"new:{i}:v0".encode()
        stats = first.stats()
        assert stats.l2_healthy is False and stats.degraded
        # Degraded: no L1 entry older than DEGRADED_L1_SECONDS (lost invalidations).
        assert await _timed_get(first, source, "new:0") == b"new:0:v0"
        assert source.loads["new:0"] == 1
        await asyncio.sleep(DEGRADED_L1_SECONDS + 0.1)
        await _timed_get(first, source, "new:0")
        assert source.loads["new:0"] == 2
        # A write while Redis is away: seen at once here, kept for L2 until Redis is back.
        source.values["cached"] = b"written-while-down"
        await first.invalidate("cached")
        assert await _timed_get(first, source, "cached") == b"written-while-down"
        assert first.stats().pending_invalidations == 1
        await eventually(lambda: second.stats().broadcast_healthy is False, within=2.0)

        server.start()  # empty (no persistence), as a replaced node would come back
        await eventually(lambda: _healthy(first), within=10.0)
        await eventually(lambda: _healthy(second), within=10.0)
        assert first.stats().pending_invalidations == 0
        before = first.stats()
        await get(first, source, "after")
        assert await _in_redis(server, "after")  # L2 is written again...
        await get(second, source, "after")
        assert source.loads["after"] == 1  # ...and read again by the other process
        after = first.stats()
        assert after.l2 is not None and before.l2 is not None
        assert after.l2.misses == before.l2.misses + 1
        assert second.stats().l2.hits >= 1  # type: ignore[union-attr]


@pytest.mark.redis
async def test_a_hung_redis_costs_a_read_one_short_timeout(
    make_cache: Callable[..., Any],
) -> None:
    """SIGSTOP: connections stay open and nothing answers (a slow, not a dead, Redis)."""
    with redis_server() as server:
        cache = await make_cache(server.url, cache_l2_timeout_ms=50)
        source = Source()
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert await get(cache, source, "a") == b"a:v0"  # one timeout, then the load
            assert time.monotonic() - started < 0.3
            started = time.monotonic()
            for i in range(50):  # the circuit is open: no timeout each
                await get(cache, source, f"b:{i}")
            await cache.invalidate("a")  # tried, once: one timeout for L2, one for pub/sub
            assert time.monotonic() - started < 0.5
            assert cache.stats().l2_healthy is False
        finally:
            server.process.send_signal(signal.SIGCONT)
        await eventually(lambda: _healthy(cache), within=10.0)


@pytest.mark.redis
async def test_invalidations_that_missed_redis_are_replayed_when_it_answers_again(
    make_cache: Callable[..., Any],
) -> None:
    """A Redis that hangs (its data kept) while a write happens: the write's invalidation
    cannot reach L2 nor the other processes; it is replayed before this process reads L2
    again, so the stale L2 entry is not served to anyone afterwards."""
    with redis_server() as server:
        first, second = await make_cache(server.url), await make_cache(server.url)
        source = Source()
        await get(first, source, "product:1")
        await get(second, source, "product:1")  # from L2
        assert source.loads == {"product:1": 1}
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            source.values["product:1"] = b"new"
            await first.invalidate("product:1")
            assert first.stats().pending_invalidations == 1
            assert await get(first, source, "product:1") == b"new"
        finally:
            server.process.send_signal(signal.SIGCONT)
        await eventually(lambda: first.stats().pending_invalidations == 0, within=5.0)
        assert not await _in_redis(server, "product:1")  # the stale entry is gone from L2
        await eventually(lambda: _healthy(second), within=5.0)
        assert await get(second, source, "product:1") == b"new"


@pytest.mark.redis
async def test_too_many_missed_invalidations_drop_the_whole_l2(
    make_cache: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MAX_PENDING_TAGS", 2)
    with redis_server() as server:
        first, second = await make_cache(server.url), await make_cache(server.url)
        source = Source()
        for key in ("a", "b", "c"):
            await get(first, source, key)
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            await first.invalidate("x", "y", "z")  # past the bound: every tag is forgotten
            assert first.stats().pending_invalidations == 1  # "everything"
        finally:
            server.process.send_signal(signal.SIGCONT)
        await eventually(lambda: first.stats().pending_invalidations == 0, within=5.0)
        for key in ("a", "b", "c"):
            assert not await _in_redis(server, key)
        await eventually(lambda: _healthy(second), within=5.0)
        await get(second, source, "a")
        assert source.loads["a"] == 2


async def in_app(client: AsyncTestClient[Any], call: Callable[..., Any], *args: Any) -> Any:
    """Run ``call(*args)`` on the app's event loop (the test client runs the app's lifespan,
    and so the cache's connections, on a loop of its own)."""
    return await asyncio.to_thread(client.blocking_portal.call, call, *args)


@pytest.mark.redis
async def test_health_and_metrics_report_the_cache(sqlite_url: str, tmp_path: Path) -> None:
    with redis_server() as server:
        settings = make_settings(
            sqlite_url,
            server.url,
            validation_log_dead_letter_path=str(tmp_path / "dead-letters.jsonl"),
        )
        app = create_app(settings)
        async with AsyncTestClient(app=app) as client:
            cache: Cache = app.state.runtime.cache
            source = Source()
            await in_app(client, get, cache, source, "k")
            await in_app(client, get, cache, source, "k")
            health = (await client.get("/health")).json()
            assert health["status"] == "ok"
            assert health["cache"]["hit_rate"] == 0.5
            assert health["cache"]["l2_healthy"] is True
            assert health["cache"]["l1"]["hits"] == 1
            metrics = (await client.get("/metrics")).text
            assert 'peakshop_cache_requests_total{level="l1",result="hit"}' in metrics
            assert "peakshop_cache_l2_healthy 1.0" in metrics

            server.stop()
            await in_app(client, get, cache, source, "other")
            await asyncio.sleep(0.3)  # the next heartbeat tick updates the gauge
            health = (await client.get("/health")).json()
            assert health["status"] == "degraded"
            assert health["cache"]["l2_healthy"] is False and health["cache"]["degraded"]
            assert "peakshop_cache_l2_healthy 0.0" in (await client.get("/metrics")).text

            server.start()
            await eventually(lambda: _healthy(cache), within=10.0)
            health = (await client.get("/health")).json()
            assert health["cache"]["l2_healthy"] is True
