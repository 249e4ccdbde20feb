"""Validation compared with a small reference model written here with Decimal arithmetic:
first the pure rules on many generated cases, then the HTTP endpoints (redeem and validate)
on fewer, on every backend."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from peakshop.coupons.rules import check_static, check_usage, discount_for
from peakshop.kit.money import MAX_CENTS, format_cents, parse_cents
from tests.conftest import SERVICE
from tests.coupons.support import VALIDATE, Client, create_coupon, redeem
from tests.fixtures.factories import coupon_rule, iso, unique_code, unique_order, unique_user

CENT = Decimal("0.01")
NOW = 1_800_000_000.0
USERS = ["alice", "bob", "carol"]

# --- the reference model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Coupon:
    """A coupon as a person reads it: amounts in currency units, percent as a percentage."""

    active: bool
    percent: bool
    value: Decimal  # 12.5 (%) or 10.00 (currency)
    cap: Decimal | None
    min_total: Decimal
    starts_at: float | None
    ends_at: float | None
    owner: str | None
    usage_limit: int | None
    per_user_limit: int | None


def reference(
    coupon: Coupon | None,
    *,
    user: str,
    total: Decimal,
    now: float,
    used_total: int,
    used_by_user: int,
) -> tuple[str | None, Decimal]:
    """(reason, discount) as the API documents them, in the documented reason order."""
    if coupon is None:
        return "not_found", Decimal(0)
    checks = [
        ("inactive", not coupon.active),
        ("not_started", coupon.starts_at is not None and now < coupon.starts_at),
        ("expired", coupon.ends_at is not None and now >= coupon.ends_at),
        ("not_owner", coupon.owner is not None and coupon.owner != user),
        ("min_order_total", total < coupon.min_total),
        (
            "usage_limit_reached",
            coupon.usage_limit is not None and used_total >= coupon.usage_limit,
        ),
        (
            "user_limit_reached",
            coupon.per_user_limit is not None and used_by_user >= coupon.per_user_limit,
        ),
    ]
    for reason, failed in checks:
        if failed:
            return reason, Decimal(0)
    if coupon.percent:
        discount = (total * coupon.value / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    else:
        discount = coupon.value
    if coupon.cap is not None:
        discount = min(discount, coupon.cap)
    return None, min(discount, total)


def cents(amount: Decimal) -> int:
    return int(amount * 100)


def money(value: int) -> Decimal:
    return Decimal(value) / 100


# --- strategies -----------------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=30_000).map(money)  # 0.00 .. 300.00
offsets = st.sampled_from([-86_400.0, -1.0, -0.001, 0.0, 0.001, 1.0, 86_400.0])


@st.composite
def model_coupons(draw: st.DrawFn) -> Coupon:
    percent = draw(st.booleans())
    value = (
        money(draw(st.integers(1, 10_000)))  # 0.01 % .. 100 %
        if percent
        else money(draw(st.integers(1, 40_000)))
    )
    return Coupon(
        active=draw(st.booleans()),
        percent=percent,
        value=value,
        cap=draw(st.none() | st.integers(0, 20_000).map(money)),
        min_total=draw(st.sampled_from([Decimal(0), Decimal("0.01")]) | amounts),
        starts_at=draw(st.none() | offsets.map(lambda o: NOW + o)),
        ends_at=draw(st.none() | offsets.map(lambda o: NOW + o)),
        owner=draw(st.none() | st.sampled_from(USERS)),
        usage_limit=draw(st.none() | st.integers(0, 4)),
        per_user_limit=draw(st.none() | st.integers(0, 4)),
    )


def as_rule(coupon: Coupon) -> Any:
    return coupon_rule(
        active=coupon.active,
        discount_type="percent" if coupon.percent else "fixed",
        discount_value=cents(coupon.value),  # basis points for percent, cents for fixed
        max_discount_cents=None if coupon.cap is None else cents(coupon.cap),
        min_order_total_cents=cents(coupon.min_total),
        starts_at=coupon.starts_at,
        ends_at=coupon.ends_at,
        owner_user_id=coupon.owner,
        usage_limit=coupon.usage_limit,
        per_user_limit=coupon.per_user_limit,
    )


# --- the pure rules against the model --------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(
    coupon=model_coupons(),
    user=st.sampled_from(USERS),
    total=amounts | st.integers(0, MAX_CENTS).map(money),
    used_total=st.integers(0, 5),
    used_by_user=st.integers(0, 5),
)
@example(  # 15 % of 0.05 rounds half up to 0.01
    coupon=Coupon(True, True, Decimal(15), None, Decimal(0), None, None, None, None, None),
    user="alice",
    total=Decimal("0.05"),
    used_total=0,
    used_by_user=0,
)
@example(  # 33.33 % of 10.01 = 3.336333 -> 3.34
    coupon=Coupon(True, True, Decimal("33.33"), None, Decimal(0), None, None, None, None, None),
    user="alice",
    total=Decimal("10.01"),
    used_total=0,
    used_by_user=0,
)
def test_rules_agree_with_the_reference_model(
    coupon: Coupon, user: str, total: Decimal, used_total: int, used_by_user: int
) -> None:
    used_by_user = min(used_by_user, used_total)  # one user's uses are among all uses
    expected_reason, expected_discount = reference(
        coupon, user=user, total=total, now=NOW, used_total=used_total, used_by_user=used_by_user
    )
    rule = as_rule(coupon)
    total_cents = parse_cents(str(total), field="order_total")
    reason = check_static(rule, user_id=user, order_total_cents=total_cents, now=NOW) or (
        check_usage(rule, used_total=used_total, used_by_user=used_by_user)
    )
    discount = 0 if reason is not None else discount_for(rule, total_cents)
    assert reason == expected_reason
    assert money(discount) == expected_discount
    assert format_cents(discount) == f"{expected_discount:.2f}"
    assert format_cents(total_cents - discount) == f"{total - expected_discount:.2f}"
    assert 0 <= discount <= total_cents


decimal_inputs = st.one_of(
    st.decimals(min_value=-10, max_value=2 * MAX_CENTS // 100, places=2),
    st.decimals(min_value=-10, max_value=2 * MAX_CENTS // 100, places=4),
    st.decimals(allow_nan=True, allow_infinity=True),  # any exponent, NaN, sNaN, infinities
)


@settings(max_examples=400, deadline=None)
@given(value=decimal_inputs)
def test_parse_cents_agrees_with_decimal(value: Decimal) -> None:
    acceptable = (
        value.is_finite()
        and Decimal(0) <= value <= Decimal(MAX_CENTS) / 100
        and value == value.quantize(CENT)
    )
    for form in (value, str(value)):
        if acceptable:
            parsed = parse_cents(form, field="x")
            assert money(parsed) == value
            assert format_cents(parsed) == f"{abs(value):.2f}"  # abs: "-0.00" is 0.00
        else:
            try:
                parse_cents(form, field="x")
            except ValueError as exc:
                assert str(exc).startswith("x ")
            else:
                raise AssertionError(f"{form!r} was accepted")


# --- the HTTP endpoints against the model -----------------------------------------------------------

DAY = 86_400
# (starts_at, ends_at) offsets from the real clock: far from any boundary, since the server
# reads the clock itself.
WINDOWS = {
    "current": (-DAY, DAY),
    "not_started": (DAY, 2 * DAY),
    "expired": (-2 * DAY, -DAY),
    "open_ended": (-DAY, None),
    "always": (None, None),
}


@st.composite
def http_cases(draw: st.DrawFn) -> dict[str, Any]:
    coupon_type = draw(st.sampled_from(["time_window", "user_specific"]))
    windows = ["current", "not_started", "expired"]
    if coupon_type == "user_specific":
        windows += ["open_ended", "always"]
    return {
        "type": coupon_type,
        "window": draw(st.sampled_from(windows)),
        "active": draw(st.booleans()),
        "percent": draw(st.booleans()),
        # Rounding-sensitive percentages and totals (exact half cents) mixed with any.
        "value": draw(st.sampled_from([5_000, 1_500, 1_250, 3_333]) | st.integers(1, 10_000)),
        "cap": draw(st.none() | st.integers(0, 20_000)),
        "min_total": draw(st.integers(0, 20_000)),
        "usage_limit": draw(st.none() | st.integers(1, 3)),
        "per_user_limit": draw(st.none() | st.integers(1, 2)),
        "owned_by_caller": draw(st.booleans()),
        "total": draw(st.sampled_from([1, 4, 5, 15, 1_001]) | st.integers(0, 30_000)),
        "total_as_number": draw(st.booleans()),
        "earlier": draw(st.lists(st.sampled_from(["caller", "other"]), max_size=3)),
        "unknown_code": draw(st.integers(0, 9)) == 0,
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=http_cases())
async def test_http_redeem_and_validate_agree_with_the_model(
    client: Client, case: dict[str, Any]
) -> None:
    now = time.time()
    caller, owner = unique_user(), unique_user()
    starts, ends = WINDOWS[case["window"]]
    coupon = Coupon(
        active=case["active"],
        percent=case["percent"],
        value=money(case["value"]),
        cap=None if case["cap"] is None else money(case["cap"]),
        min_total=money(case["min_total"]),
        starts_at=None if starts is None else now + starts,
        ends_at=None if ends is None else now + ends,
        owner=None
        if case["type"] == "time_window"
        else (caller if case["owned_by_caller"] else owner),
        usage_limit=case["usage_limit"],
        per_user_limit=case["per_user_limit"],
    )
    payload: dict[str, Any] = {
        "code": unique_code("P"),
        "type": case["type"],
        "status": "active" if coupon.active else "inactive",
        "discount_type": "percent" if coupon.percent else "fixed",
        "discount_value": str(coupon.value),
        "max_discount": None if coupon.cap is None else str(coupon.cap),
        "min_order_total": str(coupon.min_total),
        "starts_at": None if coupon.starts_at is None else iso_at(coupon.starts_at),
        "ends_at": None if coupon.ends_at is None else iso_at(coupon.ends_at),
        "user_id": coupon.owner,
        "usage_limit": coupon.usage_limit,
        "per_user_limit": coupon.per_user_limit,
    }
    code = (await create_coupon(client, payload))["code"]
    total = money(case["total"])
    wire_total: Any = float(total) if case["total_as_number"] else f"{total:.2f}"

    used_total = 0
    used_by: dict[str, int] = {}
    for who in case["earlier"]:
        user = caller if who == "caller" else unique_user()
        reason, discount = reference(
            coupon,
            user=user,
            total=total,
            now=time.time(),
            used_total=used_total,
            used_by_user=used_by.get(user, 0),
        )
        response = await redeem(client, code, user, unique_order(), wire_total)
        if reason is None:
            assert response.status_code == 201, (case, response.text)
            assert response.json()["discount"] == f"{discount:.2f}"
            assert response.json()["final_total"] == f"{total - discount:.2f}"
            used_total += 1
            used_by[user] = used_by.get(user, 0) + 1
        else:
            assert response.status_code == 409, (case, response.text)
            assert response.json()["reason"] == reason, case

    asked = "NEVER-" + code if case["unknown_code"] else code.lower()
    expected_reason, expected_discount = reference(
        None if case["unknown_code"] else coupon,
        user=caller,
        total=total,
        now=time.time(),
        used_total=used_total,
        used_by_user=used_by.get(caller, 0),
    )
    response = await client.post(
        VALIDATE,
        content=json.dumps({"code": asked, "user_id": caller, "order_total": wire_total}),
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": expected_reason is None,
        "code": asked.upper(),
        "discount": f"{expected_discount:.2f}",
        "final_total": f"{total - expected_discount:.2f}",
        "reason": expected_reason,
    }, case


def iso_at(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))
