"""Regular orders: every item reserved and the coupon redeemed, all or nothing; idempotent
placement; processing, cancellation, and the dead-letter path with its compensation."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from tests.conftest import ADMIN, SERVICE, shop_settings
from tests.coupons.support import Client, count_rows, create_coupon, eventually
from tests.fixtures.factories import idempotency_key, time_window_coupon
from tests.orders.support import create_product, get, order_settles, place


async def test_an_order_reserves_then_sells_its_items(shop: Client) -> None:
    a = await create_product(shop, price="12.50", stock=10)
    b = await create_product(shop, price="3.00", stock=4)
    answer = await place(shop, "user_1", [(a["id"], 2), (b["id"], 4)])
    assert answer.status_code == 202, answer.text
    order = await order_settles(shop, answer.json()["order_id"])
    assert order["status"] == "confirmed"
    assert (order["subtotal"], order["discount"], order["total"]) == ("37.00", "0.00", "37.00")
    assert [(i["product_id"], i["quantity"], i["unit_price"]) for i in order["items"]] == [
        (a["id"], 2, "12.50"),
        (b["id"], 4, "3.00"),
    ]
    after_a = await get(shop, f"/api/v1/inventory/{a['id']}")
    assert (after_a["current_stock"], after_a["reserved"], after_a["sold"]) == (8, 0, 2)
    after_b = await get(shop, f"/api/v1/inventory/{b['id']}")
    assert (after_b["current_stock"], after_b["sold"]) == (0, 4)


async def test_one_item_short_reserves_nothing(shop: Client, settings: Settings) -> None:
    a = await create_product(shop, stock=10)
    b = await create_product(shop, stock=1)
    answer = await place(shop, "user_1", [(a["id"], 3), (b["id"], 2)])
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "insufficient_stock"
    assert answer.json()["product_id"] == b["id"]
    assert (await get(shop, f"/api/v1/inventory/{a['id']}"))["current_stock"] == 10
    assert await count_rows(settings, "orders") == 0
    assert await count_rows(settings, "jobs", name="orders.process") == 0


async def test_a_coupon_is_redeemed_with_the_order(shop: Client, settings: Settings) -> None:
    coupon = await create_coupon(shop, time_window_coupon(discount_value="10", per_user_limit=1))
    product = await create_product(shop, price="40.00", stock=10)
    answer = await place(shop, "user_c", [(product["id"], 2)], coupon_code=coupon["code"].lower())
    assert answer.status_code == 202, answer.text
    order = await order_settles(shop, answer.json()["order_id"])
    assert (order["subtotal"], order["discount"], order["total"]) == ("80.00", "8.00", "72.00")
    assert order["coupon_code"] == coupon["code"]
    assert await count_rows(settings, "coupon_usage", order_id=order["id"]) == 1


async def test_a_refused_coupon_reserves_nothing(shop: Client, settings: Settings) -> None:
    coupon = await create_coupon(shop, time_window_coupon(per_user_limit=1))
    product = await create_product(shop, stock=10)
    first = await place(shop, "user_c", [(product["id"], 1)], coupon_code=coupon["code"])
    assert first.status_code == 202
    second = await place(shop, "user_c", [(product["id"], 1)], coupon_code=coupon["code"])
    assert second.status_code == 409
    assert second.json()["reason"] == "user_limit_reached"
    stock = await get(shop, f"/api/v1/inventory/{product['id']}")
    assert stock["current_stock"] == 9  # the first order's unit only
    assert await count_rows(settings, "orders") == 1
    unknown = await place(shop, "user_c", [(product["id"], 1)], coupon_code="NOPE-123")
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "code"


async def test_cancelling_releases_stock_and_the_coupon_use(
    shop: Client, settings: Settings
) -> None:
    coupon = await create_coupon(shop, time_window_coupon(per_user_limit=1, usage_limit=1))
    product = await create_product(shop, stock=3)
    answer = await place(shop, "user_x", [(product["id"], 3)], coupon_code=coupon["code"])
    order_id = answer.json()["order_id"]
    await order_settles(shop, order_id)
    cancelled = await shop.post(f"/api/v1/orders/{order_id}/cancel", headers=SERVICE)
    assert cancelled.json()["status"] == "cancelled"
    assert (await get(shop, f"/api/v1/inventory/{product['id']}"))["current_stock"] == 3
    assert await count_rows(settings, "coupon_usage") == 0
    # The coupon's global and per-user uses are free again, in validation too.
    again = await place(shop, "user_x", [(product["id"], 1)], coupon_code=coupon["code"])
    assert again.status_code == 202, again.text


async def test_the_same_key_is_one_order_even_concurrently(
    shop: Client, settings: Settings
) -> None:
    product = await create_product(shop, stock=100)
    key = idempotency_key()
    answers = await asyncio.gather(
        *(place(shop, "user_1", [(product["id"], 1)], key=key) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replay") == "true" for a in answers) == 19
    assert await count_rows(settings, "orders") == 1
    await order_settles(shop, answers[0].json()["order_id"])
    assert (await get(shop, f"/api/v1/inventory/{product['id']}"))["sold"] == 1
    different = await place(shop, "user_1", [(product["id"], 2)], key=key)
    assert different.status_code == 422


async def _failing_shop(settings: Settings, **overrides: Any) -> AsyncTestClient[Any]:
    values: dict[str, Any] = {
        "payment_mode": "simulated",
        "payment_failure_rate": 1.0,
        "order_job_max_attempts": 3,
        **overrides,
    }
    failing = shop_settings(settings, **values)
    return AsyncTestClient(app=create_app(failing))


async def test_a_job_out_of_attempts_is_dead_lettered_and_compensated(settings: Settings) -> None:
    async with await _failing_shop(settings) as client:
        product = await create_product(client, stock=5)
        answer = (await place(client, "user_d", [(product["id"], 2)])).json()
        order = await order_settles(client, answer["order_id"])
        assert (order["status"], order["failure_reason"]) == ("failed", "processing_failed")
        job = await get(client, f"/api/v1/orders/jobs/{answer['job_id']}")
        assert (job["status"], job["attempts"]) == ("dead", 3)
        assert "simulated payment failure" in job["last_error"]
        stock = await get(client, f"/api/v1/inventory/{product['id']}")
        assert (stock["current_stock"], stock["reserved"]) == (5, 0)
        letters = await get(client, "/api/v1/jobs/dead-letters", admin=True)
        assert [j["id"] for j in letters["items"]] == [answer["job_id"]]
        metrics = await get(client, "/api/v1/orders/admin/metrics", admin=True)
        assert metrics["dead_letters"] == 1 and metrics["by_status"]["failed"] == 1

    # Payments work again: the retried dead letter takes the units again and confirms.
    async with AsyncTestClient(app=create_app(shop_settings(settings))) as client:
        retried = await client.post(
            f"/api/v1/jobs/dead-letters/{answer['job_id']}/retry", headers=ADMIN
        )
        assert retried.status_code == 202 and retried.json()["status"] == "queued"

        async def confirmed() -> bool:
            order = await get(client, f"/api/v1/orders/{answer['order_id']}")
            return bool(order["status"] == "confirmed")

        assert await eventually(confirmed, within=10)
        stock = await get(client, f"/api/v1/inventory/{product['id']}")
        assert (stock["current_stock"], stock["sold"]) == (3, 2)
        assert (await get(client, "/api/v1/jobs/dead-letters", admin=True))["items"] == []


async def test_a_dead_letter_can_be_discarded(settings: Settings) -> None:
    async with await _failing_shop(settings, order_job_max_attempts=1) as client:
        product = await create_product(client, stock=5)
        answer = (await place(client, "user_d", [(product["id"], 1)])).json()
        await order_settles(client, answer["order_id"])
        job_id = answer["job_id"]
        discarded = await client.post(f"/api/v1/jobs/dead-letters/{job_id}/discard", headers=ADMIN)
        assert discarded.status_code == 204
        assert (await get(client, "/api/v1/jobs/dead-letters", admin=True))["items"] == []
        again = await client.post(f"/api/v1/jobs/dead-letters/{job_id}/discard", headers=ADMIN)
        assert again.status_code == 404
        assert (await get(client, f"/api/v1/orders/jobs/{job_id}"))["status"] == "dead"


async def test_an_unpaid_order_is_cancelled_after_the_payment_window(settings: Settings) -> None:
    slow = shop_settings(
        settings, payment_mode="simulated", payment_delay_ms=2_000, payment_window_seconds=0.5
    )
    async with AsyncTestClient(app=create_app(slow)) as client:
        product = await create_product(client, stock=4)
        answer = (await place(client, "user_w", [(product["id"], 4)])).json()
        order = await order_settles(client, answer["order_id"], within=5)
        assert (order["status"], order["failure_reason"]) == ("cancelled", "payment_window_expired")
        assert (await get(client, f"/api/v1/inventory/{product['id']}"))["current_stock"] == 4
