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
    from peakshop.db import Database
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)


# A scheduled run catches up on at most this many unrolled days (then the next run goes on),
# so that a database with a long history does not cost one run all at once.
CATCH_UP_DAYS = 31


async def roll_up(
    runtime: Runtime, *, redo_days: int | None = None, catch_up: int | None = None
) -> list[date]:
    redo = runtime.settings.analytics_redo_days if redo_days is None else redo_days
    return await roll_up_database(runtime.db, redo_days=redo, catch_up=catch_up)


async def roll_up_database(
    db: Database, *, redo_days: int, catch_up: int | None = None
) -> list[date]:
    """Roll up the days that need it, each in its own short transaction, and today so far
    (a partial row, as of ``rolled_up_at``: reads add only the orders placed since). When a
    day is newly finished, the top-products windows are recomputed. Returns the days."""
    redo = redo_days
    now = utcnow()
    today = now.date()
    async with db.read() as conn:
        first_seen = from_db(await repository.first_activity(conn))
        done = await repository.rolled_days(conn)
    if first_seen is None:
        return []
    days = []
    day = first_seen.date()
    recent = today - timedelta(days=redo)
    missing = 0
    while day < today:
        if day >= recent:
            days.append(day)
        elif day not in done and (catch_up is None or missing < catch_up):
            days.append(day)
            missing += 1
        day += timedelta(days=1)
    newly_finished = any(day not in done for day in days) or (
        today - timedelta(days=1) in done and not await _windows_fresh(db, today)
    )
    for day in [*days, today]:
        start = day_start(day)
        end = now if day == today else day_start(day + timedelta(days=1))
        async with db.read() as conn:
            totals = await repository.totals(conn, start, end)
            products = await repository.product_totals(conn, start, end)
            coupons = await repository.coupon_totals(conn, start, end)
        async with db.write() as conn:
            await repository.replace_day(
                conn, day, day_totals=totals, products=products, coupons=coupons, now=end
            )
    if newly_finished:
        await refresh_windows(db, today)
    if missing:  # the redone recent days are routine; a catch-up is worth a line
        log.info("analytics_caught_up", days=missing, first=str(days[0]), last=str(days[-1]))
    return days


async def _windows_fresh(db: Database, today: date) -> bool:
    async with db.read() as conn:
        return await repository.windows_ending(conn) == today - timedelta(days=1)


async def refresh_windows(db: Database, today: date) -> None:
    """Top-products totals over the finished days of the usual ranges (the last 7, 30, 90
    and 365 days, today excluded: reads add today live). Done once a day: summing a year of
    daily rows takes a few hundred milliseconds, too slow for each read."""
    last = today - timedelta(days=1)
    async with db.write() as conn:
        await repository.replace_windows(conn, last=last)
    log.info("analytics_windows_refreshed", ending=str(last))


async def _sweep(runtime: Runtime) -> None:
    await roll_up(runtime, catch_up=CATCH_UP_DAYS)


def sweeps(settings: Settings) -> list[Sweep]:
    return [Sweep(name="analytics-roll-up", every=settings.analytics_rollup_seconds, run=_sweep)]
