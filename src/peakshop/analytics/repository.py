"""SQL of the analytics: one UTC day of orders aggregated from the system of record, and the
roll-up tables read back. Days are half-open ranges of ``created_at`` (``used_at`` for
coupon redemptions), so the same indexes serve SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.analytics.models import (
    coupon_daily,
    product_sales_daily,
    product_sales_window,
    sales_daily,
    window_ranges,
)
from peakshop.coupons.models import coupon_usage
from peakshop.orders.models import order_items, orders

_CONFIRMED = orders.c.status == "confirmed"


def _in(column: Any, start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(column >= start, column < end)


async def totals(conn: AsyncConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Confirmed orders created in [start, end): count, revenue, discount, units."""
    order_row = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(orders.c.total_cents), 0),
                sa.func.coalesce(sa.func.sum(orders.c.discount_cents), 0),
            ).where(_in(orders.c.created_at, start, end), _CONFIRMED)
        )
    ).one()
    units = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(order_items.c.quantity), 0))
            .join(orders, orders.c.id == order_items.c.order_id)
            .where(_in(orders.c.created_at, start, end), _CONFIRMED)
        )
    ).scalar_one()
    return {
        "orders": int(order_row[0]),
        "revenue_cents": int(order_row[1]),
        "discount_cents": int(order_row[2]),
        "units": int(units),
    }


async def product_totals(
    conn: AsyncConnection, start: datetime, end: datetime
) -> list[tuple[int, int, int]]:
    """(product, units, revenue in cents) of the confirmed orders created in [start, end)."""
    rows = await conn.execute(
        sa.select(
            order_items.c.product_id,
            sa.func.sum(order_items.c.quantity),
            sa.func.sum(order_items.c.quantity * order_items.c.unit_price_cents),
        )
        .join(orders, orders.c.id == order_items.c.order_id)
        .where(_in(orders.c.created_at, start, end), _CONFIRMED)
        .group_by(order_items.c.product_id)
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]


async def coupon_totals(
    conn: AsyncConnection, start: datetime, end: datetime
) -> list[tuple[int, int, int, int]]:
    """(coupon, redemptions, discount, order totals) of the redemptions in [start, end)."""
    rows = await conn.execute(
        sa.select(
            coupon_usage.c.coupon_id,
            sa.func.count(),
            sa.func.sum(coupon_usage.c.discount_cents),
            sa.func.sum(coupon_usage.c.order_total_cents),
        )
        .where(_in(coupon_usage.c.used_at, start, end))
        .group_by(coupon_usage.c.coupon_id)
    )
    return [(int(c), int(n), int(d), int(t)) for c, n, d, t in rows]


async def replace_day(
    conn: AsyncConnection,
    day: date,
    *,
    day_totals: dict[str, int],
    products: list[tuple[int, int, int]],
    coupons: list[tuple[int, int, int, int]],
    now: datetime,
) -> None:
    for table in (sales_daily, product_sales_daily, coupon_daily):
        await conn.execute(sa.delete(table).where(table.c.day == day))
    await conn.execute(sa.insert(sales_daily).values(day=day, rolled_up_at=now, **day_totals))
    if products:
        await conn.execute(
            sa.insert(product_sales_daily),
            [{"day": day, "product_id": p, "units": u, "revenue_cents": r} for p, u, r in products],
        )
    if coupons:
        await conn.execute(
            sa.insert(coupon_daily),
            [
                {
                    "day": day,
                    "coupon_id": c,
                    "redemptions": n,
                    "discount_cents": d,
                    "order_total_cents": t,
                }
                for c, n, d, t in coupons
            ],
        )


async def first_activity(conn: AsyncConnection) -> datetime | None:
    first_order = (await conn.execute(sa.select(sa.func.min(orders.c.created_at)))).scalar()
    first_use = (await conn.execute(sa.select(sa.func.min(coupon_usage.c.used_at)))).scalar()
    found = [value for value in (first_order, first_use) if value is not None]
    return min(found) if found else None


async def rolled_days(conn: AsyncConnection) -> set[date]:
    return {row[0] for row in await conn.execute(sa.select(sales_daily.c.day))}


async def daily_sales(conn: AsyncConnection, first: date, last: date) -> Sequence[RowMapping]:
    query = (
        sa.select(sales_daily)
        .where(sales_daily.c.day >= first, sales_daily.c.day <= last)
        .order_by(sales_daily.c.day)
    )
    return (await conn.execute(query)).mappings().all()


async def daily_products(
    conn: AsyncConnection, first: date, last: date
) -> list[tuple[int, int, int]]:
    rows = await conn.execute(
        sa.select(
            product_sales_daily.c.product_id,
            sa.func.sum(product_sales_daily.c.units),
            sa.func.sum(product_sales_daily.c.revenue_cents),
        )
        .where(product_sales_daily.c.day >= first, product_sales_daily.c.day <= last)
        .group_by(product_sales_daily.c.product_id)
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]


