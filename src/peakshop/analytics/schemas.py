"""Response shapes of the analytics API. Money as strings with two decimals."""

from __future__ import annotations

from datetime import date
from typing import Literal

import msgspec

Granularity = Literal["day", "week", "month"]


class SalesBucket(msgspec.Struct, kw_only=True):
    period_start: date
    orders: int
    units: int
    revenue: str
    discount: str
    average_order_value: str


class SalesReport(msgspec.Struct, kw_only=True):
    granularity: Granularity
    from_day: date = msgspec.field(name="from")
    to_day: date = msgspec.field(name="to")
    buckets: list[SalesBucket]
    totals: SalesBucket
    live_since: str  # today's partial day is computed live from this UTC instant


class TopProduct(msgspec.Struct, kw_only=True):
    product_id: int
    name: str | None
    units: int
    revenue: str


class TopProducts(msgspec.Struct, kw_only=True):
    items: list[TopProduct]


class CouponEffect(msgspec.Struct, kw_only=True):
    coupon_id: int
    code: str | None
    redemptions: int
    discount_given: str
    order_total: str  # the order totals the coupon was redeemed on


class CouponEffectiveness(msgspec.Struct, kw_only=True):
    items: list[CouponEffect]
