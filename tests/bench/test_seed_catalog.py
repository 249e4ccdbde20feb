"""`peakshop seed --sellers --products --orders`: the catalog and a year of orders through
the bulk paths, a stock ledger that adds up, and an analytics roll-up identical to the one
the scheduled job computes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from peakshop.analytics import repository as analytics_repository
from peakshop.analytics import tasks as analytics_tasks
from peakshop.analytics.service import day_start
from peakshop.bench.seed_data import SeedError
from peakshop.bench.seed_store import DatabaseNotEmpty, check_constraints_hold
from peakshop.config import Settings
from peakshop.db import Database
from peakshop.orders.models import orders as orders_table
from tests.bench.test_seed import count, fetch, seed


async def test_catalog_and_orders(seed_settings: Settings) -> None:
    report = await seed(seed_settings, sellers=7, products=300, orders=3_000)
    assert (report.sellers, report.products, report.orders) == (7, 300, 3_000)
    assert await count(seed_settings, "sellers") == 7
    assert await count(seed_settings, "products") == 300
    assert await count(seed_settings, "orders") == 3_000
    assert await count(seed_settings, "order_items") == report.order_items > 3_000
    assert await count(seed_settings, "categories") == 12 * 9
    # The stock ledger adds up, and sold matches the confirmed order lines.
    bad = await fetch(
        seed_settings,
        "SELECT count(*) FROM products WHERE initial_stock != available + reserved + sold + allocated",
    )
    assert bad == [(0,)]
    mismatched = await fetch(
        seed_settings,
        "SELECT count(*) FROM products p WHERE p.sold != COALESCE((SELECT sum(i.quantity) "
        "FROM order_items i JOIN orders o ON o.id = i.order_id "
        "WHERE i.product_id = p.id AND o.status = 'confirmed'), 0)",
    )
    assert mismatched == [(0,)]
    statuses = dict(
        await fetch(seed_settings, "SELECT status, count(*) FROM orders GROUP BY status")
    )
    assert statuses["confirmed"] > 2_500 and statuses.get("pending", 0) == 0
    # A long tail: the most sold product sells far more than the median one.
    sold = sorted(row[0] for row in await fetch(seed_settings, "SELECT sold FROM products"))
    assert sold[-1] > 10 * max(sold[len(sold) // 2], 1)


async def test_the_seeded_roll_up_is_the_jobs_roll_up(seed_settings: Settings) -> None:
    await seed(seed_settings, sellers=3, products=50, orders=2_000)
    rows = {
        row[0]: row[1:]
        for row in await fetch(
            seed_settings, "SELECT day, orders, revenue_cents, units FROM sales_daily"
        )
    }
    assert len(rows) > 200  # a year of days, most with orders
    today = datetime.now(UTC).date()
    db = Database(seed_settings)
    try:
        async with db.read() as conn:
            for offset in (1, 30, 200):
                day = today - timedelta(days=offset)
                start = day_start(day)
                live = await analytics_repository.totals(conn, start, start + timedelta(days=1))
                seeded = rows.get(day) or rows.get(day.isoformat()) or (0, 0, 0)  # type: ignore[call-overload]
                assert tuple(seeded) == (live["orders"], live["revenue_cents"], live["units"])
                products = sorted(
                    await analytics_repository.product_totals(
                        conn, start, start + timedelta(days=1)
                    )
                )
                seeded_products = sorted(
                    tuple(row)
                    for row in await fetch(
                        seed_settings,
                        "SELECT product_id, units, revenue_cents FROM product_sales_daily "
                        f"WHERE day = '{day.isoformat()}'",
                    )
                )
                assert seeded_products == products
    finally:
        await db.dispose()
    assert today not in rows and today.isoformat() not in rows  # today is computed live


async def test_the_seed_leaves_the_database_as_a_running_shop_would(
    seed_settings: Settings,
) -> None:
    """The top-products windows as the daily refresh computes them (so the first scheduled
    roll-up has no refresh to do), and the orders stored in creation order."""
    await seed(seed_settings, sellers=3, products=20, orders=100)
    await seed(seed_settings, sellers=3, products=50, orders=2_000, reset=True)  # replaced
    query = (
        "SELECT window_days, product_id, last_day, units, revenue_cents FROM product_sales_window"
    )
    seeded = sorted(await fetch(seed_settings, query))
    assert {row[0] for row in seeded} == {7, 30, 90, 365}
    db = Database(seed_settings)
    try:
        await analytics_tasks.refresh_windows(db, datetime.now(UTC).date())
    finally:
        await db.dispose()
    assert seeded == sorted(await fetch(seed_settings, query))
    created = [
        row[0] for row in await fetch(seed_settings, "SELECT created_at FROM orders ORDER BY seq")
    ]
    assert len(created) == 2_000 and created == sorted(created)


async def test_catalog_refusals(seed_settings: Settings) -> None:
    with pytest.raises(SeedError, match="orders need products"):
        await seed(seed_settings, orders=10)
    await seed(seed_settings, products=10)
    with pytest.raises(DatabaseNotEmpty):
        await seed(seed_settings, products=10)
    report = await seed(seed_settings, products=20, reset=True)
    assert report.products == 20 and await count(seed_settings, "products") == 20


def test_rows_loaded_without_checks_are_checked_after(sqlite_url: str) -> None:
    """The SQLite load turns CHECK constraints off; check_constraints_hold is what still
    refuses a row that breaks one (the seed then rolls back)."""
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        check_constraints_hold(conn, orders_table)  # empty: nothing to refuse
        conn.execute("PRAGMA ignore_check_constraints=ON")
        conn.execute(
            "INSERT INTO orders (id, user_id, kind, status, subtotal_cents, total_cents, "
            "idempotency_scope, idempotency_key, request_hash, job_id, created_at, updated_at, "
            "pay_by) VALUES ('ord_x', 'user_1', 'regular', 'shipped', 100, 100, 'seed', 'x', "
            "'seed', 'job_x', '2026-01-01', '2026-01-01', '2026-01-01')"
        )
        with pytest.raises(SeedError, match=r"1 seeded row.* of orders break its check .*status"):
            check_constraints_hold(conn, orders_table)
    finally:
        conn.close()
