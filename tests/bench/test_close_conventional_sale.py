"""The flash-sale bench ends the conventional baseline's sale once measured: its unpaid
orders would otherwise be cancelled by the next peakshop run's payment sweep, in the middle
of that run's measurement."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.bench.flash_sale import close_conventional_sale
from peakshop.config import Settings
from peakshop.db import Database
from peakshop.inventory.models import flash_sale_buyers, flash_sales
from peakshop.kit.clock import from_db
from peakshop.orders.models import orders
from tests.conftest import shop_settings
from tests.fixtures.flash import Attempt, create_sale, new_key, order_path


async def test_the_baselines_pending_orders_are_cancelled_and_its_sale_ended(
    settings: Settings,
) -> None:
    unprocessed = shop_settings(settings, worker_in_process=False)  # orders stay pending
    async with AsyncTestClient(app=create_app(unprocessed)) as client:
        sale = await create_sale(client, quantity=5, per_user_limit=1)
        for n in range(3):
            attempt = Attempt(f"buyer_{n}", 1, new_key())
            placed = await client.post(
                order_path(sale["id"]), json=attempt.body, headers=attempt.headers
            )
            assert placed.status_code == 202, placed.text

    await close_conventional_sale(settings, sale["id"])

    db = Database(settings)
    try:
        async with db.read() as conn:
            row = (
                (await conn.execute(sa.select(flash_sales).where(flash_sales.c.id == sale["id"])))
                .mappings()
                .one()
            )
            statuses = (
                await conn.execute(
                    sa.select(orders.c.status).where(orders.c.flash_sale_id == sale["id"])
                )
            ).scalars()
            held = (
                await conn.execute(
                    sa.select(sa.func.sum(flash_sale_buyers.c.quantity)).where(
                        flash_sale_buyers.c.sale_id == sale["id"]
                    )
                )
            ).scalar()
    finally:
        await db.dispose()
    assert sorted(statuses) == ["cancelled"] * 3
    assert (row["remaining"], row["reserved"], row["sold"], held) == (5, 0, 0, 0)
    ends_at = from_db(row["ends_at"])
    assert ends_at is not None and ends_at <= datetime.now(UTC)
