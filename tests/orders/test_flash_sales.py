"""Flash sales through the HTTP API, on every backend: admission, rejections with their
reason, idempotency, processing to confirmed, and the stock ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from peakshop.kit.foreground import LoopSaturation
from tests.conftest import ADMIN, SERVICE, shop_settings
from tests.coupons.support import Client, eventually
from tests.fixtures.factories import flash_sale_payload, idempotency_key, iso
from tests.orders.support import buy, conserved, create_product, create_sale, get, order_settles


async def test_a_sale_takes_its_quantity_from_the_product(shop: Client) -> None:
    product = await create_product(shop, stock=50)
    sale = await create_sale(shop, product["id"], quantity=20, price="5.00")
    assert (sale["status"], sale["quantity"], sale["remaining"], sale["price"]) == (
        "active",
        20,
        20,
        "5.00",
    )
    after = await get(shop, f"/api/v1/inventory/{product['id']}")
    assert (after["current_stock"], after["allocated_to_flash_sales"]) == (30, 20)
    assert after["flash_sale_active"] is True


async def test_a_sale_larger_than_the_stock_is_refused_and_takes_nothing(shop: Client) -> None:
    product = await create_product(shop, stock=5)
    response = await shop.post(
        "/api/v1/flash-sales", json=flash_sale_payload(product["id"], quantity=6), headers=ADMIN
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_stock"
    after = await get(shop, f"/api/v1/inventory/{product['id']}")
    assert (after["current_stock"], after["allocated_to_flash_sales"]) == (5, 0)


async def test_buyers_are_admitted_until_sold_out_then_refused(shop: Client) -> None:
    sale = await create_sale(shop, quantity=3)
    answers = [await buy(shop, sale["id"], f"user_{n}") for n in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 202, 409, 409]
    assert answers[3].json()["reason"] == "sold_out"
    assert answers[3].json()["error"]["code"] == "sold_out"
    for answer in answers[:3]:
        body = answer.json()
        assert body["status"] == "pending" and body["order_id"] and body["job_id"]
        order = await order_settles(shop, body["order_id"])
        assert order["status"] == "confirmed"
        assert order["kind"] == "flash_sale" and order["total"] == "9.99"
    final = await get(shop, f"/api/v1/flash-sales/{sale['id']}")
    assert (final["remaining"], final["reserved"], final["sold"]) == (0, 0, 3)
    assert final["status"] == "sold_out"


async def test_the_per_user_cap_holds(shop: Client) -> None:
    sale = await create_sale(shop, quantity=10, per_user_limit=2)
    assert (await buy(shop, sale["id"], "user_1", quantity=2)).status_code == 202
    refused = await buy(shop, sale["id"], "user_1")
    assert refused.status_code == 409 and refused.json()["reason"] == "user_limit_reached"
    over = await buy(shop, sale["id"], "user_2", quantity=3)
    assert over.status_code == 409 and over.json()["reason"] == "user_limit_reached"
    assert (await buy(shop, sale["id"], "user_2", quantity=2)).status_code == 202


async def test_a_sale_outside_its_window_is_not_active(shop: Client) -> None:
    now = datetime.now(UTC)
    product = await create_product(shop, stock=100)
    later = await create_sale(
        shop,
        product["id"],
        starts_at=iso(now + timedelta(hours=1)),
        ends_at=iso(now + timedelta(hours=2)),
    )
    refused = await buy(shop, later["id"], "user_1")
    assert refused.status_code == 409 and refused.json()["reason"] == "not_active"
    assert later["status"] == "scheduled"
    brief = await create_sale(shop, product["id"], ends_at=iso(now + timedelta(seconds=1)))
    await asyncio.sleep(1.1)
    ended = await buy(shop, brief["id"], "user_1")
    assert ended.status_code == 409 and ended.json()["reason"] == "not_active"


async def test_the_same_key_returns_the_first_answer(shop: Client) -> None:
    sale = await create_sale(shop, quantity=5, per_user_limit=5)
    key = idempotency_key()
    first = await buy(shop, sale["id"], "user_1", key=key)
    again = await buy(shop, sale["id"], "user_1", key=key)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replay"] == "true"
    assert "idempotent-replay" not in first.headers
    other_body = await buy(shop, sale["id"], "user_1", quantity=2, key=key)
    assert other_body.status_code == 422
    assert other_body.json()["error"] == {
        "code": "idempotency_key_reused",
        "message": "this Idempotency-Key was used with a different request; use a new key",
        "field": "Idempotency-Key",
    }
    await order_settles(shop, first.json()["order_id"])
    final = await get(shop, f"/api/v1/flash-sales/{sale['id']}")
    assert (final["remaining"], final["sold"]) == (4, 1)


async def test_concurrent_buyers_never_oversell(shop: Client) -> None:
    sale = await create_sale(shop, quantity=7, per_user_limit=1)
    answers = await asyncio.gather(*(buy(shop, sale["id"], f"user_{n}") for n in range(40)))
    accepted = [a for a in answers if a.status_code == 202]
    assert len(accepted) == 7
    assert {a.json()["reason"] for a in answers if a.status_code != 202} == {"sold_out"}
    for answer in accepted:
        assert (await order_settles(shop, answer.json()["order_id"]))["status"] == "confirmed"
    final = await get(shop, f"/api/v1/flash-sales/{sale['id']}")
    assert conserved(final) and final["sold"] == 7


async def test_the_job_and_the_users_orders_are_visible(shop: Client) -> None:
    sale = await create_sale(shop, quantity=5, per_user_limit=5)
    ids = [(await buy(shop, sale["id"], "user_pages")).json() for _ in range(3)]
    for answer in ids:
        await order_settles(shop, answer["order_id"])

        async def job_done(job_id: str = answer["job_id"]) -> dict[str, Any] | None:
            job = await get(shop, f"/api/v1/orders/jobs/{job_id}")
            return job if job["status"] == "done" else None

        job = await eventually(job_done)
        assert (job["attempts"], job["subject"]) == (1, answer["order_id"])
    first = await get(shop, "/api/v1/users/user_pages/orders?limit=2")
    assert [o["id"] for o in first["items"]] == [ids[2]["order_id"], ids[1]["order_id"]]
    rest = await get(shop, f"/api/v1/users/user_pages/orders?limit=2&cursor={first['next_cursor']}")
    assert [o["id"] for o in rest["items"]] == [ids[0]["order_id"]]
    assert rest["next_cursor"] is None


async def test_cancelling_gives_the_units_back_to_the_sale(shop: Client) -> None:
    sale = await create_sale(shop, quantity=2, per_user_limit=1)
    order = (await buy(shop, sale["id"], "user_1")).json()
    await order_settles(shop, order["order_id"])
    cancelled = await shop.post(f"/api/v1/orders/{order['order_id']}/cancel", headers=SERVICE)
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["failure_reason"]) == (
        "cancelled",
        "cancelled_by_request",
    )
    again = await shop.post(f"/api/v1/orders/{order['order_id']}/cancel", headers=SERVICE)
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancellable"
    final = await get(shop, f"/api/v1/flash-sales/{sale['id']}")
    assert (final["remaining"], final["reserved"], final["sold"]) == (2, 0, 0)
    # The buyer's cap is given back with the units.
    assert (await buy(shop, sale["id"], "user_1")).status_code == 202


async def test_admission_is_counted_in_metrics(shop: Client) -> None:
    sale = await create_sale(shop, quantity=1)
    await buy(shop, sale["id"], "user_1")
    await buy(shop, sale["id"], "user_2")

    async def counted() -> bool:
        text = (await shop.get("/metrics")).text
        return (
            'peakshop_flash_sale_admissions_total{outcome="admitted"}' in text
            and 'peakshop_flash_sale_admissions_total{outcome="sold_out"}' in text
        )

    assert await eventually(counted)


async def test_the_in_process_worker_yields_to_a_burst_of_orders(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While orders are placed faster than the threshold the worker takes no jobs (bar the
    batch it may already hold); once they slow down it confirms them all."""
    # A loaded test machine must not read as a saturated event loop here (that rule has its
    # own tests in tests/kit/test_foreground.py).
    monkeypatch.setattr(LoopSaturation, "SATURATED_LATE_SECONDS", 10.0)
    # One order a second: a slow request on a loaded CI machine must not read as a lull.
    yielding = shop_settings(settings, worker_yield_above_order_rate=1, worker_max_yield_seconds=60)
    async with AsyncTestClient(app=create_app(yielding)) as client:
        sale = await create_sale(client, quantity=100, per_user_limit=1)
        answers = []
        for number in range(30):  # ~20 orders a second for ~1.5 s
            response = await buy(client, sale["id"], f"burst_{number}")
            assert response.status_code == 202, response.text
            answers.append(response.json())
            await asyncio.sleep(0.05)
        # Read the statuses while the burst goes on (one more order before each read): read
        # after it, on a slow machine the worker had rightly started on them mid-read.
        statuses, more = [], []
        for number, answer in enumerate(answers):
            response = await buy(client, sale["id"], f"burst_more_{number}")
            assert response.status_code == 202, response.text
            more.append(response.json())
            statuses.append((await get(client, f"/api/v1/orders/{answer['order_id']}"))["status"])
        # The first orders' jobs may have been taken before the rate rose above 1 a second.
        assert statuses[5:].count("pending") == len(statuses) - 5, statuses
        for answer in answers + more:
            settled = await order_settles(client, answer["order_id"], within=10)
            assert settled["status"] == "confirmed"
