"""The coupon rules as pure functions: the one place that decides validity and discount.

Validation (in-memory index) and redemption (database row) both call ``evaluate``, so the
two can never disagree on a rule.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy.engine import RowMapping

from peakshop.kit.clock import to_epoch
from peakshop.kit.money import percent_of


class CouponRule(msgspec.Struct, frozen=True):
    id: int
    code: str
    type: str
    active: bool
    discount_type: str
    discount_value: int  # basis points for percent, cents for fixed
    max_discount_cents: int | None
    min_order_total_cents: int
    starts_at: float | None  # epoch seconds
    ends_at: float | None
    owner_user_id: str | None
    usage_limit: int | None
    per_user_limit: int | None

    @property
    def has_usage_limits(self) -> bool:
        return self.usage_limit is not None or self.per_user_limit is not None


def rule_from_row(row: RowMapping) -> CouponRule:
    return CouponRule(
        id=row["id"],
        code=row["code"],
        type=row["type"],
        active=row["status"] == "active",
        discount_type=row["discount_type"],
        discount_value=row["discount_value"],
        max_discount_cents=row["max_discount_cents"],
        min_order_total_cents=row["min_order_total_cents"],
        starts_at=to_epoch(row["starts_at"]),
        ends_at=to_epoch(row["ends_at"]),
        owner_user_id=row["owner_user_id"],
        usage_limit=row["usage_limit"],
        per_user_limit=row["per_user_limit"],
    )


def discount_for(rule: CouponRule, order_total_cents: int) -> int:
    """Discount in cents: percent rounds half up to the cent, then the cap, never above the total."""
    if rule.discount_type == "percent":
        discount = percent_of(order_total_cents, rule.discount_value)
    else:
        discount = rule.discount_value
    if rule.max_discount_cents is not None:
        discount = min(discount, rule.max_discount_cents)
    return min(discount, order_total_cents)


def check_static(
    rule: CouponRule, *, user_id: str, order_total_cents: int, now: float
) -> str | None:
    """Every rule that needs no usage count, in the order the reasons are reported."""
    if not rule.active:
        return "inactive"
    if rule.starts_at is not None and now < rule.starts_at:
        return "not_started"
    if rule.ends_at is not None and now >= rule.ends_at:
        return "expired"
    if rule.owner_user_id is not None and rule.owner_user_id != user_id:
        return "not_owner"
    if order_total_cents < rule.min_order_total_cents:
        return "min_order_total"
    return None


def check_usage(rule: CouponRule, *, used_total: int, used_by_user: int) -> str | None:
    if rule.usage_limit is not None and used_total >= rule.usage_limit:
        return "usage_limit_reached"
    if rule.per_user_limit is not None and used_by_user >= rule.per_user_limit:
        return "user_limit_reached"
    return None


def coupon_state(
    *, status: str, starts_at: datetime | None, ends_at: datetime | None, now: float
) -> str:
    if status != "active":
        return "inactive"
    start, end = to_epoch(starts_at), to_epoch(ends_at)
    if end is not None and now >= end:
        return "expired"
    if start is not None and now < start:
        return "scheduled"
    return "active"
