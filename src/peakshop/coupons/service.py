"""Coupon use cases: validation (hot, read-only), atomic redemption, administration, stats.

Services take the caller's connection and raise typed errors; they never commit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from peakshop.coupons import repository
from peakshop.coupons.errors import (
    CouponCodeTaken,
    CouponNotFound,
    OrderAlreadyRedeemed,
    RedemptionRejected,
)
from peakshop.coupons.index import CouponIndex
from peakshop.coupons.rules import (
    check_static,
    check_usage,
    coupon_state,
    discount_for,
    rule_from_row,
)
from peakshop.coupons.schemas import (
    REASONS,
    CouponCreate,
    CouponOut,
    CouponPatch,
    CouponStats,
    LatencySummary,
    OutcomeCounts,
    Redemption,
)
from peakshop.errors import InvalidInput
from peakshop.kit.clock import from_db
from peakshop.kit.money import format_cents, parse_cents
from peakshop.state import UsageCounters


def normalize_code(code: str) -> str:
    return code.upper()


async def validate(
    *,
    index: CouponIndex,
    counters: UsageCounters,
    code: str,
    user_id: str,
    order_total_cents: int,
    now: float,
) -> tuple[str | None, int]:
    """(reason, discount in cents); reason None means valid. No database access."""
    rule = index.get(code)
    if rule is None:
        return "not_found", 0
    reason = check_static(rule, user_id=user_id, order_total_cents=order_total_cents, now=now)
    if reason is None and rule.has_usage_limits:
        used_total, used_by_user = await counters.get(rule.id, user_id)
        reason = check_usage(rule, used_total=used_total, used_by_user=used_by_user)
    if reason is not None:
        return reason, 0
    return None, discount_for(rule, order_total_cents)


async def redeem(
    conn: AsyncConnection,
    *,
    code: str,
    user_id: str,
    order_id: str,
    order_total_cents: int,
    now: datetime,
) -> tuple[Redemption, int | None]:
    """Redeem atomically; returns (redemption, id of the coupon when a new use was recorded).
    A repeat of (code, order_id) returns the first redemption and None. Raises
    RedemptionRejected with the reason.

    The limits are enforced by two conditional statements, so they hold under any
    concurrency on SQLite and on PostgreSQL; any rejection rolls back the whole transaction.
    """
    row = await repository.get_coupon(conn, code)
    if row is None:
        raise CouponNotFound(code)
    existing = await repository.find_usage(conn, row["id"], order_id)
    if existing is not None:
        return _replay(existing, code=code, user_id=user_id), None
    rule = rule_from_row(row)
    reason = check_static(
        rule, user_id=user_id, order_total_cents=order_total_cents, now=now.timestamp()
    )
    if reason is not None:
        raise RedemptionRejected(reason)
    if not await repository.take_global_use(conn, rule.id):
        raise RedemptionRejected("usage_limit_reached")
    if not await repository.take_user_use(conn, rule.id, user_id, rule.per_user_limit):
        raise RedemptionRejected("user_limit_reached")
    discount = discount_for(rule, order_total_cents)
    usage = await repository.insert_usage(
        conn,
        {
            "coupon_id": rule.id,
            "user_id": user_id,
            "order_id": order_id,
            "order_total_cents": order_total_cents,
            "discount_cents": discount,
            "used_at": now,
        },
    )
    return _redemption_out(usage, code), rule.id


async def release_redemption(
    conn: AsyncConnection, *, code: str, order_id: str
) -> tuple[int, str] | None:
    """Undo the redemption of (code, order_id) when its order is cancelled or failed:
    (coupon id, user id) whose hot counters to lower, or None if there was none."""
    row = await repository.get_coupon(conn, code)
    if row is None:
        return None
    user_id = await repository.delete_usage(conn, row["id"], order_id)
    return None if user_id is None else (row["id"], user_id)


async def find_redemption(
    conn: AsyncConnection, *, code: str, user_id: str, order_id: str
) -> Redemption:
    """The committed redemption of (code, order_id), after a concurrent duplicate won the race."""
    row = await repository.get_coupon(conn, code)
    usage = None if row is None else await repository.find_usage(conn, row["id"], order_id)
    if usage is None:
        raise CouponNotFound(code)
    return _replay(usage, code=code, user_id=user_id)


def _replay(usage: RowMapping, *, code: str, user_id: str) -> Redemption:
    if usage["user_id"] != user_id:
        raise OrderAlreadyRedeemed()
    return _redemption_out(usage, code)


def _redemption_out(usage: RowMapping, code: str) -> Redemption:
    total, discount = usage["order_total_cents"], usage["discount_cents"]
    return Redemption(
        id=usage["id"],
        code=code,
        user_id=usage["user_id"],
        order_id=usage["order_id"],
        order_total=format_cents(total),
        discount=format_cents(discount),
        final_total=format_cents(total - discount),
        used_at=from_db(usage["used_at"]) or usage["used_at"],
    )


# --- administration ---------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _discount_value(discount_type: str, value: Decimal) -> int:
    if discount_type == "percent":
        if not value.is_finite() or not Decimal(0) < value <= Decimal(100):  # NaN can't compare
            raise InvalidInput(
                "a percent discount must be above 0 and at most 100", field="discount_value"
            )
        try:
            return parse_cents(value, field="discount_value")  # percent * 100 = basis points
        except ValueError as exc:
            raise InvalidInput(str(exc), field="discount_value") from exc
    cents = _cents(value, "discount_value")
    if cents <= 0:
        raise InvalidInput("a fixed discount must be above 0", field="discount_value")
    return cents


def _cents(value: Decimal, field: str) -> int:
    try:
        return parse_cents(value, field=field)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


def _coupon_values(spec: dict[str, Any]) -> dict[str, Any]:
    """Check one coupon's fields together and turn them into column values."""
    starts_at, ends_at = _aware(spec["starts_at"]), _aware(spec["ends_at"])
    if spec["type"] == "user_specific" and not spec["user_id"]:
        raise InvalidInput("a user_specific coupon needs user_id (its owner)", field="user_id")
    if spec["type"] == "time_window":
        if spec["user_id"]:
            raise InvalidInput("a time_window coupon has no owner", field="user_id")
        if starts_at is None or ends_at is None:
            raise InvalidInput(
                "a time_window coupon needs starts_at and ends_at",
                field="starts_at" if starts_at is None else "ends_at",
            )
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at", field="ends_at")
    max_discount = spec["max_discount"]
    return {
        "type": spec["type"],
        "status": spec["status"],
        "discount_type": spec["discount_type"],
        "discount_value": _discount_value(spec["discount_type"], spec["discount_value"]),
        "max_discount_cents": None
        if max_discount is None
        else _cents(max_discount, "max_discount"),
        "min_order_total_cents": _cents(spec["min_order_total"], "min_order_total"),
        "starts_at": starts_at,
        "ends_at": ends_at,
        "owner_user_id": spec["user_id"],
        "usage_limit": spec["usage_limit"],
        "per_user_limit": spec["per_user_limit"],
    }


