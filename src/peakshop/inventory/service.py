"""Inventory and flash-sale use cases: products and their stock ledger, sale creation, the
sale facts the admission path needs, and loading sales into the hot store.

Services take the caller's connection and raise typed errors; they never commit.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.db import Database
from peakshop.errors import InvalidInput
from peakshop.inventory import repository
from peakshop.inventory.errors import InsufficientStock, ProductNotFound, SaleNotFound
from peakshop.inventory.schemas import (
    FlashSaleCreate,
    FlashSaleOut,
    InventoryMetrics,
    LowStock,
    ProductCreate,
    ProductOut,
    ProductUpdate,
)
from peakshop.kit.clock import from_db, to_epoch
from peakshop.kit.money import format_cents, parse_cents
from peakshop.state.ports import SaleCounters, SaleSnapshot

# Hot keys of a sale outlive its end by a day: late replays of an idempotency key still
# find their order.
HOT_STATE_GRACE = timedelta(days=1)


def _cents(value: Decimal, field: str) -> int:
    try:
        return parse_cents(value, field=field)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{field} needs a timezone, e.g. 2026-11-27T09:00:00Z", field=field)
    return value


# --- products ---------------------------------------------------------------------------------


def product_out(row: RowMapping, *, on_sale: bool) -> ProductOut:
    return ProductOut(
        id=row["id"],
        name=row["name"],
        price=format_cents(row["price_cents"]),
        initial_stock=row["initial_stock"],
        current_stock=row["available"],
        reserved=row["reserved"],
        sold=row["sold"],
        allocated_to_flash_sales=row["allocated"],
        flash_sale_active=on_sale,
        created_at=from_db(row["created_at"]) or row["created_at"],
        updated_at=from_db(row["updated_at"]) or row["updated_at"],
    )


async def products_out(
    conn: AsyncConnection, rows: list[RowMapping], *, now: datetime
) -> list[ProductOut]:
    on_sale = await repository.sales_of_products(conn, [row["id"] for row in rows], now=now)
    return [product_out(row, on_sale=row["id"] in on_sale) for row in rows]


async def create_product(
    conn: AsyncConnection, *, data: ProductCreate, now: datetime
) -> ProductOut:
    row = await repository.insert_product(
        conn,
        {
            "name": data.name,
            "price_cents": _cents(data.price, "price"),
            "initial_stock": data.stock,
            "available": data.stock,
            "reserved": 0,
            "sold": 0,
            "allocated": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    return product_out(row, on_sale=False)


async def get_product(conn: AsyncConnection, *, product_id: int, now: datetime) -> ProductOut:
    row = await repository.get_product(conn, product_id)
    if row is None:
        raise ProductNotFound(product_id, field="id")
    return (await products_out(conn, [row], now=now))[0]


async def update_product(
    conn: AsyncConnection, *, product_id: int, data: ProductUpdate, now: datetime
) -> ProductOut:
    changes = {name for name in data.__struct_fields__ if getattr(data, name) is not None}
    if not changes:
        raise InvalidInput("nothing to change: give name, price or stock")
    values: dict[str, Any] = {"updated_at": now}
    if data.name is not None:
        values["name"] = data.name
    if data.price is not None:
        values["price_cents"] = _cents(data.price, "price")
    row = await repository.update_product(conn, product_id, values, stock=data.stock)
    if row is None:
        raise ProductNotFound(product_id, field="id")
    return (await products_out(conn, [row], now=now))[0]


async def inventory_metrics(
    conn: AsyncConnection, *, low_stock_threshold: int, limit: int
) -> InventoryMetrics:
    totals = await repository.stock_totals(conn)
    count, rows = await repository.low_stock(conn, threshold=low_stock_threshold, limit=limit)
    return InventoryMetrics(
        products=int(totals["products"]),
        initial_stock=int(totals["initial_stock"]),
        current_stock=int(totals["available"]),
        reserved=int(totals["reserved"]),
        sold=int(totals["sold"]),
        allocated_to_flash_sales=int(totals["allocated"]),
        low_stock_threshold=low_stock_threshold,
        low_stock_count=count,
        low_stock=[
            LowStock(id=row["id"], name=row["name"], current_stock=row["available"]) for row in rows
        ],
    )


# --- flash sales ------------------------------------------------------------------------------


class SaleFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What admission needs to know of a sale; none of it changes after creation."""

    id: int
    product_id: int
    price_cents: int
    per_user_limit: int
    starts_at: float  # epoch
    ends_at: float

    def state_at(self, now: float) -> str | None:
        """None while the sale runs, else why it does not."""
        if now < self.starts_at:
            return "not_started"
        if now >= self.ends_at:
            return "ended"
        return None


