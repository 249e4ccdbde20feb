"""``peakshop seed``: a large, realistic data set (1M users, 5K coupons by default) written
through each database's bulk path, then the hot usage counters rebuilt from it."""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from peakshop import migrate
from peakshop.bench.seed_catalog_data import make_catalog
from peakshop.bench.seed_catalog_store import CatalogPlan
from peakshop.bench.seed_data import CouponSet, SeedError, make_coupons, make_usage, user_id
from peakshop.bench.seed_store import DatabaseNotEmpty, Plan, Tracker, write_postgres, write_sqlite
from peakshop.config import Settings
from peakshop.coupons import repository as coupon_repository
from peakshop.coupons.rules import check_static, check_usage
from peakshop.db import Database
from peakshop.kit.money import format_cents
from peakshop.state import build_state

CHUNK_SIZE = 100_000
# The demo coupons printed at the end are valid for an order of this total.
DEMO_ORDER_TOTAL_CENTS = 5_000


@dataclass(frozen=True, slots=True)
class DemoCoupon:
    code: str
    user_id: str


@dataclass(frozen=True, slots=True)
class SeedReport:
    users: int
    coupons: int
    usage: int
    user_usage: int  # coupon_user_usage rows
    coupons_by_type: dict[str, int]
    coupons_by_state: dict[str, int]
    seconds: float
    phases: dict[str, float]
    skipped: bool = False  # --if-empty found data
    sellers: int = 0
    products: int = 0
    orders: int = 0
    order_items: int = 0
    user_specific_demo: DemoCoupon | None = None
    time_window_demo: DemoCoupon | None = None


