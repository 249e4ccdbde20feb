"""Recording admitted flash-sale orders in batches: the fast path when every order is plain,
the order-by-order path (same outcome, per order) as soon as one is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from peakshop.config import Settings
from peakshop.db import Database
from peakshop.inventory.models import flash_sales
from peakshop.jobs.worker import JobType, new_message
from peakshop.orders.models import orders
from peakshop.orders.recording import Admitted, write_flash_orders
from tests.coupons.support import Client
from tests.orders.support import create_sale

JOB = JobType(name="orders.process", handle=lambda *_: None)  # type: ignore[arg-type,return-value]


def _admitted(sale: dict[str, Any], number: int, *, key: str | None = None) -> Admitted:
    payload = {
        "kind": "flash_sale",
        "order_id": f"ord_rec{sale['id']}_{number}",
        "sale_id": sale["id"],
        "product_id": sale["product_id"],
        "unit_price_cents": 999,
        "per_user_limit": sale["per_user_limit"],
        "user_id": f"user_{number}",
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