async def create_coupon(conn: AsyncConnection, *, data: CouponCreate, now: datetime) -> CouponOut:
    code = normalize_code(data.code)
    values = _coupon_values(msgspec.structs.asdict(data))
    if await repository.get_coupon(conn, code) is not None:
        raise CouponCodeTaken(code)
    try:
        row = await repository.insert_coupon(
            conn, {**values, "code": code, "used_count": 0, "created_at": now, "updated_at": now}
        )
    except IntegrityError as exc:  # a concurrent create of the same code
        raise CouponCodeTaken(code) from exc
    return coupon_out(row, now=now)


async def update_coupon(
    conn: AsyncConnection, *, code: str, patch: CouponPatch, now: datetime
) -> CouponOut:
    row = await repository.get_coupon(conn, code)
    if row is None:
        raise CouponNotFound(code)
    current = coupon_out(row, now=now)
    spec: dict[str, Any] = {
        "type": current.type,
        "status": current.status,
        "discount_type": current.discount_type,
        "discount_value": Decimal(current.discount_value),
        "max_discount": None if current.max_discount is None else Decimal(current.max_discount),
        "min_order_total": Decimal(current.min_order_total),
        "starts_at": current.starts_at,
        "ends_at": current.ends_at,
        "user_id": current.user_id,
        "usage_limit": current.usage_limit,
        "per_user_limit": current.per_user_limit,
    }
    changes = {
        name: value
        for name, value in msgspec.structs.asdict(patch).items()
        if value is not msgspec.UNSET
    }
    spec.update(changes)
    values = _coupon_values(spec)
    if values["usage_limit"] is not None and values["usage_limit"] < row["used_count"]:
        raise InvalidInput(
            f"usage_limit cannot go below the {row['used_count']} uses already made",
            field="usage_limit",
        )
    updated = await repository.update_coupon(conn, row["id"], {**values, "updated_at": now})
    return coupon_out(updated, now=now)


