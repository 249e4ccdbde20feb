"""Analytics reads: the roll-up for the finished days, the system of record for today.

The roll-up (tasks.py) keeps one row per past day, so a year is a few hundred rows whatever
the number of orders; today's partial day is one indexed range over today's orders."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.analytics import repository
from peakshop.analytics.models import WINDOWS
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
from peakshop.kit.clock import from_db
from peakshop.kit.money import format_cents

MAX_RANGE_DAYS = 3 * 366


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def check_range(first: date, last: date) -> None:
    if first > last:
        raise InvalidInput("from is after to", field="from")
    if (last - first).days > MAX_RANGE_DAYS:
        raise InvalidInput(f"the range is over {MAX_RANGE_DAYS} days", field="to")


_SALES = ("orders", "revenue_cents", "discount_cents", "units")


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


async def _since_roll_up(conn: AsyncConnection, today: date) -> tuple[RowMapping | None, datetime]:
    """Today's partial roll-up (None if there is none yet) and the instant it covers up to:
    only the orders placed since then are read live. An order placed before that instant
    and confirmed after it is counted at the next roll-up (within a minute)."""
    row = await repository.day_row(conn, today)
    if row is None:
        return None, day_start(today)
    return row, from_db(row["rolled_up_at"]) or row["rolled_up_at"]


async def _today_totals(conn: AsyncConnection, *, today: date, now: datetime) -> dict[str, int]:
    row, since = await _since_roll_up(conn, today)
    live = await repository.totals(conn, since, now + timedelta(seconds=1))
    if row is not None:
        for key in _SALES:
            live[key] += row[key]
    return live


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
        per_day[_as_date(row["day"])] = {k: row[k] for k in _SALES}
    if first <= today <= last:
        per_day[today] = await _today_totals(conn, today=today, now=now)
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
    """Top products by revenue. For the usual ranges (the last 7, 30, 90 or 365 days up to
    today) the finished days come pre-summed (``product_sales_window``), so a read is a few
    index lookups; other ranges sum the daily rows in the database (slower, documented).
    Either way today is added live, and the result is exact: a product can only enter the
    top through today's sales if it sold today, so the window's top plus today's sellers
    hold the whole answer."""
    check_range(first, last)
    today = now.date()
    yesterday = today - timedelta(days=1)
    finished_last = min(last, yesterday)
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    today_rows: list[tuple[int, int, int]] = []
    if first <= today <= last:
        row, since = await _since_roll_up(conn, today)
        if row is not None:
            today_rows += await repository.daily_products_of_day(conn, today)
        today_rows += await repository.product_totals(conn, since, now + timedelta(seconds=1))
    today_revenue: dict[int, int] = defaultdict(int)
    for product, _, cents in today_rows:
        today_revenue[product] += cents
    window = (today - first).days + 1
    depth = max(limit * 20, 200)
    if (
        first <= finished_last
        and last >= yesterday
        and window in WINDOWS
        and await repository.windows_ending(conn) == yesterday
    ):
        ranked = await repository.window_top(conn, window=window, last=yesterday, limit=depth)
        missing = _could_still_rank(ranked, today_revenue, limit=limit, depth=depth)
        if missing:
            ranked += await repository.window_products(conn, window=window, product_ids=missing)
    elif first <= finished_last:
        ranked = await repository.top_daily_products(conn, first, finished_last, limit=depth)
        missing = _could_still_rank(ranked, today_revenue, limit=limit, depth=depth)
        if missing:
            ranked += await repository.daily_products_of(conn, first, finished_last, missing)
    else:
        ranked = []
    for product_id, units, cents in [*ranked, *today_rows]:
        totals[product_id][0] += units
        totals[product_id][1] += cents
    best = sorted(totals, key=lambda p: (-totals[p][1], -totals[p][0], p))[:limit]
    names = {}
    if best:
        result = await conn.execute(
            sa.select(products.c.id, products.c.name).where(products.c.id.in_(best))
        )
        names = {product_id: name for product_id, name in result}
    return TopProducts(
        items=[
            TopProduct(
                product_id=p,
                name=names.get(p),
                units=totals[p][0],
                revenue=format_cents(totals[p][1]),
            )
            for p in best
        ]
    )


def _could_still_rank(
    ranked: list[tuple[int, int, int]], today: dict[int, int], *, limit: int, depth: int
) -> list[int]:
    """Today's sellers outside the finished days' top ``depth`` that today's sales could
    lift into the top ``limit``: each has at most the depth-th revenue before today, so it
    needs today's revenue to reach the limit-th combined revenue from there."""
    if len(ranked) < depth:
        return [p for p in today if p not in {r[0] for r in ranked}]  # ranked holds them all
    floor = ranked[-1][2]
    combined = sorted((cents + today.get(product, 0) for product, _, cents in ranked), reverse=True)
    bar = combined[limit - 1] if len(combined) >= limit else 0
    known = {r[0] for r in ranked}
    return [p for p, cents in today.items() if p not in known and floor + cents >= bar]


async def coupon_effectiveness(
    conn: AsyncConnection, *, first: date, last: date, limit: int, now: datetime
) -> CouponEffectiveness:
    check_range(first, last)
    today = now.date()
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    rows = await repository.daily_coupons(conn, first, min(last, today - timedelta(days=1)))
    if first <= today <= last:
        row, since = await _since_roll_up(conn, today)
        if row is not None:
            rows += await repository.daily_coupons(conn, today, today)
        rows += await repository.coupon_totals(conn, since, now + timedelta(seconds=1))
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
