"""Scaled mode, two server processes: a change made through one process is seen by validation
in the other at once (the coupon index is kept fresh by Redis pub/sub, usage by the Redis
counters). The periodic full reload is pushed far out of reach, so only the broadcast can
explain what process B sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SERVICE
from tests.fixtures.factories import redeem_request, time_window_coupon, unique_code
from tests.invariants.conftest import (
    Cluster,
    create_coupon,
    module_cluster,
    patch_coupon,
    poll_until,
    validate,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PROPAGATION_LIMIT = 1.0  # seconds, from the moment the change is sent to process A
USER = "user_0000001"


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with module_cluster("scaled", request, tmp_path_factory) as cluster:
        yield cluster


async def seen_by_b(
    pair: Cluster, code: str, accept: Callable[[dict[str, Any]], bool], started: float
) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        elapsed, body = await poll_until(
            client, pair.urls[1], code, USER, accept, started=started, deadline=PROPAGATION_LIMIT
        )
    assert elapsed < PROPAGATION_LIMIT
    return body


async def test_a_coupon_deactivated_through_a_is_rejected_by_b_within_1s(pair: Cluster) -> None:
    a = pair.urls[0]
    coupon = await create_coupon(a, time_window_coupon())
    code = coupon["code"]
    await seen_by_b(pair, code, lambda body: body["valid"], time.monotonic())

    started = time.monotonic()
    await patch_coupon(a, code, {"status": "inactive"})
    await seen_by_b(pair, code, lambda body: body["reason"] == "inactive", started)


async def test_a_coupon_created_through_a_is_valid_on_b_within_1s(pair: Cluster) -> None:
    a, b = pair.urls
    payload = time_window_coupon(code=unique_code("NEW"))
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await validate(client, b, payload["code"], USER))["reason"] == "not_found"

    started = time.monotonic()
    await create_coupon(a, payload)
    await seen_by_b(pair, payload["code"], lambda body: body["valid"], started)


async def test_a_discount_changed_through_a_is_applied_by_b_within_1s(pair: Cluster) -> None:
    a = pair.urls[0]
    coupon = await create_coupon(a, time_window_coupon(discount_value="10"))
    code = coupon["code"]
    await seen_by_b(pair, code, lambda body: body["discount"] == "10.00", time.monotonic())

    started = time.monotonic()
    await patch_coupon(a, code, {"discount_value": "25"})
    body = await seen_by_b(pair, code, lambda body: body["discount"] != "10.00", started)
    assert body == {
        "valid": True,
        "code": code,
        "discount": "25.00",
        "final_total": "75.00",
        "reason": None,
    }


async def test_a_redemption_through_a_is_reflected_by_validation_on_b_at_once(
    pair: Cluster,
) -> None:
    a, b = pair.urls
    coupon = await create_coupon(a, time_window_coupon(usage_limit=2, per_user_limit=1))
    code = coupon["code"]
    async with httpx.AsyncClient(timeout=10) as client:
        await poll_until(
            client, b, code, USER, lambda body: body["valid"], started=time.monotonic(), deadline=1
        )
        redeem = f"{a}/api/v1/coupons/{code}/redeem"
        first = await client.post(redeem, json=redeem_request(USER, "order-1"), headers=SERVICE)
        assert first.status_code == 201, first.text
        # The very next validation on B, no polling: the counters are shared, not broadcast.
        assert (await validate(client, b, code, USER))["reason"] == "user_limit_reached"
        assert (await validate(client, b, code, "user_0000002"))["reason"] is None

        second = await client.post(
            redeem, json=redeem_request("user_0000002", "order-2"), headers=SERVICE
        )
        assert second.status_code == 201, second.text
        assert (await validate(client, b, code, "user_0000003"))["reason"] == "usage_limit_reached"
