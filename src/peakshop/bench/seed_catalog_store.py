"""Writing the catalog and the orders through each database's bulk path (executemany in one
transaction on SQLite, COPY on PostgreSQL), in chunks so memory stays flat, then the
products' sold units and the analytics roll-up of the finished days in set-based SQL."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

import peakshop.models  # noqa: F401  - every domain's tables on the metadata
from peakshop.analytics.models import window_ranges
from peakshop.bench.seed_catalog_data import (
    DAY,
    Catalog,
    ItemRow,
    OrderRow,
    order_stream,
    product_daily_rows,
    sales_daily_rows,
)
from peakshop.bench.seed_store import Tracker, check_constraints_hold, sqlite_stamp
from peakshop.catalog.models import products as products_table
from peakshop.db import metadata
from peakshop.orders.models import orders as orders_table

CHUNK = 20_000
CHILD_TIMEOUT = 300.0  # seconds for the order generator's next chunk, and to exit
# Children first, so that emptying them never trips a foreign key.
TABLES = (
    "product_sales_window",
    "product_sales_daily",
    "sales_daily",
    "coupon_daily",
    "order_items",
    "flash_sale_buyers",
    "orders",
    "jobs",
    "flash_sales",
    "products",
    "categories",
    "sellers",
)
# The tables the catalog's seed empties and then loads with CHECK constraints off (see
# write_sqlite); those it leaves empty cost their check an empty scan.
CHECKED_TABLES = tuple(metadata.tables[name] for name in reversed(TABLES))
CATEGORY_COLUMNS = ("id", "name", "parent_id", "path", "created_at", "updated_at")
SELLER_COLUMNS = ("id", "name", "email", "created_at", "updated_at")
PRODUCT_COLUMNS = (
    "id", "name", "description", "price_cents", "currency", "status", "seller_id",
    "category_id", "image_urls", "initial_stock", "available", "reserved", "sold",
    "allocated", "created_at", "updated_at",
)  # fmt: skip
ORDER_COLUMNS = (
    "id", "user_id", "kind", "status", "subtotal_cents", "discount_cents", "total_cents",
    "idempotency_scope", "idempotency_key", "request_hash", "job_id", "failure_reason",
    "created_at", "updated_at", "pay_by",
)  # fmt: skip
ITEM_COLUMNS = ("order_id", "product_id", "quantity", "unit_price_cents")
FAILURE = {"failed": "processing_failed", "cancelled": "cancelled_by_request"}


@dataclass(frozen=True, kw_only=True)
class CatalogPlan:
    catalog: Catalog
    orders: int
    users: int
    seed: int
    now: float


def _product_row(product: list[Any], stamp: Any) -> tuple[Any, ...]:
    number, name, price, status, seller, category, created, stock, _sold = product
    at = stamp(created)
    return (
        number, name, f"{name}: a seeded product.", price, "EUR", status, seller, category,
        f'["https://img.example/p/{number}.jpg"]', stock, stock, 0, 0, 0, at, at,
    )  # fmt: skip


def _order_row(order: OrderRow, stamp: Any) -> tuple[Any, ...]:
    order_id, user, status, subtotal, total, created = order
    at = stamp(created)
    return (
        order_id, user, "regular", status, subtotal, 0, total, "seed", order_id, "seed",
        "job_" + order_id[4:], FAILURE.get(status), at, at, stamp(created + 900),
    )  # fmt: skip


# SQLite's insert of an order: what every seeded order has in common is written in the SQL,
# so the rows carry 7 values instead of 15 (the inserting process is the orders phase's
# bottleneck, and binding and pickling the values was a good part of its time).
SQLITE_INSERT_ORDER = (
    f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) VALUES (?1, ?2, 'regular', ?3, ?4, 0, ?4, "
    "'seed', ?1, 'seed', 'job_' || substr(?1, 5), ?5, ?6, ?6, ?7)"
)


def _sqlite_order_row(order: OrderRow, stamp: Any) -> tuple[Any, ...]:
    """The values of ``SQLITE_INSERT_ORDER`` (the same order as ``_order_row``)."""
    order_id, user, status, subtotal, _total, created = order
    return (
        order_id,
        user,
        status,
        subtotal,
        FAILURE.get(status),
        stamp(created),
        stamp(created + 900),
    )


def fast_sqlite_stamps(now: float, *, fraction: bool = False) -> Any:
    """SQLite's text stamp of an epoch in the two years before ``now`` as two table lookups:
    strftime on three million datetimes costs seconds on the 2-core machine. ``fraction``:
    the epochs have microseconds (else whole seconds)."""
    first_day = int(now) // DAY - 2 * 366
    days = [sqlite_stamp((first_day + d) * DAY)[:11] for d in range(3 * 366)]
    seconds = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(DAY)]

    def stamp(epoch: int) -> str:
        return days[epoch // DAY - first_day] + seconds[epoch % DAY] + "000000"

    def precise_stamp(epoch: float) -> str:
        whole = int(epoch)
        micros = int((epoch - whole) * 1_000_000)
        return days[whole // DAY - first_day] + seconds[whole % DAY] + f"{micros:06d}"

    return precise_stamp if fraction else stamp


def _chunks(
    plan: CatalogPlan, stamp: Any, row: Any = _order_row
) -> Iterator[tuple[list[tuple[Any, ...]], list[ItemRow]]]:
    stream = order_stream(
        plan.catalog, orders=plan.orders, users=plan.users, seed=plan.seed, now=plan.now
    )
    while True:
        batch = list(itertools.islice(stream, CHUNK))
        if not batch:
            return
        yield [row(o, stamp) for o, _ in batch], [i for _, items in batch for i in items]


class SqliteOrderChunks:
    """``_chunks`` for SQLite, generated in another process while this one inserts.

    Generating the rows (~10 s for 1M orders on the 2-core machine) and inserting them
    (another ~10 s) both need a core; in one process they take turns. The child works on
    its own copy of the catalog and sends, after the last chunk, what generating tallied
    (sold units, the roll-up's counts), which is copied into ``plan.catalog`` here.

    The child starts when this is made, before the phases that come ahead of the orders:
    its start-up (a fresh interpreter) and its first step (drawing and sorting the orders'
    creation times) then overlap them instead of delaying the first insert.
    ``close()`` ends it, also when the orders were never read (a seed that failed first)."""

    def __init__(self, plan: CatalogPlan) -> None:
        self._plan = plan
        context = multiprocessing.get_context("spawn")
        # Bounded: flat memory, and the child waits while the users are inserted.
        self._channel: multiprocessing.Queue[Any] = context.Queue(maxsize=4)
        self._child = context.Process(
            target=_generate_in_child,
            args=(plan, self._channel),
            name="peakshop-seed-orders",
            daemon=True,
        )
        self._child.start()

    def __iter__(self) -> Iterator[tuple[list[tuple[Any, ...]], list[ItemRow]]]:
        while True:
            kind, payload = self._channel.get(timeout=CHILD_TIMEOUT)
            if kind == "chunk":
                yield payload
            elif kind == "error":
                raise RuntimeError(f"order generator failed:\n{payload}")
            else:
                _take_tallies(self._plan.catalog, payload)
                return

    def close(self) -> None:
        if self._child.is_alive() and self._channel.empty():
            self._child.join(timeout=1.0)  # it has sent everything and is exiting
        if self._child.is_alive():
            self._child.kill()
        self._child.join(timeout=CHILD_TIMEOUT)


def _generate_in_child(plan: CatalogPlan, channel: multiprocessing.Queue[Any]) -> None:
    try:
        for chunk in _chunks(plan, fast_sqlite_stamps(plan.now), _sqlite_order_row):
            channel.put(("chunk", chunk))
        catalog = plan.catalog
        sold = [product[8] for product in catalog.products]
        tallies = (catalog.orders, catalog.items, catalog.daily, catalog.product_units,
                   catalog.product_revenue, sold)  # fmt: skip
        channel.put(("done", tallies))
    except BaseException:
        channel.put(("error", traceback.format_exc()))


def _take_tallies(catalog: Catalog, tallies: Any) -> None:
    catalog.orders, catalog.items, daily, units, revenue, sold = tallies
    catalog.daily.update(daily)
    catalog.product_units.update(units)
    catalog.product_revenue.update(revenue)
    for product, units_sold in zip(catalog.products, sold, strict=True):
        product[8] = units_sold


def _drop_indexes(table: sa.Table) -> list[str]:
    """A bulk load builds secondary indexes once at the end instead of row by row (several
    times faster); the unique constraints stay, since they are the data's own checks."""
    return [f"DROP INDEX {index.name}" for index in table.indexes]


def _create_indexes(table: sa.Table, dialect: Any) -> list[str]:
    return [str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes]


def _today_start(now: float) -> datetime:
    return datetime.combine(datetime.fromtimestamp(now, UTC).date(), time(), tzinfo=UTC)


def _sql_insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def write_sqlite(
    conn: sqlite3.Connection, plan: CatalogPlan, tracker: Tracker, orders: SqliteOrderChunks
) -> None:
    """Inside the caller's transaction (the seed is all or nothing); ``orders`` was made
    from ``plan`` (the caller closes it)."""
    with tracker.phase("catalog reset"):
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")
    # Loaded with CHECK constraints off and checked after, in one scan per table
    # (check_constraints_hold): row by row, executemany re-evaluated each table's checks for
    # every row, and an `IN (...)` list is rebuilt every time: about 4 of the 10 us an order's
    # row took to insert (benchmarks/sqlite_check_cost.py). A violating row fails the seed,
    # so nothing is committed.
    conn.execute("PRAGMA ignore_check_constraints=ON")
    try:
        _write_sqlite_catalog(conn, plan, tracker, orders)
    finally:
        conn.execute("PRAGMA ignore_check_constraints=OFF")
    with tracker.phase("checks"):
        for checked in CHECKED_TABLES:
            check_constraints_hold(conn, checked)


def _write_sqlite_catalog(
    conn: sqlite3.Connection, plan: CatalogPlan, tracker: Tracker, orders: SqliteOrderChunks
) -> None:
    catalog, now_text = plan.catalog, sqlite_stamp(plan.now)
    with tracker.phase("categories, sellers, products", len(catalog.products)) as advance:
        conn.executemany(
            _sql_insert("categories", CATEGORY_COLUMNS),
            [(*c, now_text, now_text) for c in catalog.categories],
        )
        conn.executemany(
            _sql_insert("sellers", SELLER_COLUMNS),
            [(*s, now_text, now_text) for s in catalog.sellers],
        )
        for statement in _drop_indexes(products_table):
            conn.execute(statement)
        stamp = fast_sqlite_stamps(plan.now, fraction=True)
        conn.executemany(
            _sql_insert("products", PRODUCT_COLUMNS),
            (_product_row(p, stamp) for p in catalog.products),
        )
        for statement in _create_indexes(products_table, sqlite.dialect()):
            conn.execute(statement)
        advance(len(catalog.products))
    with tracker.phase("orders", plan.orders) as advance:
        insert_items = _sql_insert("order_items", ITEM_COLUMNS)
        for statement in _drop_indexes(orders_table):
            conn.execute(statement)
        for order_rows, items in orders:
            conn.executemany(SQLITE_INSERT_ORDER, order_rows)
            conn.executemany(insert_items, items)
            advance(len(order_rows))
    with tracker.phase("orders' indexes"):
        for statement in _create_indexes(orders_table, sqlite.dialect()):
            conn.execute(statement)
    with tracker.phase("stock ledger and analytics"):
        conn.executemany(
            "UPDATE products SET sold = ?, initial_stock = initial_stock + ? WHERE id = ?",
            [(p[8], p[8], p[0]) for p in catalog.products if p[8]],
        )
        conn.executemany(
            "INSERT INTO sales_daily (day, orders, revenue_cents, discount_cents, units, "
            "rolled_up_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (d.isoformat(), *rest, now_text)
                for d, *rest in sales_daily_rows(plan.catalog, plan.now)
            ],
        )
        conn.executemany(
            "INSERT INTO product_sales_daily (day, product_id, units, revenue_cents) "
            "VALUES (?, ?, ?, ?)",
            ((d.isoformat(), *rest) for d, *rest in product_daily_rows(plan.catalog, plan.now)),
        )
        today = sqlite_stamp(_today_start(plan.now).timestamp())
        for statement in _roll_up_sql(day="date({column})", today="?"):
            conn.execute(statement, (today,))
        conn.executemany(
            _windows_sql(window="?1", last="?2", first="?3"),
            [(w, last.isoformat(), first.isoformat()) for w, last, first in _windows(plan)],
        )


