"""Analytics reads: the roll-up for the finished days, the system of record for today.

The roll-up (tasks.py) keeps one row per past day, so a year is a few hundred rows whatever
the number of orders; today's partial day is one indexed range over today's orders."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.analytics import repository
from peakshop.analytics.schemas import (
    CouponEffect,
    CouponEffectiveness,
    SalesBucket,
    SalesReport,
    TopProduct,
    TopProducts,
)
from peakshop.catalog.models import products
from peakshop.coupons.models import coupons
from peakshop.errors import InvalidInput
from peakshop.kit.money import format_cents

MAX_RANGE_DAYS = 3 * 366


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def check_range(first: date, last: date) -> None:
    if first > last:
        raise InvalidInput("from is after to", field="from")
    if (last - first).days > MAX_RANGE_DAYS:
        raise InvalidInput(f"the range is over {MAX_RANGE_DAYS} days", field="to")


def _period(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())  # the Monday
    if granularity == "month":
        return day.replace(day=1)
    return day


def _bucket(start: date, values: dict[str, int]) -> SalesBucket:
    orders = values["orders"]
    return SalesBucket(
        period_start=start,
        orders=orders,
        units=values["units"],
        revenue=format_cents(values["revenue_cents"]),
        discount=format_cents(values["discount_cents"]),
        average_order_value=format_cents(values["revenue_cents"] // orders if orders else 0),
    )


async def sales(
    conn: AsyncConnection, *, first: date, last: date, granularity: str, now: datetime
) -> SalesReport:
    check_range(first, last)
    today = now.date()
    per_day: dict[date, dict[str, int]] = {}
    for row in await repository.daily_sales(conn, first, min(last, today - timedelta(days=1))):
        per_day[row["day"]] = {
            k: row[k] for k in ("orders", "revenue_cents", "discount_cents", "units")
        }
    if first <= today <= last:
        per_day[today] = await repository.totals(conn, day_start(today), now + timedelta(seconds=1))
    grouped: dict[date, dict[str, int]] = defaultdict(
        lambda: {"orders": 0, "revenue_cents": 0, "discount_cents": 0, "units": 0}
    )
    overall = {"orders": 0, "revenue_cents": 0, "discount_cents": 0, "units": 0}
    for day, values in sorted(per_day.items()):
        for key, value in values.items():
            grouped[_period(day, granularity)][key] += value
            overall[key] += value
    return SalesReport(
        granularity=granularity,  # type: ignore[arg-type]
        from_day=first,
        to_day=last,
        buckets=[_bucket(start, values) for start, values in sorted(grouped.items())],
        totals=_bucket(first, overall),
        live_since=day_start(today).isoformat(),
    )


async def top_products(
    conn: AsyncConnection, *, first: date, last: date, limit: int, now: datetime
) -> TopProducts:
    check_range(first, last)
    today = now.date()
    units: dict[int, int] = defaultdict(int)
    revenue: dict[int, int] = defaultdict(int)
    rows = await repository.daily_products(conn, first, min(last, today - timedelta(days=1)))
    if first <= today <= last:
        rows += await repository.product_totals(conn, day_start(today), now + timedelta(seconds=1))
    for product_id, sold, cents in rows:
        units[product_id] += sold
        revenue[product_id] += cents
    best = sorted(units, key=lambda p: (-revenue[p], -units[p], p))[:limit]
    names = {}
    if best:
        result = await conn.execute(
            sa.select(products.c.id, products.c.name).where(products.c.id.in_(best))
        )
        names = {product_id: name for product_id, name in result}
    return TopProducts(
        items=[
            TopProduct(
                product_id=p, name=names.get(p), units=units[p], revenue=format_cents(revenue[p])
            )
            for p in best
        ]
    )


async def coupon_effectiveness(
    conn: AsyncConnection, *, first: date, last: date, limit: int, now: datetime
) -> CouponEffectiveness:
    check_range(first, last)
    today = now.date()
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    rows = await repository.daily_coupons(conn, first, min(last, today - timedelta(days=1)))
    if first <= today <= last:
        rows += await repository.coupon_totals(conn, day_start(today), now + timedelta(seconds=1))
    for coupon_id, count, discount, order_total in rows:
        entry = totals[coupon_id]
        entry[0] += count
        entry[1] += discount
        entry[2] += order_total
    best = sorted(totals, key=lambda c: (-totals[c][1], -totals[c][0], c))[:limit]
    codes = {}
    if best:
        result = await conn.execute(
            sa.select(coupons.c.id, coupons.c.code).where(coupons.c.id.in_(best))
        )
        codes = {coupon_id: code for coupon_id, code in result}
    return CouponEffectiveness(
        items=[
            CouponEffect(
                coupon_id=c,
                code=codes.get(c),
                redemptions=totals[c][0],
                discount_given=format_cents(totals[c][1]),
                order_total=format_cents(totals[c][2]),
            )
            for c in best
        ]
    )
