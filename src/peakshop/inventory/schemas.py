"""Request and response shapes of inventory and flash sales."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

Amount = Annotated[Decimal, msgspec.Meta(examples=["19.90"])]
Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
SaleStatus = Literal["scheduled", "active", "sold_out", "ended"]


class ProductCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    price: Amount
    stock: Stock


class ProductUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Change any of these; ``stock`` sets the units available now (a restock or a count
    correction): the difference is added to, or taken from, the initial stock."""

    name: Name | None = None
    price: Amount | None = None
    stock: Stock | None = None


class ProductOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    price: str
    initial_stock: int
    current_stock: int
    reserved: int
    sold: int
    allocated_to_flash_sales: int
    flash_sale_active: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(msgspec.Struct, kw_only=True):
    items: list[ProductOut]
    next_cursor: str | None


class LowStock(msgspec.Struct, kw_only=True):
    id: int
    name: str
    current_stock: int


class InventoryMetrics(msgspec.Struct, kw_only=True):
    products: int
    initial_stock: int
    current_stock: int
    reserved: int
    sold: int
    allocated_to_flash_sales: int
    low_stock_threshold: int
    low_stock_count: int
    low_stock: list[LowStock]


class FlashSaleCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: Annotated[int, msgspec.Meta(ge=1)]
    price: Amount
    quantity: Quantity
    starts_at: datetime
    ends_at: datetime
    per_user_limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


class FlashSaleOut(msgspec.Struct, kw_only=True):
    id: int
    product_id: int
    price: str
    status: SaleStatus
    quantity: int
    remaining: int
    reserved: int
    sold: int
    per_user_limit: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
