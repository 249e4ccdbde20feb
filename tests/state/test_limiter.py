"""Rate limits against the real storages: in-process (embedded mode) and Redis (scaled mode).

The promise: never more than N accepted in any interval of the window's length, including
bursts on both sides of a (clock-aligned) window boundary; per-user and per-IP limits are
independent; every refusal is a 429 with Retry-After and is counted; with Redis gone the
limiter lets requests through (fail open) and counts them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import limits
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from peakshop.config import RATE_LIMIT_FIELDS, load_settings
from peakshop.errors import RateLimited
from peakshop.state.limiter import (
    FAILURE_BACKOFF_SECONDS,
    REDIS_KEY_PREFIX,
    InProcessStorage,
    RateLimiter,
    build_limiter,
)
from tests.fixtures.faults import redis_server
from tests.fixtures.servers import free_port

MakeLimiter = Callable[..., RateLimiter]
OFF = dict.fromkeys(RATE_LIMIT_FIELDS, "")


def rejected_total(endpoint: str, scope: str) -> float:
    labels = {"endpoint": endpoint, "scope": scope}
    return REGISTRY.get_sample_value("peakshop_rate_limited_total", labels) or 0.0


def errors_total(endpoint: str) -> float:
    labels = {"endpoint": endpoint}
    return REGISTRY.get_sample_value("peakshop_rate_limiter_errors_total", labels) or 0.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    """None: the in-process storage; else the URL of a real, flushed Redis."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return None


@pytest.fixture
async def build() -> AsyncIterator[Callable[..., RateLimiter]]:
    """``build(redis_url, **limits)``: a limiter from settings (every other limit off),
    closed after the test."""
    made: list[RateLimiter] = []

    def make(redis_url: str | None, **limits: str) -> RateLimiter:
        settings = load_settings(environ={}, redis_url=redis_url, **{**OFF, **limits})
        limiter = build_limiter(settings)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture
def make_limiter(storage_url: str | None, build: Callable[..., RateLimiter]) -> MakeLimiter:
    """A limiter on the storage under test (run once per storage)."""

    def make(**limits: str) -> RateLimiter:
        return build(storage_url, **limits)

    return make


async def accepted(limiter: RateLimiter, rule: str, **who: Any) -> bool:
    try:
        await limiter.check(rule, **who)
    except RateLimited:
        return False
    return True


async def sleep_until_second_fraction(fraction: float) -> None:
    """Sleep until the wall clock's fraction of a second is ``fraction`` (limits' fixed and
    sliding-counter windows are aligned on these boundaries)."""
    now = time.time()
    target = math.floor(now) + fraction
    if target < now + 0.05:
        target += 1
    await asyncio.sleep(target - now)


# --- never more than N in any window --------------------------------------------------------


async def test_a_steady_stream_never_gets_more_than_n_in_any_window(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(rate_limit_orders_per_user="5/second")
    spans: list[tuple[float, float]] = []  # (before, after) of each accepted check
    started = time.monotonic()
    while time.monotonic() - started < 3.2:
        before = time.time()
        if await accepted(limiter, "orders", user_id="stream", client_ip=None):
            spans.append((before, time.time()))
        await asyncio.sleep(0.007)
    # Sound against timing noise: the storage stamped each hit between ``before`` and
    # ``after``, so hits j with after_j - before_i < 1 s certainly lie within 1 s of hit i.
    for i, (before_i, _) in enumerate(spans):
        inside = [j for j in range(i, len(spans)) if spans[j][1] - before_i < 1.0]
        assert len(inside) <= 5, f"{len(inside)} accepted within 1 s from hit {i}: {spans}"
    # And it admits: about 5 per second (16 over 3.2 s at most), not far fewer.
    assert 15 <= len(spans) <= 20, spans


async def test_bursts_on_both_sides_of_window_boundaries(make_limiter: MakeLimiter) -> None:
    """Fixed windows (from the first hit, as limits keeps them, or on clock seconds, as the
    sliding-window counter weights them) admit a second burst right after their boundary;
    the moving window admits only what left the last second. Times are clock fractions."""
    limiter = make_limiter(rate_limit_orders_per_user="5/second")
    who = {"user_id": "straddler", "client_ip": None}

    async def burst_at(fraction: float) -> int:
        await sleep_until_second_fraction(fraction)
        results = await asyncio.gather(*(accepted(limiter, "orders", **who) for _ in range(20)))
        return sum(results)

    await sleep_until_second_fraction(0.30)
    await limiter.check("orders", **who)  # a fixed window would start here, until 1.30
    assert await burst_at(0.90) == 4  # 20 concurrent attempts: exactly what is left, atomically
    assert await burst_at(0.05) == 0  # past the clock's second: the 5 are < 1 s old
    assert await burst_at(0.40) == 1  # past 1.30: only the hit of 0.30 has left
    assert await burst_at(0.97) == 4  # the 4 of 0.90 have left; 0.40's has not


@pytest.mark.redis
async def test_processes_sharing_redis_share_the_window(
    redis_url: str, build: Callable[..., RateLimiter]
) -> None:
    """Scaled mode: two API processes (two limiters on one Redis) admit N together, not each."""
    first = build(redis_url, rate_limit_orders_per_user="5/second")
    second = build(redis_url, rate_limit_orders_per_user="5/second")
    results = await asyncio.gather(
        *(
            accepted(limiter, "orders", user_id="shared", client_ip=None)
            for limiter in (first, second)
            for _ in range(10)
        )
    )
    assert sum(results) == 5
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match="*")]
    finally:
        await client.aclose()
    assert keys and all(key.startswith(f"{REDIS_KEY_PREFIX}:") for key in keys), keys


