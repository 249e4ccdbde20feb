"""Scaled mode survives a Redis restart: the pub/sub broadcast reconnects and resyncs the
coupon index, and the hot usage counters, which the restart empties, are rebuilt.

Each test restarts a throwaway redis-server of its own (never the session's shared one),
without persistence, so it comes back empty as a replaced Redis node would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from peakshop.coupons.index import CHANNEL
from peakshop.state.redis import PREFIX
from tests.conftest import SERVICE
from tests.fixtures.factories import redeem_request, time_window_coupon
from tests.fixtures.faults import RedisServer, redis_server
from tests.invariants.conftest import (
    Cluster,
    cluster_settings,
    create_coupon,
    fresh_database,
    patch_coupon,
    poll_until,
    running_cluster,
    validate,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RECOVERY_LIMIT = 5.0  # "within a few seconds" of the change, once Redis is back
USER = "user_0000001"


def restartable_pair(
    request: pytest.FixtureRequest, tmp_dir: Path, **settings: float
) -> Iterator[tuple[RedisServer, Cluster]]:
    with (
        redis_server() as redis,
        fresh_database("postgres", request, tmp_dir) as (database_url, _),
        running_cluster(
            "scaled",
            cluster_settings(database_url, redis.url, tmp_dir, **settings),
            count=2,
            log_dir=tmp_dir,
        ) as cluster,
    ):
        yield redis, cluster


@pytest.fixture
def broadcast_pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[RedisServer, Cluster]]:
    """The periodic full reload of the index is far out of reach: only the broadcast (and its
    resync after a reconnection) can bring a change to process B."""
    yield from restartable_pair(request, tmp_path)


async def b_answers(
    cluster: Cluster, code: str, accept: Callable[[dict[str, Any]], bool], started: float
) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        elapsed, _ = await poll_until(
            client,
            cluster.urls[1],
            code,
            USER,
            accept,
            started=started,
            deadline=RECOVERY_LIMIT,
        )
    return elapsed


async def subscribed_again(redis: RedisServer, processes: int) -> None:
    channel = PREFIX + CHANNEL
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        deadline = time.monotonic() + RECOVERY_LIMIT
        while (await client.pubsub_numsub(channel))[0][1] < processes:
            assert time.monotonic() < deadline, "the processes did not subscribe again"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    await asyncio.sleep(0.5)  # the resync (a full index reload) that follows the subscription


async def test_a_change_after_a_redis_restart_reaches_the_other_process(
    broadcast_pair: tuple[RedisServer, Cluster],
) -> None:
    redis, cluster = broadcast_pair
    a, _ = cluster.urls
    code = (await create_coupon(a, time_window_coupon()))["code"]
    await b_answers(cluster, code, lambda body: body["valid"], time.monotonic())

    await asyncio.to_thread(redis.restart)
    # Both processes are subscribed again and done with their resync: from here on only a
    # broadcast that really goes out can bring the change to B.
    await subscribed_again(redis, len(cluster.servers))

    started = time.monotonic()
    await patch_coupon(a, code, {"status": "inactive"})
    await b_answers(cluster, code, lambda body: body["reason"] == "inactive", started)
    # And the broadcast keeps working afterwards, at its usual speed.
    started = time.monotonic()
    await patch_coupon(a, code, {"status": "active"})
    assert await b_answers(cluster, code, lambda body: body["valid"], started) < 1.0


async def test_a_change_made_while_redis_is_down_reaches_the_other_process_after_it_returns(
    broadcast_pair: tuple[RedisServer, Cluster],
) -> None:
    redis, cluster = broadcast_pair
    a, _ = cluster.urls
    code = (await create_coupon(a, time_window_coupon()))["code"]
    await b_answers(cluster, code, lambda body: body["valid"], time.monotonic())

    await asyncio.to_thread(redis.stop)
    try:
        # The change is committed; its broadcast cannot go out (and the API still answers).
        await patch_coupon(a, code, {"status": "inactive"})
    finally:
        await asyncio.to_thread(redis.start)

    # Messages sent while a subscriber is disconnected are lost: B must resync on reconnect.
    await b_answers(cluster, code, lambda body: body["reason"] == "inactive", time.monotonic())


@pytest.fixture
def reconciling_pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[RedisServer, Cluster]]:
    """The hot counters are checked (and rebuilt when lost) every second."""
    yield from restartable_pair(request, tmp_path, coupon_index_refresh_seconds=1.0)


async def test_usage_counters_emptied_by_a_redis_restart_are_rebuilt(
    reconciling_pair: tuple[RedisServer, Cluster],
) -> None:
    redis, cluster = reconciling_pair
    a, b = cluster.urls
    code = (await create_coupon(a, time_window_coupon(per_user_limit=1)))["code"]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{a}/api/v1/coupons/{code}/redeem",
            json=redeem_request(USER, "order-1"),
            headers=SERVICE,
        )
        assert response.status_code == 201, response.text
        assert (await validate(client, b, code, USER))["reason"] == "user_limit_reached"

        await asyncio.to_thread(redis.restart)

        started = time.monotonic()
        for url in cluster.urls:
            await poll_until(
                client,
                url,
                code,
                USER,
                lambda body: body["reason"] == "user_limit_reached",
                started=started,
                deadline=RECOVERY_LIMIT,
            )
        assert (await validate(client, b, code, "user_0000002"))["reason"] is None
