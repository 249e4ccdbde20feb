"""Order reads, cancellation and the orders dashboard numbers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.db import Record
from peakshop.jobs import repository as jobs_repository
from peakshop.kit.clock import from_db
from peakshop.kit.money import format_cents
from peakshop.orders import lifecycle, repository
from peakshop.orders.errors import NotCancellable, OrderNotFound
from peakshop.orders.schemas import OrderItemOut, OrderMetrics, OrderOut

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

RATE_WINDOW = timedelta(minutes=1)


def _dt(value: datetime) -> datetime:
    return from_db(value) or value


def order_out(row: RowMapping, items: list[Record]) -> OrderOut:
    return OrderOut(
        id=row["id"],
        user_id=row["user_id"],
        kind=row["kind"],
        flash_sale_id=row["flash_sale_id"],
        status=row["status"],
        items=[
            OrderItemOut(
                product_id=item["product_id"],
                quantity=item["quantity"],
                unit_price=format_cents(item["unit_price_cents"]),
            )
            for item in items
        ],
        subtotal=format_cents(row["subtotal_cents"]),
        discount=format_cents(row["discount_cents"]),
        total=format_cents(row["total_cents"]),
        coupon_code=row["coupon_code"],
        failure_reason=row["failure_reason"],
        job_id=row["job_id"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        pay_by=_dt(row["pay_by"]),
    )


async def get_order(conn: AsyncConnection, *, order_id: str) -> OrderOut:
    row = await conn.run_sync(repository.get_order, order_id)
    if row is None:
        raise OrderNotFound(order_id)
    return order_out(row, (await conn.run_sync(repository.items_of, [order_id]))[order_id])


async def user_orders(
    conn: AsyncConnection, *, user_id: str, before_seq: int | None, limit: int
) -> tuple[list[OrderOut], int | None]:
    """A page of the user's orders, newest first, and the seq to continue before."""
    rows = await repository.list_user_orders(conn, user_id, before_seq=before_seq, limit=limit + 1)
    page = list(rows[:limit])
    items = await conn.run_sync(repository.items_of, [row["id"] for row in page])
    next_seq = page[-1]["seq"] if len(rows) > limit and page else None
    return [order_out(row, items[row["id"]]) for row in page], next_seq


async def cancel_order(runtime: Runtime, *, order_id: str, now: datetime) -> OrderOut:
    """pending or confirmed -> cancelled; the units and the coupon use are given back."""
    async with runtime.db.write() as conn:
        row = await conn.run_sync(repository.get_order, order_id)
        if row is None:
            raise OrderNotFound(order_id)
        hooks = await lifecycle.end(
            runtime, conn, row, to_status="cancelled", reason="cancelled_by_request", now=now
        )
        if hooks is None:
            raise NotCancellable(row["status"])
    await lifecycle.run_hooks(hooks)
    async with runtime.db.read() as conn:
        return await get_order(conn, order_id=order_id)


async def order_metrics(runtime: Runtime, *, now: datetime) -> OrderMetrics:
    async with runtime.db.read() as conn:
        by_status = await repository.counts_by_status(conn)
        recent = await repository.placed_since(conn, now - RATE_WINDOW)
        jobs = await jobs_repository.counts_by_status(conn)
        dead = await jobs_repository.count_dead_letters(conn)
        oldest = from_db(await repository.oldest_pending(conn))
    return OrderMetrics(
        by_status={status: by_status.get(status, 0) for status in lifecycle.STATUSES},
        orders_per_second=recent / RATE_WINDOW.total_seconds(),
        queue_depth=await runtime.queue.depth(),
        jobs_by_status=jobs,
        dead_letters=dead,
        oldest_pending_age_seconds=None if oldest is None else (now - oldest).total_seconds(),
    )