@pytest.mark.redis
@pytest.mark.parametrize("shared", [False, True])
async def test_validation_windows_are_per_process_unless_shared(
    redis_url: str, build: Callable[..., RateLimiter], shared: bool
) -> None:
    """Scaled mode: validation's windows stay in each process by default (no Redis round
    trip per validation), so two processes admit N each; shared, they admit N together."""
    limiters = [
        build(
            redis_url,
            rate_limit_validate_per_user="5/second",
            rate_limit_validate_shared=shared,
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(
        *(
            accepted(limiter, "validate", user_id="browser", client_ip=None)
            for limiter in limiters
            for _ in range(10)
        )
    )
    if shared:
        assert sum(results) == 5
    else:
        assert (sum(results[:10]), sum(results[10:])) == (5, 5)
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"{REDIS_KEY_PREFIX}:*")]
    finally:
        await client.aclose()
    assert bool(keys) == shared, keys


async def test_per_process_validation_limit_holds_while_redis_is_away(
    build: Callable[..., RateLimiter],
) -> None:
    """Only the shared windows fail open: validation's own keep limiting with Redis gone."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    limiter = build(
        nowhere, rate_limit_validate_per_user="3/second", rate_limit_orders_per_user="1/second"
    )
    results = [await accepted(limiter, "validate", user_id="vic", client_ip=None) for _ in range(5)]
    assert results == [True, True, True, False, False]
    before = errors_total("orders")
    for _ in range(3):  # the shared storage is unreachable: let through and counted
        await limiter.check("orders", user_id="vic", client_ip=None)
    assert errors_total("orders") == before + 3
    assert not await accepted(limiter, "validate", user_id="vic", client_ip=None)


# --- scopes, rules, Retry-After ----------------------------------------------------------------


async def test_per_user_and_per_ip_limits_are_independent(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(
        rate_limit_orders_per_user="3/second", rate_limit_orders_per_ip="5/second"
    )
    # One user exhausts its own limit; the IP it came from still has room for others.
    for _ in range(3):
        await limiter.check("orders", user_id="alice", client_ip="10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        await limiter.check("orders", user_id="alice", client_ip="10.0.0.2")  # any IP
    assert refused.value.scope == "user"
    assert "user" in refused.value.message
    await limiter.check("orders", user_id="bob", client_ip="10.0.0.1")
    await limiter.check("orders", user_id="carol", client_ip="10.0.0.1")
    # 10.0.0.1 has had 5: a fresh user is refused there, for the IP, and accepted elsewhere.
    with pytest.raises(RateLimited) as refused:
        await limiter.check("orders", user_id="dave", client_ip="10.0.0.1")
    assert refused.value.scope == "ip"
    assert "client IP" in refused.value.message
    await limiter.check("orders", user_id="erin", client_ip="10.0.0.3")
    # Without the identity of one scope, only the other one applies.
    for _ in range(5):
        await limiter.check("orders", user_id=None, client_ip="10.0.0.4")
    with pytest.raises(RateLimited, match="client IP"):
        await limiter.check("orders", user_id=None, client_ip="10.0.0.4")
    for _ in range(3):
        await limiter.check("orders", user_id="trent", client_ip=None)
    with pytest.raises(RateLimited, match="user"):
        await limiter.check("orders", user_id="trent", client_ip=None)


async def test_rules_have_separate_windows_and_off_means_off(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(
        rate_limit_validate_per_user="2/second", rate_limit_orders_per_user="2/second"
    )
    for _ in range(2):
        await limiter.check("validate", user_id="frank", client_ip="10.0.0.9")
    assert not await accepted(limiter, "validate", user_id="frank", client_ip="10.0.0.9")
    await limiter.check("orders", user_id="frank", client_ip="10.0.0.9")  # another window
    unlimited = make_limiter()  # every limit ""
    assert not unlimited.enabled("validate") and not unlimited.enabled("orders")
    for _ in range(50):
        await unlimited.check("orders", user_id="frank", client_ip="10.0.0.9")
    with pytest.raises(KeyError):  # a misspelt rule must not silently mean "no limit"
        await unlimited.check("order", user_id="frank", client_ip=None)


async def test_retry_after_is_when_the_oldest_hit_leaves_the_window(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(rate_limit_orders_per_user="2/5 seconds")
    await limiter.check("orders", user_id="grace", client_ip=None)
    first = time.time()
    await limiter.check("orders", user_id="grace", client_ip=None)
    await asyncio.sleep(1.0)
    with pytest.raises(RateLimited) as refused:
        await limiter.check("orders", user_id="grace", client_ip=None)
    expected = math.ceil(first + 5 - time.time())
    assert refused.value.retry_after in (expected, expected + 1)
    assert 3 <= refused.value.retry_after <= 4
    assert refused.value.to_body()["retry_after"] == refused.value.retry_after
    assert refused.value.status_code == 429


async def test_each_refusal_is_counted_by_endpoint_and_scope(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(
        rate_limit_validate_per_user="1/second", rate_limit_validate_per_ip="3/second"
    )
    user_before, ip_before = rejected_total("validate", "user"), rejected_total("validate", "ip")
    orders_before = rejected_total("orders", "user")
    await limiter.check("validate", user_id="heidi", client_ip="10.1.0.1")
    for _ in range(4):
        assert not await accepted(limiter, "validate", user_id="heidi", client_ip="10.1.0.1")
    await limiter.check("validate", user_id="ivan", client_ip="10.1.0.1")
    await limiter.check("validate", user_id="judy", client_ip="10.1.0.1")
    assert not await accepted(limiter, "validate", user_id="mallory", client_ip="10.1.0.1")
    assert rejected_total("validate", "user") == user_before + 4
    assert rejected_total("validate", "ip") == ip_before + 1
    assert rejected_total("orders", "user") == orders_before  # nothing refused there


async def test_in_process_storage_frees_keys_whose_hits_left_the_window() -> None:
    storage = InProcessStorage()
    limiter = RateLimiter(
        storage=storage,
        rules={"orders": (("user", limits.parse("5/second")),)},
    )
    for i in range(100):
        await limiter.check("orders", user_id=f"user_{i}", client_ip=None)
    assert len(storage) == 100
    await asyncio.sleep(1.05)
    await limiter.check("orders", user_id="late", client_ip=None)
    assert len(storage) == 1


async def test_in_process_storage_keeps_only_the_window_of_a_steadily_hit_key() -> None:
    storage = InProcessStorage()
    limiter = RateLimiter(
        storage=storage,
        rules={"orders": (("user", limits.parse("50/second")),)},
    )
    for _ in range(6):  # a hit every 0.3 s: the key never goes quiet for a whole window
        for _ in range(3):
            await limiter.check("orders", user_id="steady", client_ip=None)
        await asyncio.sleep(0.3)
    assert len(storage) == 1
    (key,) = storage.held_keys()
    hits = storage.hits_of(key)
    # 18 hits over 1.8 s: only those of the last second are kept (and still counted)
    assert 0 < len(hits) <= 12
    assert all(hit >= time.time() - 1.0 - 0.3 for hit in hits)
    assert all(type(hit) is float for hit in hits)  # not objects the GC has to walk
    # and the limit still holds: a burst in a fresh window gets exactly 50 through
    await asyncio.sleep(1.05)
    burst = [await accepted(limiter, "orders", user_id="steady", client_ip=None) for _ in range(60)]
    assert burst.count(True) == 50 and not any(burst[50:])


# --- Redis unreachable: fail open ----------------------------------------------------------


async def test_unreachable_redis_fails_open_and_counts_it(
    build: Callable[..., RateLimiter],
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = build(nowhere, rate_limit_orders_per_user="2/second")
    before = errors_total("orders")
    started = time.monotonic()
    for _ in range(10):  # 5x the limit, all let through
        await limiter.check("orders", user_id="oscar", client_ip="10.2.0.1")
    assert time.monotonic() - started < 2.0  # one failed connection, then skipped
    assert errors_total("orders") == before + 10


@pytest.mark.redis
async def test_limiting_resumes_when_redis_comes_back(build: Callable[..., RateLimiter]) -> None:
    with redis_server() as server:
        limiter = build(server.url, rate_limit_orders_per_user="2/second")
        who = {"user_id": "peggy", "client_ip": None}
        await limiter.check("orders", **who)
        await limiter.check("orders", **who)
        assert not await accepted(limiter, "orders", **who)

        server.stop()
        before = errors_total("orders")
        for _ in range(5):
            await limiter.check("orders", **who)  # no exception: fail open
        assert errors_total("orders") == before + 5

        server.start()  # empty: the windows were lost with the server
        await asyncio.sleep(FAILURE_BACKOFF_SECONDS + 0.1)
        results = [await accepted(limiter, "orders", **who) for _ in range(5)]
        assert results == [True, True, False, False, False]
        assert errors_total("orders") == before + 5