async def get_coupon(conn: AsyncConnection, *, code: str, now: datetime) -> CouponOut:
    row = await repository.get_coupon(conn, code)
    if row is None:
        raise CouponNotFound(code)
    return coupon_out(row, now=now)


def coupon_out(row: RowMapping, *, now: datetime) -> CouponOut:
    value = row["discount_value"]
    max_discount = row["max_discount_cents"]
    return CouponOut(
        id=row["id"],
        code=row["code"],
        type=row["type"],
        status=row["status"],
        state=coupon_state(
            status=row["status"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            now=now.timestamp(),
        ),
        discount_type=row["discount_type"],
        # Basis points and cents share the two-decimal rendering: 1550 -> "15.50".
        discount_value=format_cents(value),
        max_discount=None if max_discount is None else format_cents(max_discount),
        min_order_total=format_cents(row["min_order_total_cents"]),
        starts_at=from_db(row["starts_at"]),
        ends_at=from_db(row["ends_at"]),
        user_id=row["owner_user_id"],
        usage_limit=row["usage_limit"],
        per_user_limit=row["per_user_limit"],
        used_count=row["used_count"],
        created_at=from_db(row["created_at"]) or now,
        updated_at=from_db(row["updated_at"]) or now,
    )


# --- stats ------------------------------------------------------------------------------


def _outcomes(rows: list[tuple[str | None, bool, int]]) -> OutcomeCounts:
    by_reason = dict.fromkeys(REASONS, 0)
    valid = invalid = 0
    for reason, is_valid, count in rows:
        if is_valid:
            valid += count
        else:
            invalid += count
            by_reason[reason or "unknown"] = by_reason.get(reason or "unknown", 0) + count
    return OutcomeCounts(
        attempts=valid + invalid, valid=valid, invalid=invalid, by_reason=by_reason
    )


async def coupon_stats(conn: AsyncConnection, *, code: str, now: datetime) -> CouponStats:
    row = await repository.get_coupon(conn, code)
    all_time = _outcomes(await repository.outcome_counts(conn, code, None))
    if row is None and all_time.attempts == 0:
        raise CouponNotFound(code)
    since = now - timedelta(hours=24)
    recent = _outcomes(await repository.outcome_counts(conn, code, since))
    p50 = await repository.latency_percentile(conn, code, since, recent.attempts, 0.50)
    p95 = await repository.latency_percentile(conn, code, since, recent.attempts, 0.95)
    return CouponStats(
        code=code,
        used_count=0 if row is None else row["used_count"],
        all_time=all_time,
        last_24h=recent,
        latency_last_24h=LatencySummary(p50_us=p50, p95_us=p95),
    )
