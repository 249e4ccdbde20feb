"""HTTP routes of the analytics (admin)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import msgspec
from litestar import Router, get, post
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from peakshop.analytics import service, tasks
from peakshop.analytics.schemas import CouponEffectiveness, Granularity, SalesReport, TopProducts
from peakshop.auth import admin_guard
from peakshop.kit.clock import utcnow
from peakshop.runtime import Runtime

From = Annotated[date | None, QueryParameter(name="from")]
To = Annotated[date | None, QueryParameter(name="to")]
DEFAULT_DAYS = 30


def _range(first: date | None, last: date | None) -> tuple[date, date]:
    today = utcnow().date()
    last = last or today
    return first or last - timedelta(days=DEFAULT_DAYS - 1), last


@get("/api/v1/analytics/sales", guards=[admin_guard])
async def sales(
    state: State,
    from_: From = None,
    to: To = None,
    granularity: FromQuery[Granularity] = "day",
) -> SalesReport:
    """Confirmed orders, revenue and average order value per day, week or month (UTC), from
    ``from`` to ``to`` inclusive (default: the last 30 days); today is computed live."""
    runtime: Runtime = state.runtime
    first, last = _range(from_, to)
    async with runtime.db.read() as conn:
        return await service.sales(
            conn, first=first, last=last, granularity=granularity, now=utcnow()
        )


@get("/api/v1/analytics/top-products", guards=[admin_guard])
async def top_products(
    state: State,
    from_: From = None,
    to: To = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
) -> TopProducts:
    """The products that brought the most revenue in the range."""
    runtime: Runtime = state.runtime
    first, last = _range(from_, to)
    async with runtime.db.read() as conn:
        return await service.top_products(conn, first=first, last=last, limit=limit, now=utcnow())


@get("/api/v1/analytics/coupons", guards=[admin_guard])
async def coupon_effectiveness(
    state: State,
    from_: From = None,
    to: To = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> CouponEffectiveness:
    """Coupons by discount given in the range: redemptions, discount, the totals they cut."""
    runtime: Runtime = state.runtime
    first, last = _range(from_, to)
    async with runtime.db.read() as conn:
        return await service.coupon_effectiveness(
            conn, first=first, last=last, limit=limit, now=utcnow()
        )


class RollUp(msgspec.Struct, kw_only=True):
    days: list[date]


@post("/api/v1/analytics/roll-up", guards=[admin_guard], status_code=200)
async def roll_up(state: State) -> RollUp:
    """Roll up now (the scheduled job does it every ``PEAKSHOP_ANALYTICS_ROLLUP_SECONDS``):
    after a backfill or an import of past orders, for instance."""
    return RollUp(days=await tasks.roll_up(state.runtime))


router = Router(
    path="/",
    route_handlers=[sales, top_products, coupon_effectiveness, roll_up],
    tags=["analytics"],
)
