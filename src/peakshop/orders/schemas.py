"""Request and response shapes of the orders API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from peakshop.coupons.schemas import Code, UserId

Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
ProductId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
# Idempotency keys: what clients use in practice (UUIDs, ULIDs, their own order numbers).
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}(?!\n)$"
OrderStatus = Literal["pending", "confirmed", "failed", "cancelled"]


class FlashSaleOrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_id: UserId
    quantity: Quantity = 1


class OrderItemRequest(msgspec.Struct, forbid_unknown_fields=True):
    product_id: ProductId
    quantity: Quantity


class OrderRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: UserId
    items: Annotated[list[OrderItemRequest], msgspec.Meta(min_length=1, max_length=100)]
    coupon_code: Code | None = None


class Accepted(msgspec.Struct, kw_only=True):
    """The answer of a placement: the order is recorded and its processing queued."""

    order_id: str
    job_id: str
    status: Literal["pending"] = "pending"


class OrderItemOut(msgspec.Struct, kw_only=True):
    product_id: int
    quantity: int
    unit_price: str


class OrderOut(msgspec.Struct, kw_only=True):
    id: str
    user_id: str
    kind: Literal["flash_sale", "regular"]
    flash_sale_id: int | None
    status: OrderStatus
    items: list[OrderItemOut]
    subtotal: str
    discount: str
    total: str
    coupon_code: str | None
    failure_reason: str | None
    job_id: str
    created_at: datetime
    updated_at: datetime
    pay_by: datetime


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[OrderOut]
    next_cursor: str | None


class OrderMetrics(msgspec.Struct, kw_only=True):
    by_status: dict[str, int]
    orders_per_second: float  # placed over the last minute
    queue_depth: int
    jobs_by_status: dict[str, int]
    dead_letters: int
    oldest_pending_age_seconds: float | None
