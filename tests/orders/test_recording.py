"""Recording admitted flash-sale orders in batches: the fast path when every order is plain,
the order-by-order path (same outcome, per order) as soon as one is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from peakshop.config import Settings
from peakshop.db import Database
from peakshop.inventory.models import flash_sales
from peakshop.jobs.models import jobs
from peakshop.jobs.worker import JobType, new_message
from peakshop.orders.models import order_items, orders
from peakshop.orders.recording import Admitted, record_flash_orders_one_by_one, write_flash_orders
from tests.coupons.support import Client
from tests.orders.support import create_sale

JOB = JobType(name="orders.process", handle=lambda *_: None)  # type: ignore[arg-type,return-value]


def _admitted(
    sale: dict[str, Any], number: int, *, key: str | None = None, user: str | None = None
) -> Admitted:
    payload = {
        "kind": "flash_sale",
        "order_id": f"ord_rec{sale['id']}_{number}",
        "sale_id": sale["id"],
        "product_id": sale["product_id"],
        "unit_price_cents": 999,
        "per_user_limit": sale["per_user_limit"],
        "user_id": user or f"user_{number}",
        "quantity": 1,
        "idempotency_key": key or f"key-{number}",
        "request_hash": f"hash-{number}",
    }
    now = datetime.now(UTC)
    message = new_message(JOB, job_id=f"job_rec{sale['id']}_{number}", payload=payload)
    return Admitted(payload=payload, message=message, now=now, pay_by=now + timedelta(minutes=5))


async def _record(settings: Settings, batch: list[Admitted]) -> list[tuple[str, Any]]:
    db = Database(settings)
    try:
        return await write_flash_orders(db, batch)
    finally:
        await db.dispose()


async def _state(settings: Settings, sale_id: int) -> tuple[dict[str, Any], dict[str, str]]:
    db = Database(settings)
    try:
        async with db.read() as conn:
            sale = (
                (await conn.execute(sa.select(flash_sales).where(flash_sales.c.id == sale_id)))
                .mappings()
                .one()
            )
            rows = await conn.execute(sa.select(orders.c.id, orders.c.status))
            statuses = {order_id: status for order_id, status in rows}
        return dict(sale), statuses
    finally:
        await db.dispose()


async def test_a_plain_batch_is_recorded_whole(shop: Client, settings: Settings) -> None:
    sale = await create_sale(shop, quantity=5)
    results = await _record(settings, [_admitted(sale, n) for n in range(3)])
    assert [outcome for outcome, _ in results] == ["created"] * 3
    row, statuses = await _state(settings, sale["id"])
    # The app's worker may already be confirming them: reserved or sold, but taken.
    assert (row["remaining"], row["reserved"] + row["sold"]) == (2, 3)
    assert set(statuses.values()) <= {"pending", "confirmed"} and len(statuses) == 3


async def test_a_batch_with_a_recorded_order_falls_back_per_order(
    shop: Client, settings: Settings
) -> None:
    sale = await create_sale(shop, quantity=5)
    await _record(settings, [_admitted(sale, 0)])
    results = await _record(settings, [_admitted(sale, 0), _admitted(sale, 1)])
    assert [outcome for outcome, _ in results] == ["exists", "created"]
    row, statuses = await _state(settings, sale["id"])
    assert (row["remaining"], row["reserved"] + row["sold"]) == (3, 2)  # the first one once
    assert len(statuses) == 2


async def test_a_batch_beyond_the_record_refuses_the_extra_orders(
    shop: Client, settings: Settings
) -> None:
    sale = await create_sale(shop, quantity=2)
    results = await _record(settings, [_admitted(sale, n) for n in range(3)])
    assert [outcome for outcome, _ in results] == ["created", "created", "refused"]
    row, statuses = await _state(settings, sale["id"])
    assert (row["remaining"], row["reserved"] + row["sold"]) == (0, 2)
    assert sorted(statuses.values())[0] == "failed"
    assert set(sorted(statuses.values())[1:]) <= {"pending", "confirmed"}


async def test_a_key_taken_by_another_order_is_a_duplicate(
    shop: Client, settings: Settings
) -> None:
    sale = await create_sale(shop, quantity=5)
    await _record(settings, [_admitted(sale, 0, key="same")])
    results = await _record(settings, [_admitted(sale, 1, key="same")])
    outcome, other = results[0]
    assert outcome == "duplicate" and other is not None
    assert other["id"] == f"ord_rec{sale['id']}_0"
    row, statuses = await _state(settings, sale["id"])
    assert row["reserved"] + row["sold"] == 1 and len(statuses) == 1


async def test_a_buyer_past_the_cap_within_one_batch_is_refused(
    shop: Client, settings: Settings
) -> None:
    sale = await create_sale(shop, quantity=5, per_user_limit=1)
    batch = [_admitted(sale, 0, user="twice"), _admitted(sale, 1, user="twice")]
    results = await _record(settings, batch)
    assert [outcome for outcome, _ in results] == ["created", "refused"]
    row, statuses = await _state(settings, sale["id"])
    assert (row["remaining"], row["reserved"] + row["sold"]) == (4, 1)
    assert sorted(statuses.values())[0] == "failed"


async def test_the_batched_and_the_per_order_paths_store_the_same_rows(
    shop: Client, settings: Settings
) -> None:
    """On SQLite the batch runs on the driver, the per-order path through Core: every column
    must come back the same, as the same SQL type, whichever wrote it."""
    sale = await create_sale(shop, quantity=5)
    per_order, batched = [_admitted(sale, 0)], [_admitted(sale, 1), _admitted(sale, 2)]
    db = Database(settings)
    try:
        await db.run_write(lambda conn: record_flash_orders_one_by_one(conn, per_order))
        await _record(settings, batched)
        async with db.read() as conn:
            stored = {}
            for item in per_order + batched:
                order_id, job_id = item.payload["order_id"], item.message.id
                order = await conn.execute(sa.select(orders).where(orders.c.id == order_id))
                line = await conn.execute(
                    sa.select(order_items).where(order_items.c.order_id == order_id)
                )
                job = await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))
                stored[order_id] = (
                    order.mappings().one(),
                    line.mappings().one(),
                    job.mappings().one(),
                )
            if db.is_sqlite:
                types = await conn.execute(
                    sa.text(
                        "SELECT typeof(created_at), length(created_at), typeof(pay_by),"
                        " length(pay_by), typeof(flash_sale_id), typeof(total_cents)"
                        " FROM orders WHERE id IN (:a, :b, :c)"
                    ),
                    {
                        "a": per_order[0].payload["order_id"],
                        "b": batched[0].payload["order_id"],
                        "c": batched[1].payload["order_id"],
                    },
                )
                assert len(set(types.all())) == 1
    finally:
        await db.dispose()
    for item in per_order + batched:
        order, line, job = stored[item.payload["order_id"]]
        assert order["user_id"] == item.payload["user_id"]
        assert order["flash_sale_id"] == sale["id"] and order["kind"] == "flash_sale"
        assert order["total_cents"] == order["subtotal_cents"] == 999
        assert order["discount_cents"] == 0 and order["coupon_code"] is None
        assert order["idempotency_key"] == item.payload["idempotency_key"]
        assert order["request_hash"] == item.payload["request_hash"]
        assert order["job_id"] == item.message.id
        assert _same_instant(order["created_at"], item.now)
        assert _same_instant(order["pay_by"], item.pay_by)
        assert (line["product_id"], line["quantity"], line["unit_price_cents"]) == (
            sale["product_id"], 1, 999,
        )  # fmt: skip
        assert (job["name"], job["payload"], job["subject"]) == (
            item.message.name, item.message.payload, item.message.subject,
        )  # fmt: skip
        assert job["max_attempts"] == item.message.max_attempts
        # Core's batch path stamps every job with its batch's first time.
        assert abs(job["available_at"] - item.now.timestamp()) < 1.0
        assert abs(_aware(job["created_at"]) - item.now) < timedelta(seconds=1)


def _aware(stored: datetime) -> datetime:
    # SQLite gives back naive UTC datetimes, PostgreSQL aware ones.
    return stored.replace(tzinfo=stored.tzinfo or UTC)


def _same_instant(stored: datetime, expected: datetime) -> bool:
    return _aware(stored) == expected