def facts_of(row: RowMapping) -> SaleFacts:
    return SaleFacts(
        id=row["id"],
        product_id=row["product_id"],
        price_cents=row["price_cents"],
        per_user_limit=row["per_user_limit"],
        starts_at=to_epoch(row["starts_at"]) or 0.0,
        ends_at=to_epoch(row["ends_at"]) or 0.0,
    )


class SaleDirectory:
    """Sale facts by id, read through from the database and kept (bounded, least recently
    used out): sales do not change, so no invalidation is needed."""

    def __init__(self, db: Database, *, capacity: int = 10_000) -> None:
        self._db = db
        self._capacity = capacity
        self._facts: OrderedDict[int, SaleFacts] = OrderedDict()
        # Single flight: the first buyers of a sale this process has not seen arrive all at
        # once; one read serves them all instead of one read each queueing for the pool.
        self._loading: dict[int, asyncio.Task[SaleFacts]] = {}

    async def get(self, sale_id: int) -> SaleFacts:
        facts = self._facts.get(sale_id)
        if facts is not None:
            self._facts.move_to_end(sale_id)
            return facts
        loading = self._loading.get(sale_id)
        if loading is None:
            loading = asyncio.create_task(self._load(sale_id))
            self._loading[sale_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(sale_id, None))
        return await asyncio.shield(loading)

    async def _load(self, sale_id: int) -> SaleFacts:
        async with self._db.read() as conn:
            row = await repository.get_sale(conn, sale_id)
        if row is None:
            raise SaleNotFound(sale_id)
        facts = facts_of(row)
        self._facts[sale_id] = facts
        if len(self._facts) > self._capacity:
            self._facts.popitem(last=False)
        return facts


def sale_status(row: RowMapping, *, now: datetime) -> str:
    starts_at, ends_at = from_db(row["starts_at"]), from_db(row["ends_at"])
    assert starts_at is not None and ends_at is not None
    if now >= ends_at:
        return "ended"
    if now < starts_at:
        return "scheduled"
    return "sold_out" if row["remaining"] == 0 else "active"


def sale_out(row: RowMapping, *, now: datetime) -> FlashSaleOut:
    return FlashSaleOut(
        id=row["id"],
        product_id=row["product_id"],
        price=format_cents(row["price_cents"]),
        status=sale_status(row, now=now),  # type: ignore[arg-type]
        quantity=row["quantity"],
        remaining=row["remaining"],
        reserved=row["reserved"],
        sold=row["sold"],
        per_user_limit=row["per_user_limit"],
        starts_at=from_db(row["starts_at"]) or row["starts_at"],
        ends_at=from_db(row["ends_at"]) or row["ends_at"],
        created_at=from_db(row["created_at"]) or row["created_at"],
    )


async def create_sale(conn: AsyncConnection, *, data: FlashSaleCreate, now: datetime) -> RowMapping:
    """Create a sale, taking its quantity from the product's available stock atomically."""
    starts_at = _aware(data.starts_at, "starts_at")
    ends_at = _aware(data.ends_at, "ends_at")
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at", field="ends_at")
    if ends_at <= now:
        raise InvalidInput("ends_at is in the past", field="ends_at")
    product = await repository.get_product(conn, data.product_id)
    if product is None:
        raise ProductNotFound(data.product_id)
    if not await repository.allocate_to_sale(conn, data.product_id, data.quantity):
        raise InsufficientStock(data.product_id, wanted=data.quantity)
    return await repository.insert_sale(
        conn,
        {
            "product_id": data.product_id,
            "price_cents": _cents(data.price, "price"),
            "quantity": data.quantity,
            "remaining": data.quantity,
            "reserved": 0,
            "sold": 0,
            "per_user_limit": data.per_user_limit,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "created_at": now,
        },
    )


async def get_sale(conn: AsyncConnection, *, sale_id: int, now: datetime) -> FlashSaleOut:
    row = await repository.get_sale(conn, sale_id)
    if row is None:
        raise SaleNotFound(sale_id)
    return sale_out(row, now=now)


async def snapshot(
    conn: AsyncConnection, *, sale: RowMapping, idempotency: dict[str, str]
) -> SaleSnapshot:
    ends_at = from_db(sale["ends_at"])
    assert ends_at is not None
    return SaleSnapshot(
        sale_id=sale["id"],
        remaining=sale["remaining"],
        buyers=await repository.sale_buyers(conn, sale["id"]),
        idempotency=idempotency,
        expires_at=(ends_at + HOT_STATE_GRACE).timestamp(),
    )


async def load_hot(
    counters: SaleCounters,
    conn: AsyncConnection,
    *,
    sale: RowMapping,
    idempotency: dict[str, str],
    replace: bool,
) -> bool:
    """Put a sale's state from the system of record into the hot store."""
    return await counters.load(
        await snapshot(conn, sale=sale, idempotency=idempotency), replace=replace
    )
