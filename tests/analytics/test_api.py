"""Analytics: the roll-up of finished days plus today's live numbers, by day, week and
month, top products and coupon effectiveness, compared with the orders themselves."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from peakshop.analytics.models import sales_daily
from peakshop.config import Settings
from peakshop.db import Database
from peakshop.orders.models import order_items, orders
from tests.conftest import ADMIN
from tests.coupons.support import Client, create_coupon
from tests.fixtures.factories import time_window_coupon
from tests.orders.support import create_product, order_settles, place

DAY = timedelta(days=1)


async def _past_orders(
    settings: Settings, product_id: int, spec: list[tuple[date, int, str]]
) -> None:
    """Orders written straight into the past: (day, total cents, status)."""
    db = Database(settings)
    try:
        async with db.write() as conn:
            for number, (day, total, status) in enumerate(spec):
                at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
                order_id = f"ord_past_{day.isoformat()}_{number}"
                await conn.execute(
                    sa.insert(orders).values(
                        id=order_id,
                        user_id="user_past",
                        kind="regular",
                        status=status,
                        subtotal_cents=total,
                        discount_cents=0,
                        total_cents=total,
                        idempotency_scope="past",
                        idempotency_key=order_id,
                        request_hash="x",
                        job_id=f"job_{order_id}",
                        created_at=at,
                        updated_at=at,
                        pay_by=at,
                    )
                )
                await conn.execute(
                    sa.insert(order_items).values(
                        order_id=order_id,
                        product_id=product_id,
                        quantity=2,
                        unit_price_cents=total // 2,
                    )
                )
    finally:
        await db.dispose()


async def _roll_up(client: Client) -> dict[str, Any]:
    response = await client.post("/api/v1/analytics/roll-up", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _get(client: Client, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_finished_days_come_from_the_roll_up_and_today_is_live(
    shop: Client, settings: Settings
) -> None:
    today = datetime.now(UTC).date()
    product = await create_product(shop, price="10.00", stock=100)
    d2, d9 = today - 2 * DAY, today - 9 * DAY
    await _past_orders(
        settings,
        product["id"],
        [
            (d2, 1_000, "confirmed"),
            (d2, 3_000, "confirmed"),
            (d2, 9_999, "cancelled"),
            (d9, 500, "confirmed"),
        ],
    )
    live = (await place(shop, "user_live", [(product["id"], 3)])).json()
    await order_settles(shop, live["order_id"])

    rolled = [date.fromisoformat(d) for d in (await _roll_up(shop))["days"]]
    assert d9 in rolled and d2 in rolled and today not in rolled

    report = await _get(shop, "/api/v1/analytics/sales", **{"from": str(d9), "to": str(today)})
    by_day = {b["period_start"]: b for b in report["buckets"]}
    assert (by_day[str(d2)]["orders"], by_day[str(d2)]["revenue"]) == (2, "40.00")
    assert by_day[str(d2)]["average_order_value"] == "20.00"
    assert by_day[str(d2)]["units"] == 4
    assert (by_day[str(d9)]["orders"], by_day[str(d9)]["revenue"]) == (1, "5.00")
    assert (by_day[str(today)]["orders"], by_day[str(today)]["revenue"]) == (1, "30.00")
    assert (report["totals"]["orders"], report["totals"]["revenue"]) == (4, "75.00")

    monthly = await _get(
        shop, "/api/v1/analytics/sales", **{"from": str(d9), "to": str(today)}, granularity="month"
    )
    assert sum(b["orders"] for b in monthly["buckets"]) == 4
    assert all(b["period_start"].endswith("-01") for b in monthly["buckets"])
    weekly = await _get(
        shop, "/api/v1/analytics/sales", **{"from": str(d9), "to": str(today)}, granularity="week"
    )
    assert all(date.fromisoformat(b["period_start"]).weekday() == 0 for b in weekly["buckets"])

    top = await _get(shop, "/api/v1/analytics/top-products", **{"from": str(d9), "to": str(today)})
    assert top["items"][0] == {
        "product_id": product["id"],
        "name": product["name"],
        "units": 2 + 2 + 2 + 3,
        "revenue": "75.00",
    }


async def test_a_late_cancellation_is_picked_up_by_the_next_roll_up(
    shop: Client, settings: Settings
) -> None:
    yesterday = datetime.now(UTC).date() - DAY
    product = await create_product(shop, stock=10)
    await _past_orders(settings, product["id"], [(yesterday, 2_000, "confirmed")])
    await _roll_up(shop)
    db = Database(settings)
    try:
        async with db.write() as conn:
            await conn.execute(sa.update(orders).values(status="cancelled"))
        await _roll_up(shop)  # yesterday is within the days redone each time
        async with db.read() as conn:
            row = (
                (await conn.execute(sa.select(sales_daily).where(sales_daily.c.day == yesterday)))
                .mappings()
                .one()
            )
    finally:
        await db.dispose()
    assert row["orders"] == 0


async def test_coupon_effectiveness(shop: Client) -> None:
    coupon = await create_coupon(shop, time_window_coupon(discount_value="10", per_user_limit=5))
    product = await create_product(shop, price="50.00", stock=10)
    for _ in range(2):
        answer = (
            await place(shop, "user_c", [(product["id"], 1)], coupon_code=coupon["code"])
        ).json()
        await order_settles(shop, answer["order_id"])
    report = await _get(shop, "/api/v1/analytics/coupons")
    assert report["items"][0] == {
        "coupon_id": coupon["id"],
        "code": coupon["code"],
        "redemptions": 2,
        "discount_given": "10.00",
        "order_total": "100.00",
    }


async def test_bad_ranges_are_named(shop: Client) -> None:
    for params, field in (
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"granularity": "year"}, "granularity"),
    ):
        response = await shop.get("/api/v1/analytics/sales", params=params, headers=ADMIN)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["field"] == field, (params, response.text)


async def test_top_products_over_a_window_add_today_exactly(
    shop: Client, settings: Settings
) -> None:
    """The last 30 days come from the pre-summed window; today's sales can still lift a
    product over one that led before today."""
    today = datetime.now(UTC).date()
    leader = await create_product(shop, price="10.00", stock=100)
    climber = await create_product(shop, price="10.00", stock=100)
    await _past_orders(settings, leader["id"], [(today - 3 * DAY, 6_000, "confirmed")])
    await _past_orders(settings, climber["id"], [(today - 2 * DAY, 2_000, "confirmed")])
    await _roll_up(shop)
    before = await _get(shop, "/api/v1/analytics/top-products")
    assert [item["product_id"] for item in before["items"]] == [leader["id"], climber["id"]]
    live = (await place(shop, "user_t", [(climber["id"], 5)])).json()
    await order_settles(shop, live["order_id"])
    after = await _get(shop, "/api/v1/analytics/top-products")
    assert [(i["product_id"], i["revenue"]) for i in after["items"]] == [
        (climber["id"], "70.00"),
        (leader["id"], "60.00"),
    ]
    # The same range spelled out by hand (no window) agrees.
    first = today - 29 * DAY
    spelled = await _get(
        shop, "/api/v1/analytics/top-products", **{"from": str(first), "to": str(today)}
    )
    assert spelled["items"] == after["items"]
    other = await _get(
        shop, "/api/v1/analytics/top-products", **{"from": str(first + DAY), "to": str(today)}
    )
    assert other["items"] == after["items"]  # a 29-day range: the daily rows, same answer