async def seed_database(
    settings: Settings,
    *,
    users: int,
    coupons: int,
    usage: int,
    seed: int,
    sellers: int = 0,
    products: int = 0,
    orders: int = 0,
    reset: bool = False,
    if_empty: bool = False,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> SeedReport:
    """Migrate, then write the data set in one transaction. Raises SeedError for sizes that
    cannot work and DatabaseNotEmpty when data exists and neither reset nor if_empty is set."""
    if min(users, coupons, usage, sellers, products, orders) < 0 or chunk_size < 1:
        raise SeedError("sizes must not be negative")
    if orders and not products:
        raise SeedError("orders need products: give --products too")
    if reset and if_empty:
        raise SeedError("--reset and --if-empty contradict each other: choose one")
    sqlite_path = _sqlite_path(settings) if settings.is_sqlite else None
    started = time.perf_counter()
    tracker = Tracker(progress)
    with tracker.phase("migrate"):
        await migrate.upgrade_async(settings)
    now = time.time()
    with tracker.phase("generate"):
        coupon_list = make_coupons(count=coupons, users=users, seed=seed, now=now)
        data = make_usage(coupon_list, count=usage, users=users, seed=seed, now=now)
        catalog = None
        if products or sellers:
            catalog = CatalogPlan(
                catalog=make_catalog(sellers=sellers, products=products, seed=seed, now=now),
                orders=orders,
                users=users,
                seed=seed,
                now=now,
            )
    plan = Plan(
        users=users,
        seed=seed,
        now=now,
        chunk_size=chunk_size,
        reset=reset,
        if_empty=if_empty,
        data=data,
        catalog=catalog,
    )
    if sqlite_path is not None:
        written = await asyncio.to_thread(write_sqlite, sqlite_path, plan, tracker)
    else:
        written = await write_postgres(_pg_dsn(settings), plan, tracker)
    if not written:
        return SeedReport(
            users=0,
            coupons=0,
            usage=0,
            user_usage=0,
            coupons_by_type={},
            coupons_by_state={},
            seconds=time.perf_counter() - started,
            phases=tracker.phases,
            skipped=True,
        )
    if settings.redis_url:
        with tracker.phase("redis counters"):
            await _reload_usage_counters(settings)
    return SeedReport(
        users=users,
        coupons=len(data.coupons),
        usage=len(data.usage),
        user_usage=len(data.per_user),
        sellers=sellers,
        products=products,
        orders=0 if catalog is None else catalog.catalog.orders,
        order_items=0 if catalog is None else catalog.catalog.items,
        coupons_by_type=dict(Counter(c.rule.type for c in data.coupons)),
        coupons_by_state=dict(Counter(c.state for c in data.coupons)),
        seconds=time.perf_counter() - started,
        phases=tracker.phases,
        user_specific_demo=_demo(data, "user_specific", now),
        time_window_demo=_demo(data, "time_window", now),
    )


def _sqlite_path(settings: Settings) -> str:
    path = make_url(settings.database_url).database
    if not path or path == ":memory:":
        raise SeedError("seeding needs a SQLite database file, not an in-memory database")
    return path


def _pg_dsn(settings: Settings) -> str:
    url = make_url(settings.database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _reload_usage_counters(settings: Settings) -> None:
    """Rebuild the Redis counters from the system of record, as a starting server does:
    the old ones describe coupons that no longer exist."""
    db = Database(settings)
    state = build_state(settings, db)
    try:
        async with db.read() as conn:
            totals = await coupon_repository.usage_totals(conn)
            per_user = await coupon_repository.per_user_usage(conn)
        await state.counters.load(totals=totals, per_user=per_user)
    finally:
        await state.close()
        await db.dispose()


def _demo(data: CouponSet, coupon_type: str, now: float) -> DemoCoupon | None:
    """The first coupon of the type that a request with the demo total would find valid."""
    for coupon in data.coupons:
        rule = coupon.rule
        if rule.type != coupon_type:
            continue
        user = rule.owner_user_id or user_id(1)
        used_by_user = data.per_user.get((rule.id, user), 0)
        if (
            check_static(rule, user_id=user, order_total_cents=DEMO_ORDER_TOTAL_CENTS, now=now)
            is None
            and check_usage(rule, used_total=coupon.used_count, used_by_user=used_by_user) is None
        ):
            return DemoCoupon(code=rule.code, user_id=user)
    return None


# --- the command ------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """The high-water mark of this process's resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_command(
    settings: Settings,
    *,
    users: int,
    coupons: int,
    usage: int,
    seed: int,
    reset: bool,
    if_empty: bool,
    sellers: int = 0,
    products: int = 0,
    orders: int = 0,
) -> int:
    """``peakshop seed`` with a progress bar and a summary; returns the exit code."""
    console = Console()
    progress = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    try:
        with progress:
            report = asyncio.run(
                seed_database(
                    settings,
                    users=users,
                    coupons=coupons,
                    usage=usage,
                    sellers=sellers,
                    products=products,
                    orders=orders,
                    seed=seed,
                    reset=reset,
                    if_empty=if_empty,
                    progress=progress,
                )
            )
    except (SeedError, DatabaseNotEmpty) as exc:
        Console(stderr=True).print(f"[red]seed refused:[/] {exc}", soft_wrap=True)
        return 2
    if report.skipped:
        console.print("the database already holds data (--if-empty): nothing seeded")
        return 0
    print_report(console, report)
    return 0


def print_report(console: Console, report: SeedReport) -> None:
    table = Table(title="peakshop seed", show_header=False)
    table.add_column("what")
    table.add_column("count / seconds", justify="right")
    table.add_row("users", f"{report.users:,}")
    table.add_row("coupons", f"{report.coupons:,}")
    for name, count in sorted({**report.coupons_by_type, **report.coupons_by_state}.items()):
        table.add_row(f"  {name}", f"{count:,}")
    table.add_row("usage records", f"{report.usage:,}")
    if report.products:
        table.add_row("sellers", f"{report.sellers:,}")
        table.add_row("products", f"{report.products:,}")
        table.add_row("orders", f"{report.orders:,}")
        table.add_row("order lines", f"{report.order_items:,}")
    table.add_row("(coupon, user) counters", f"{report.user_usage:,}")
    for phase, seconds in report.phases.items():
        table.add_row(f"phase: {phase}", f"{seconds:.2f} s")
    table.add_row("elapsed", f"{report.seconds:.2f} s")
    table.add_row("peak RSS of this process", f"{peak_rss_bytes() / 1e6:,.0f} MB")
    console.print(table)
    total = format_cents(DEMO_ORDER_TOTAL_CENTS)
    if report.user_specific_demo is not None:
        demo = report.user_specific_demo
        console.print(
            f"user-specific coupon: {demo.code} (owner {demo.user_id}), valid for {total}",
            soft_wrap=True,
        )
    if report.time_window_demo is not None:
        demo = report.time_window_demo
        console.print(
            f"time-window coupon:   {demo.code} (any user, e.g. {demo.user_id}), valid for {total}",
            soft_wrap=True,
        )