async def write_postgres(conn: asyncpg.Connection, plan: CatalogPlan, tracker: Tracker) -> None:
    """Inside the caller's transaction; ids are given, so the sequences are moved past them."""
    catalog = plan.catalog
    now = datetime.fromtimestamp(plan.now, UTC)

    def stamp(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, UTC)

    with tracker.phase("catalog reset"):
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    with tracker.phase("categories, sellers, products", len(catalog.products)) as advance:
        await conn.copy_records_to_table(
            "categories",
            records=[(*c, now, now) for c in catalog.categories],
            columns=CATEGORY_COLUMNS,
        )
        await conn.copy_records_to_table(
            "sellers", records=[(*s, now, now) for s in catalog.sellers], columns=SELLER_COLUMNS
        )
        await conn.copy_records_to_table(
            "products",
            records=(_product_row(p, stamp) for p in catalog.products),
            columns=PRODUCT_COLUMNS,
        )
        advance(len(catalog.products))
    with tracker.phase("orders", plan.orders) as advance:
        for statement in _drop_indexes(orders_table):
            await conn.execute(statement)
        for orders, items in _chunks(plan, stamp):
            await conn.copy_records_to_table("orders", records=orders, columns=ORDER_COLUMNS)
            await conn.copy_records_to_table("order_items", records=items, columns=ITEM_COLUMNS)
            advance(len(orders))
    with tracker.phase("orders' indexes"):
        for statement in _create_indexes(orders_table, postgresql.dialect()):  # type: ignore[no-untyped-call]
            await conn.execute(statement)
    with tracker.phase("stock ledger and analytics"):
        await conn.executemany(
            "UPDATE products SET sold = $1, initial_stock = initial_stock + $1 WHERE id = $2",
            [(p[8], p[0]) for p in catalog.products if p[8]],
        )
        await conn.copy_records_to_table(
            "sales_daily",
            records=[(*row, now) for row in sales_daily_rows(plan.catalog, plan.now)],
            columns=("day", "orders", "revenue_cents", "discount_cents", "units", "rolled_up_at"),
        )
        await conn.copy_records_to_table(
            "product_sales_daily",
            records=product_daily_rows(plan.catalog, plan.now),
            columns=("day", "product_id", "units", "revenue_cents"),
        )
        today = _today_start(plan.now)
        for statement in _roll_up_sql(day="({column} AT TIME ZONE 'UTC')::date", today="$1"):
            await conn.execute(statement, today)
        await conn.executemany(
            _windows_sql(window="$1::integer", last="$2::date", first="$3::date"), _windows(plan)
        )
        for table in ("categories", "sellers", "products"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"GREATEST((SELECT max(id) FROM {table}), 1))"
            )