async def daily_coupons(
    conn: AsyncConnection, first: date, last: date
) -> list[tuple[int, int, int, int]]:
    rows = await conn.execute(
        sa.select(
            coupon_daily.c.coupon_id,
            sa.func.sum(coupon_daily.c.redemptions),
            sa.func.sum(coupon_daily.c.discount_cents),
            sa.func.sum(coupon_daily.c.order_total_cents),
        )
        .where(coupon_daily.c.day >= first, coupon_daily.c.day <= last)
        .group_by(coupon_daily.c.coupon_id)
    )
    return [(int(c), int(n), int(d), int(t)) for c, n, d, t in rows]


async def day_row(conn: AsyncConnection, day: date) -> RowMapping | None:
    query = sa.select(sales_daily).where(sales_daily.c.day == day)
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def replace_windows(conn: AsyncConnection, *, last: date) -> None:
    """Every row gets the same ``last_day`` (``windows_ending`` reads it from any one row)."""
    await conn.execute(sa.delete(product_sales_window))
    for window, first in window_ranges(last):
        await conn.execute(
            sa.insert(product_sales_window).from_select(
                ["window_days", "product_id", "last_day", "units", "revenue_cents"],
                sa.select(
                    sa.literal(window),
                    product_sales_daily.c.product_id,
                    sa.literal(last, sa.Date),
                    sa.func.sum(product_sales_daily.c.units),
                    sa.func.sum(product_sales_daily.c.revenue_cents),
                )
                .where(product_sales_daily.c.day >= first, product_sales_daily.c.day <= last)
                .group_by(product_sales_daily.c.product_id),
            )
        )


async def windows_ending(conn: AsyncConnection) -> date | None:
    """The last day the windows sum up to. ``replace_windows`` writes every row with the same
    ``last_day`` in one transaction, so any row tells; one row, not ``max(last_day)``, which
    scans the whole table (up to a row per product and window: ~13 ms against ~1 ms on the
    100k-product catalog, benchmarks/analytics_roll_up_cost.py)."""
    query = sa.select(product_sales_window.c.last_day).limit(1)
    value: date | None = (await conn.execute(query)).scalar()
    return value


async def window_top(
    conn: AsyncConnection, *, window: int, last: date, limit: int
) -> list[tuple[int, int, int]]:
    rows = await conn.execute(
        sa.select(
            product_sales_window.c.product_id,
            product_sales_window.c.units,
            product_sales_window.c.revenue_cents,
        )
        .where(
            product_sales_window.c.window_days == window, product_sales_window.c.last_day == last
        )
        .order_by(product_sales_window.c.revenue_cents.desc(), product_sales_window.c.units.desc())
        .limit(limit)
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]


async def window_products(
    conn: AsyncConnection, *, window: int, product_ids: list[int]
) -> list[tuple[int, int, int]]:
    rows = await conn.execute(
        sa.select(
            product_sales_window.c.product_id,
            product_sales_window.c.units,
            product_sales_window.c.revenue_cents,
        ).where(
            product_sales_window.c.window_days == window,
            product_sales_window.c.product_id.in_(product_ids),
        )
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]


async def top_daily_products(
    conn: AsyncConnection, first: date, last: date, *, limit: int
) -> list[tuple[int, int, int]]:
    """The slow path of ranges that are no window: the database sums and ranks."""
    revenue = sa.func.sum(product_sales_daily.c.revenue_cents)
    rows = await conn.execute(
        sa.select(
            product_sales_daily.c.product_id, sa.func.sum(product_sales_daily.c.units), revenue
        )
        .where(product_sales_daily.c.day >= first, product_sales_daily.c.day <= last)
        .group_by(product_sales_daily.c.product_id)
        .order_by(revenue.desc())
        .limit(limit)
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]


async def daily_products_of(
    conn: AsyncConnection, first: date, last: date, product_ids: list[int]
) -> list[tuple[int, int, int]]:
    rows = await conn.execute(
        sa.select(
            product_sales_daily.c.product_id,
            sa.func.sum(product_sales_daily.c.units),
            sa.func.sum(product_sales_daily.c.revenue_cents),
        )
        .where(
            product_sales_daily.c.day >= first,
            product_sales_daily.c.day <= last,
            product_sales_daily.c.product_id.in_(product_ids),
        )
        .group_by(product_sales_daily.c.product_id)
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]


async def daily_products_of_day(conn: AsyncConnection, day: date) -> list[tuple[int, int, int]]:
    rows = await conn.execute(
        sa.select(
            product_sales_daily.c.product_id,
            product_sales_daily.c.units,
            product_sales_daily.c.revenue_cents,
        ).where(product_sales_daily.c.day == day)
    )
    return [(int(p), int(u), int(r)) for p, u, r in rows]
