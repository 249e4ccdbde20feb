"""The flash-sale benchmark's set-up over HTTP, and its verdict read from the database.

The server is asked to create a product and a sale through the admin API, like an operator
would; what happened is then read from the system of record, not from the server's own
answers: units sold, orders by status, oversold units, the conservation equation, the
per-user cap, and how long the queue took to drain the winners.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from peakshop.config import Settings
from peakshop.inventory.models import flash_sales
from peakshop.kit.clock import from_db
from peakshop.orders.models import order_items, orders


async def create_sale(
    url: str, admin_token: str, *, quantity: int, per_user_limit: int, price: str = "9.99"
) -> int:
    headers = {"Authorization": f"Bearer {admin_token}"}
    now = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        product = await client.post(
            "/api/v1/inventory",
            json={"name": f"bench product {now:%H:%M:%S}", "price": "19.99", "stock": quantity},
        )
        product.raise_for_status()
        sale = await client.post(
            "/api/v1/flash-sales",
            json={
                "product_id": product.json()["id"],
                "price": price,
                "quantity": quantity,
                "starts_at": (now - timedelta(minutes=1)).isoformat(),
                "ends_at": (now + timedelta(hours=2)).isoformat(),
                "per_user_limit": per_user_limit,
            },
        )
        sale.raise_for_status()
        return int(sale.json()["id"])


def attempts(
    sale_id: int, *, count: int, users: int, tag: str
) -> tuple[list[bytes], list[dict[str, str]]]:
    """Bodies and headers of ``count`` attempts by ``users`` distinct buyers, each attempt
    with its own Idempotency-Key."""
    bodies, headers = [], []
    for number in range(count):
        user = f"{tag}-u{number % users:07d}"
        bodies.append(b'{"user_id":"%s","quantity":1}' % user.encode())
        headers.append({"Idempotency-Key": f"{tag}-s{sale_id}-a{number}"})
    return bodies, headers


async def admission_outcomes(url: str) -> dict[str, float]:
    """The server's admission counters (Prometheus text), by outcome."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    outcomes: dict[str, float] = {}
    prefix = 'peakshop_flash_sale_admissions_total{outcome="'
    for line in text.splitlines():
        if line.startswith(prefix):
            outcome, _, value = line[len(prefix) :].partition('"} ')
            outcomes[outcome] = outcomes.get(outcome, 0.0) + float(value)
    return outcomes


async def settle(settings: Settings, sale_id: int, *, within: float) -> dict[str, Any]:
    """Wait until no order of the sale is pending (the queue drained them), then read the
    verdict. ``drained`` is False if ``within`` seconds passed first."""
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    deadline = time.monotonic() + within
    try:
        while True:
            verdict = await _verdict(engine, sale_id)
            if verdict["orders_by_status"].get("pending", 0) == 0:
                verdict["drained"] = True
                return verdict
            if time.monotonic() > deadline:
                verdict["drained"] = False
                return verdict
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def _verdict(engine: Any, sale_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        sale = (
            (await conn.execute(sa.select(flash_sales).where(flash_sales.c.id == sale_id)))
            .mappings()
            .one()
        )
        by_status = {
            status: (int(count), int(units or 0))
            for status, count, units in await conn.execute(
                sa.select(orders.c.status, sa.func.count(), sa.func.sum(order_items.c.quantity))
                .join(order_items, order_items.c.order_id == orders.c.id)
                .where(orders.c.flash_sale_id == sale_id)
                .group_by(orders.c.status)
            )
        }
        per_user_max = (
            await conn.execute(
                sa.select(sa.func.max(sa.literal_column("held"))).select_from(
                    sa.select(sa.func.sum(order_items.c.quantity).label("held"))
                    .join(orders, orders.c.id == order_items.c.order_id)
                    .where(
                        orders.c.flash_sale_id == sale_id,
                        orders.c.status.in_(("pending", "confirmed")),
                    )
                    .group_by(orders.c.user_id)
                    .subquery()
                )
            )
        ).scalar()
        first, last_placed, last = (
            await conn.execute(
                sa.select(
                    sa.func.min(orders.c.created_at),
                    sa.func.max(orders.c.created_at),
                    sa.func.max(orders.c.updated_at),
                ).where(orders.c.flash_sale_id == sale_id, orders.c.status == "confirmed")
            )
        ).one()
    held_units = sum(
        units for status, (_, units) in by_status.items() if status in ("pending", "confirmed")
    )
    first, last_placed, last = from_db(first), from_db(last_placed), from_db(last)
    return {
        "sale_id": sale_id,
        "quantity": sale["quantity"],
        "remaining": sale["remaining"],
        "reserved": sale["reserved"],
        "sold": sale["sold"],
        "conserved": sale["remaining"] + sale["reserved"] + sale["sold"] == sale["quantity"],
        "orders_by_status": {status: count for status, (count, _) in by_status.items()},
        "units_held_by_orders": held_units,
        "oversold": max(0, held_units - sale["quantity"]),
        "orders_agree_with_sale": held_units == sale["reserved"] + sale["sold"],
        "max_units_per_user": int(per_user_max or 0),
        "per_user_limit": None,
        "first_order_to_last_confirmed_s": None
        if first is None or last is None
        else (last - first).total_seconds(),
        # What the queue still had to do when the last winner arrived: the drain of an
        # open-loop run, whose winners arrive over seconds at the sending rate.
        "last_order_to_last_confirmed_s": None
        if last_placed is None or last is None
        else (last - last_placed).total_seconds(),
    }
