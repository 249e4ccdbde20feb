"""Request and response shapes of the coupons API (msgspec: decoding is validation)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

# (?!\n): Python's $ also matches before a trailing newline, so "ABC\n" would pass without it.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,31}(?!\n)$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}(?!\n)$"

Code = Annotated[
    str,
    msgspec.Meta(
        pattern=CODE_PATTERN,
        description="3-32 letters, digits, '-' or '_'; case-insensitive",
        examples=["SUMMER-2026"],
    ),
]
UserId = Annotated[
    str, msgspec.Meta(pattern=ID_PATTERN, description="1-64 characters", examples=["user_0000042"])
]
OrderId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, examples=["order-981"])]
# Amounts are accepted as JSON strings ("49.90") or numbers; two decimals at most.
Amount = Annotated[Decimal, msgspec.Meta(examples=["49.90"])]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]

CouponType = Literal["user_specific", "time_window"]
CouponStatus = Literal["active", "inactive"]
DiscountType = Literal["percent", "fixed"]
Reason = Literal[
    "not_found",
    "inactive",
    "expired",
    "not_started",
    "not_owner",
    "min_order_total",
    "usage_limit_reached",
    "user_limit_reached",
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]


class ValidateRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Code
    user_id: UserId
    order_total: Amount


class ValidateResponse(msgspec.Struct):
    valid: bool
    code: str
    discount: str
    final_total: str
    reason: Reason | None


class RedeemRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_id: UserId
    order_id: OrderId
    order_total: Amount


class Redemption(msgspec.Struct):
    id: int
    code: str
    user_id: str
    order_id: str
    order_total: str
    discount: str
    final_total: str
    used_at: datetime


class CouponCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    type: CouponType
    discount_type: DiscountType
    # percent: "15" or "12.5" (percent); fixed: "10.00" (currency units).
    discount_value: Amount
    max_discount: Amount | None = None
    min_order_total: Amount = Decimal(0)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    user_id: UserId | None = None  # owner, required for user_specific coupons
    usage_limit: Limit | None = None
    per_user_limit: Limit | None = 1
    status: CouponStatus = "active"


class CouponPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: CouponStatus | msgspec.UnsetType = msgspec.UNSET
    discount_type: DiscountType | msgspec.UnsetType = msgspec.UNSET
    discount_value: Amount | msgspec.UnsetType = msgspec.UNSET
    max_discount: Amount | msgspec.UnsetType | None = msgspec.UNSET
    min_order_total: Amount | msgspec.UnsetType = msgspec.UNSET
    starts_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
    ends_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
    user_id: UserId | msgspec.UnsetType | None = msgspec.UNSET
    usage_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    per_user_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET


class CouponOut(msgspec.Struct):
    id: int
    code: str
    type: CouponType
    status: CouponStatus
    # Derived: active | inactive | expired | scheduled (not started yet).
    state: str
    discount_type: DiscountType
    discount_value: str
    max_discount: str | None
    min_order_total: str
    starts_at: datetime | None
    ends_at: datetime | None
    user_id: str | None
    usage_limit: int | None
    per_user_limit: int | None
    used_count: int
    created_at: datetime
    updated_at: datetime


class CouponPage(msgspec.Struct):
    items: list[CouponOut]
    next_cursor: str | None


class OutcomeCounts(msgspec.Struct):
    attempts: int
    valid: int
    invalid: int
    by_reason: dict[str, int]


class LatencySummary(msgspec.Struct):
    p50_us: int | None
    p95_us: int | None


class CouponStats(msgspec.Struct):
    code: str
    used_count: int
    all_time: OutcomeCounts
    last_24h: OutcomeCounts
    latency_last_24h: LatencySummary


class ValidationLogOut(msgspec.Struct):
    id: int
    code: str
    user_id: str
    order_total: str
    valid: bool
    reason: str | None
    discount: str
    latency_us: int
    created_at: datetime


class ValidationLogPage(msgspec.Struct):
    items: list[ValidationLogOut]
    next_cursor: str | None
