"""The pure coupon rules: every reason, the order reasons are reported in, the boundaries, and
the money arithmetic (integer cents, half-up rounding, caps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from peakshop.config import Settings
from peakshop.coupons import service
from peakshop.coupons.index import CouponIndex
from peakshop.coupons.models import coupons
from peakshop.coupons.rules import (
    check_static,
    check_usage,
    coupon_state,
    discount_for,
    rule_from_row,
)
from peakshop.coupons.schemas import REASONS, CouponCreate
from peakshop.db import Database
from peakshop.kit.money import MAX_CENTS, format_cents, parse_cents, percent_of
from peakshop.state.memory import MemoryBroadcast, MemoryUsageCounters
from tests.conftest import make_settings
from tests.fixtures.factories import coupon_rule

NOW = 1_800_000_000.0


def static(
    rule_overrides: dict[str, object], *, user: str = "alice", total: int = 10_000
) -> str | None:
    return check_static(
        coupon_rule(**rule_overrides), user_id=user, order_total_cents=total, now=NOW
    )


# --- each static reason and its boundary ---------------------------------------------------


def test_a_plain_active_coupon_is_valid() -> None:
    assert static({}) is None


def test_inactive() -> None:
    assert static({"active": False}) == "inactive"


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [(NOW + 0.001, "not_started"), (NOW + 86_400, "not_started"), (NOW, None), (NOW - 1, None)],
)
def test_not_started_until_starts_at_inclusive(starts_at: float, expected: str | None) -> None:
    assert static({"starts_at": starts_at}) == expected


@pytest.mark.parametrize(
    ("ends_at", "expected"),
    [(NOW, "expired"), (NOW - 0.001, "expired"), (NOW - 86_400, "expired"), (NOW + 0.001, None)],
)
def test_expired_from_ends_at_inclusive(ends_at: float, expected: str | None) -> None:
    assert static({"ends_at": ends_at}) == expected


def test_not_owner_only_for_someone_else() -> None:
    assert static({"owner_user_id": "alice"}, user="alice") is None
    assert static({"owner_user_id": "alice"}, user="bob") == "not_owner"
    # Owner ids are compared exactly: no case folding of user ids.
    assert static({"owner_user_id": "alice"}, user="ALICE") == "not_owner"


@pytest.mark.parametrize(
    ("total", "expected"),
    [(4_999, "min_order_total"), (5_000, None), (5_001, None), (0, "min_order_total")],
)
def test_min_order_total_exactly_met_is_enough(total: int, expected: str | None) -> None:
    assert static({"min_order_total_cents": 5_000}, total=total) == expected


def test_zero_minimum_accepts_an_empty_basket() -> None:
    assert static({"min_order_total_cents": 0}, total=0) is None


# --- usage reasons ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used_total", "expected"),
    [(0, None), (2, None), (3, "usage_limit_reached"), (4, "usage_limit_reached")],
)
def test_usage_limit_reached_at_the_limit(used_total: int, expected: str | None) -> None:
    rule = coupon_rule(usage_limit=3)
    assert check_usage(rule, used_total=used_total, used_by_user=0) == expected


@pytest.mark.parametrize(
    ("used_by_user", "expected"), [(0, None), (1, None), (2, "user_limit_reached")]
)
def test_user_limit_reached_at_the_limit(used_by_user: int, expected: str | None) -> None:
    rule = coupon_rule(per_user_limit=2)
    assert check_usage(rule, used_total=used_by_user, used_by_user=used_by_user) == expected


def test_no_limits_means_any_usage_is_fine() -> None:
    rule = coupon_rule(usage_limit=None, per_user_limit=None)
    assert not rule.has_usage_limits
    assert check_usage(rule, used_total=10**9, used_by_user=10**9) is None
    assert coupon_rule(usage_limit=1).has_usage_limits
    assert coupon_rule(per_user_limit=1).has_usage_limits


def test_global_limit_is_reported_before_the_user_limit() -> None:
    rule = coupon_rule(usage_limit=1, per_user_limit=1)
    assert check_usage(rule, used_total=1, used_by_user=1) == "usage_limit_reached"
    assert check_usage(rule, used_total=0, used_by_user=1) == "user_limit_reached"


# --- the order reasons are reported in ------------------------------------------------------


def test_reasons_are_reported_in_a_fixed_order() -> None:
    """Start from a coupon that breaks every static rule and repair one rule at a time: each
    repair reveals the next reason, in the documented order."""
    broken: dict[str, object] = {
        "active": False,
        "starts_at": NOW + 10,
        "ends_at": NOW - 10,  # not a window one can create, but the rules must still be ordered
        "owner_user_id": "alice",
        "min_order_total_cents": 20_000,
    }
    repairs: list[tuple[str, object]] = [
        ("active", True),
        ("starts_at", None),
        ("ends_at", None),
        ("owner_user_id", None),
        ("min_order_total_cents", 0),
    ]
    seen = []
    for name, fixed in repairs:
        seen.append(static(broken, user="bob", total=10_000))
        broken[name] = fixed
    seen.append(static(broken, user="bob", total=10_000))
    assert seen == ["inactive", "not_started", "expired", "not_owner", "min_order_total", None]


def test_reason_names_match_the_api_contract() -> None:
    assert REASONS == (
        "not_found",
        "inactive",
        "expired",
        "not_started",
        "not_owner",
        "min_order_total",
        "usage_limit_reached",
        "user_limit_reached",
    )


# --- discount arithmetic --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "basis_points", "expected"),
    [
        (5, 1_500, 1),  # 15 % of 0.05 = 0.0075 -> 0.01
        (1_001, 3_333, 334),  # 33.33 % of 10.01 = 3.336333 -> 3.34
        (1, 5_000, 1),  # 50 % of 0.01 = 0.005: exactly half rounds up
        (5, 1_000, 1),  # 10 % of 0.05 = 0.005 -> 0.01
        (4, 1_250, 1),  # 12.5 % of 0.04 = 0.005 -> 0.01
        (4, 1_000, 0),  # 10 % of 0.04 = 0.004 -> 0.00
        (14, 1_000, 1),  # 0.014 -> 0.01 (below half rounds down)
        (15, 1_000, 2),  # 0.015 -> 0.02
        (9_999, 10_000, 9_999),  # 100 %
        (0, 5_000, 0),
        (MAX_CENTS, 9_999, 99_990_000_000),  # no float on the way: exact at the top of the range
        (MAX_CENTS - 1, 1, 10_000_000),  # 0.01 % of 999,999,999.99 = 99,999.9999999 -> 100,000.00
    ],
)
def test_percent_rounds_half_up_to_the_cent(total: int, basis_points: int, expected: int) -> None:
    assert percent_of(total, basis_points) == expected
    rule = coupon_rule(discount_type="percent", discount_value=basis_points)
    assert discount_for(rule, total) == expected


def test_percent_with_cap() -> None:
    rule = coupon_rule(discount_type="percent", discount_value=5_000, max_discount_cents=2_000)
    assert discount_for(rule, 10_000) == 2_000  # 50 % of 100.00 = 50.00, capped at 20.00
    assert discount_for(rule, 4_000) == 2_000  # exactly the cap
    assert discount_for(rule, 3_000) == 1_500  # under the cap
    zero_cap = coupon_rule(discount_type="percent", discount_value=5_000, max_discount_cents=0)
    assert discount_for(zero_cap, 10_000) == 0


def test_fixed_discount_never_exceeds_the_total() -> None:
    rule = coupon_rule(discount_type="fixed", discount_value=1_000)
    assert discount_for(rule, 2_500) == 1_000
    assert discount_for(rule, 1_000) == 1_000
    assert discount_for(rule, 500) == 500  # fixed 10.00 on a 5.00 basket: the basket is free
    assert discount_for(rule, 0) == 0


def test_fixed_discount_with_a_smaller_cap() -> None:
    rule = coupon_rule(discount_type="fixed", discount_value=1_000, max_discount_cents=300)
    assert discount_for(rule, 5_000) == 300
    assert discount_for(rule, 200) == 200


# --- coupon state (shown by the admin API and used by the list filters) ----------------------


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.mark.parametrize(
    ("status", "starts_at", "ends_at", "expected"),
    [
        ("active", None, None, "active"),
        ("inactive", None, None, "inactive"),
        ("inactive", _at(NOW - 20), _at(NOW - 10), "inactive"),  # inactive wins over expired
        ("active", _at(NOW - 20), _at(NOW), "expired"),  # ends_at == now: expired
        ("active", _at(NOW), _at(NOW + 10), "active"),  # starts_at == now: started
        ("active", _at(NOW + 1), _at(NOW + 10), "scheduled"),
        ("active", None, _at(NOW + 1), "active"),
    ],
)
def test_coupon_state(
    status: str, starts_at: datetime | None, ends_at: datetime | None, expected: str
) -> None:
    assert coupon_state(status=status, starts_at=starts_at, ends_at=ends_at, now=NOW) == expected


def test_naive_datetimes_from_sqlite_are_utc() -> None:
    naive = datetime(2027, 1, 15, 12, 0, 0)
    assert (
        coupon_state(
            status="active",
            starts_at=None,
            ends_at=naive,
            now=naive.replace(tzinfo=UTC).timestamp(),
        )
        == "expired"
    )
    row = {
        "id": 7,
        "code": "NAIVE-1",
        "type": "time_window",
        "status": "active",
        "discount_type": "percent",
        "discount_value": 1_000,
        "max_discount_cents": None,
        "min_order_total_cents": 0,
        "starts_at": naive,
        "ends_at": naive + timedelta(hours=1),
        "owner_user_id": None,
        "usage_limit": None,
        "per_user_limit": 1,
    }
    rule = rule_from_row(row)  # type: ignore[arg-type]
    assert rule.starts_at == naive.replace(tzinfo=UTC).timestamp()
    assert rule.ends_at == rule.starts_at + 3_600
    assert rule.active


# --- parse_cents / format_cents ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        ("49.90", 4_990),
        ("49.9", 4_990),
        ("0", 0),
        ("0.00", 0),
        ("-0", 0),
        ("0.01", 1),
        ("10.010", 1_001),  # trailing zeros are not extra precision
        ("1E+2", 10_000),
        (10, 1_000),
        (0.1, 10),  # a float is read through its shortest repr
        (Decimal("12.34"), 1_234),
        ("1000000000.00", MAX_CENTS),
    ],
)
def test_parse_cents_accepts(value: str | int | float | Decimal, cents: int) -> None:
    assert parse_cents(value, field="order_total") == cents


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-0.01", "must not be negative"),
        ("-5", "must not be negative"),
        ("0.001", "at most two decimal places"),
        ("10.015", "at most two decimal places"),
        (0.1 + 0.2, "at most two decimal places"),
        ("1e-1000010", "at most two decimal places"),
        ("NaN", "finite"),
        ("-NaN", "finite"),
        ("sNaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("1000000000.01", "at most 1000000000.00"),
        ("1e12", "at most 1000000000.00"),
        ("1e999999", "at most 1000000000.00"),  # would overflow the decimal context if multiplied
        ("1e999999999", "at most 1000000000.00"),
        ("abc", "decimal amount"),
        ("", "decimal amount"),
        ("1,5", "decimal amount"),
        ("0x10", "decimal amount"),
        (True, "decimal amount"),
        (False, "decimal amount"),
    ],
)
def test_parse_cents_refuses_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_cents(value, field="order_total")  # type: ignore[arg-type]
    assert str(raised.value).startswith("order_total ")


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (99, "0.99"), (100, "1.00"), (4_990, "49.90"),
     (MAX_CENTS, "1000000000.00"), (-1, "-0.01"), (-150, "-1.50")],
)  # fmt: skip
def test_format_cents(cents: int, text: str) -> None:
    assert format_cents(cents) == text
    if cents >= 0:
        assert parse_cents(text, field="x") == cents


# --- service.validate: the hot path over a real index and real counters -----------------------


@pytest.fixture
async def index_and_db(sqlite_url: str) -> AsyncIterator[tuple[CouponIndex, Database, Settings]]:
    settings = make_settings(sqlite_url)
    db = Database(settings)
    index = CouponIndex(db=db, broadcast=MemoryBroadcast(), refresh_seconds=3_600)
    yield index, db, settings
    await index.close()
    await db.dispose()


async def _create(db: Database, index: CouponIndex, **fields: object) -> int:
    now = datetime.now(UTC)
    data = CouponCreate(
        **{
            "code": "HOT-1",
            "type": "time_window",
            "discount_type": "percent",
            "discount_value": Decimal("10"),
            "starts_at": now - timedelta(days=1),
            "ends_at": now + timedelta(days=1),
            **fields,
        }  # type: ignore[arg-type]
    )
    async with db.write() as conn:
        coupon = await service.create_coupon(conn, data=data, now=now)
    await index.announce(coupon.code)
    return coupon.id


async def test_validate_unknown_code_is_not_found(
    index_and_db: tuple[CouponIndex, Database, Settings],
) -> None:
    index, _, _ = index_and_db
    await index.load_all()
    result = await service.validate(
        index=index,
        counters=MemoryUsageCounters(),
        code="NOPE",
        user_id="u",
        order_total_cents=100,
        now=NOW,
    )
    assert result == ("not_found", 0)


async def test_validate_checks_static_rules_before_usage(
    index_and_db: tuple[CouponIndex, Database, Settings],
) -> None:
    index, db, _ = index_and_db
    coupon_id = await _create(
        db, index, usage_limit=1, per_user_limit=1, min_order_total=Decimal("50")
    )
    counters = MemoryUsageCounters()
    await counters.load(totals={}, per_user=[])
    now = datetime.now(UTC).timestamp()

    async def check(total: int) -> tuple[str | None, int]:
        return await service.validate(
            index=index,
            counters=counters,
            code="HOT-1",
            user_id="u1",
            order_total_cents=total,
            now=now,
        )

    assert await check(6_000) == (None, 600)
    await counters.record(coupon_id, "u1")
    assert await check(6_000) == ("usage_limit_reached", 0)
    # A static failure wins over a usage failure, and a rejection carries no discount.
    assert await check(4_000) == ("min_order_total", 0)


async def test_validate_sees_a_change_once_announced(
    index_and_db: tuple[CouponIndex, Database, Settings],
) -> None:
    index, db, _ = index_and_db
    coupon_id = await _create(db, index)
    counters = MemoryUsageCounters()
    now = datetime.now(UTC).timestamp()
    args = {
        "counters": counters,
        "code": "HOT-1",
        "user_id": "u1",
        "order_total_cents": 1_000,
        "now": now,
    }
    assert await service.validate(index=index, **args) == (None, 100)  # type: ignore[arg-type]
    async with db.write() as conn:
        await conn.execute(
            sa.update(coupons).where(coupons.c.id == coupon_id).values(status="inactive")
        )
    # The index answers from memory: until the change is announced, the old rule holds.
    assert await service.validate(index=index, **args) == (None, 100)  # type: ignore[arg-type]
    await index.announce("HOT-1")
    assert await service.validate(index=index, **args) == ("inactive", 0)  # type: ignore[arg-type]