def _roll_up_sql(*, day: str, today: str) -> list[str]:
    """The rest of the analytics roll-up of every finished day (before the ``today``
    placeholder, the start of today), as the scheduled job computes it, in set-based SQL."""
    use_day = day.format(column="u.used_at")
    return [
        "INSERT INTO coupon_daily (day, coupon_id, redemptions, discount_cents, "
        f"order_total_cents) SELECT {use_day}, u.coupon_id, count(*), "
        "sum(u.discount_cents), sum(u.order_total_cents) FROM coupon_usage u "
        f"WHERE u.used_at < {today} GROUP BY {use_day}, u.coupon_id",
    ]


def _windows(plan: CatalogPlan) -> list[tuple[int, date, date]]:
    """(window, last day, first day) of the top-products windows as the daily refresh leaves
    them (analytics/tasks.py) on the day of the seed: a seeded database is one whose
    scheduled jobs are up to date, so its first roll-up has no once-a-day refresh to do."""
    last = _today_start(plan.now).date() - timedelta(days=1)
    return [(window, last, first) for window, first in window_ranges(last)]


def _windows_sql(*, window: str, last: str, first: str) -> str:
    return (
        "INSERT INTO product_sales_window (window_days, product_id, last_day, units, "
        f"revenue_cents) SELECT {window}, product_id, {last}, sum(units), sum(revenue_cents) "
        f"FROM product_sales_daily WHERE day >= {first} AND day <= {last} GROUP BY product_id"
    )
