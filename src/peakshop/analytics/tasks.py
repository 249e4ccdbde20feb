"""The scheduled roll-up: every finished day not rolled up yet, and the last few days again
(an order confirmed or cancelled late changes its day's numbers)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import structlog

from peakshop.analytics import repository
from peakshop.analytics.service import day_start
from peakshop.jobs.worker import Sweep
from peakshop.kit.clock import from_db, utcnow

if TYPE_CHECKING:
    from peakshop.config import Settings
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)


async def roll_up(runtime: Runtime, *, redo_days: int | None = None) -> list[date]:
    """Roll up the days that need it; each day in its own short transaction. Returns them."""
    redo = runtime.settings.analytics_redo_days if redo_days is None else redo_days
    today = utcnow().date()
    async with runtime.db.read() as conn:
        first_seen = from_db(await repository.first_activity(conn))
        done = await repository.rolled_days(conn)
    if first_seen is None:
        return []
    days = []
    day = first_seen.date()
    while day < today:
        if day not in done or day >= today - timedelta(days=redo):
            days.append(day)
        day += timedelta(days=1)
    for day in days:
        start, end = day_start(day), day_start(day + timedelta(days=1))
        async with runtime.db.read() as conn:
            totals = await repository.totals(conn, start, end)
            products = await repository.product_totals(conn, start, end)
            coupons = await repository.coupon_totals(conn, start, end)
        async with runtime.db.write() as conn:
            await repository.replace_day(
                conn, day, day_totals=totals, products=products, coupons=coupons, now=utcnow()
            )
    if days:
        log.info("analytics_rolled_up", days=len(days), first=str(days[0]), last=str(days[-1]))
    return days


async def _sweep(runtime: Runtime) -> None:
    await roll_up(runtime)


def sweeps(settings: Settings) -> list[Sweep]:
    return [Sweep(name="analytics-roll-up", every=settings.analytics_rollup_seconds, run=_sweep)]
