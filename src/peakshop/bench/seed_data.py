"""The seed data set, generated without I/O: deterministic for a given seed.

Times are epoch seconds relative to ``now``, so active coupons are active whenever the data
set is made; the writers turn them into each database's timestamp representation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peakshop.coupons.rules import CouponRule, check_static, discount_for

DAY = 86_400
YEAR = 365 * DAY
EMAIL_DOMAIN = "example.com"

# Reference distribution: states within each type, so type x state is balanced too.
TYPES = ("user_specific", "time_window")
STATE_SHARES = (("active", 0.60), ("expired", 0.25), ("inactive", 0.15))

_WORDS = (
    *("SAVE", "DEAL", "VIP", "WELCOME", "SPRING", "SUMMER", "AUTUMN", "WINTER", "FLASH"),
    *("BONUS", "EXTRA", "LOYAL", "THANKS", "PEAK", "MEGA", "FRESH", "CYBER", "FRIEND"),
)
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes get typed by hand
_PERCENTS_BP = (500, 1000, 1000, 1250, 1500, 1500, 2000, 2500, 3000, 4000, 5000)
_PERCENT_CAPS = (1000, 2000, 2500, 5000, 10_000)
_FIXED_CENTS = (300, 500, 500, 1000, 1000, 1500, 2000, 2500, 5000)
_MIN_TOTALS = (1000, 2500, 5000, 7500, 10_000)
_USAGE_LIMITS = (50, 100, 250, 500, 1000, 5000)


class SeedError(ValueError):
    """The requested data set cannot be made (bad sizes, limits too tight for the usage)."""


def user_id(number: int) -> str:
    return f"user_{number:07d}"


def signup_offsets(count: int, *, start: int, stop: int, seed: int) -> list[int]:
    """Sign-up times of users ``start..stop-1`` (1-based, one chunk) in seconds after the
    first day of the year before now: ids follow sign-up order, spread evenly with jitter."""
    rand = random.Random(f"{seed}:users:{start}").random
    step = YEAR / max(count, 1)
    return [int((number - 1 + rand()) * step) for number in range(start, stop)]


@dataclass(slots=True)
class SeedCoupon:
    rule: CouponRule
    state: str  # active | expired | inactive, as generated
    created_at: float
    used_count: int = 0


@dataclass(slots=True)
class Usage:
    coupon_id: int
    user_id: str
    order_id: str
    order_total_cents: int
    discount_cents: int
    used_at: float


@dataclass(slots=True)
class CouponSet:
    coupons: list[SeedCoupon]
    usage: list[Usage]
    per_user: dict[tuple[int, str], int] = field(default_factory=dict)


def make_coupons(*, count: int, users: int, seed: int, now: float) -> list[SeedCoupon]:
    if count and users < 1:
        raise SeedError("user-specific coupons need owners: seed at least one user")
    rng = random.Random(f"{seed}:coupons")
    kinds: list[tuple[str, str]] = []
    for index, coupon_type in enumerate(TYPES):
        of_type = count // len(TYPES) + (1 if index < count % len(TYPES) else 0)
        kinds += _split_states(of_type, coupon_type)
    rng.shuffle(kinds)
    codes: set[str] = set()
    return [
        _make_coupon(rng, number, coupon_type, state, codes=codes, users=users, now=now)
        for number, (coupon_type, state) in enumerate(kinds, start=1)
    ]


def _split_states(count: int, coupon_type: str) -> list[tuple[str, str]]:
    kinds: list[tuple[str, str]] = []
    for state, share in STATE_SHARES[:-1]:
        kinds += [(coupon_type, state)] * round(count * share)
    kinds += [(coupon_type, STATE_SHARES[-1][0])] * (count - len(kinds))
    return kinds


def _make_coupon(
    rng: random.Random,
    coupon_id: int,
    coupon_type: str,
    state: str,
    *,
    codes: set[str],
    users: int,
    now: float,
) -> SeedCoupon:
    percent = rng.random() < 0.65
    if percent:
        value = rng.choice(_PERCENTS_BP)
        cap = rng.choice(_PERCENT_CAPS) if rng.random() < 0.4 else None
    else:
        value, cap = rng.choice(_FIXED_CENTS), None
    min_total = rng.choice(_MIN_TOTALS) if rng.random() < 0.5 else 0
    draw = rng.random()
    per_user_limit = 1 if draw < 0.8 else 2 if draw < 0.88 else 3 if draw < 0.93 else None
    starts_at, ends_at = _window(rng, coupon_type, state, now)
    owner = None
    if coupon_type == "user_specific":
        owner = user_id(rng.randint(1, users))
        usage_limit = rng.choice((1, 2, 5)) if rng.random() < 0.3 else None
    else:
        usage_limit = rng.choice(_USAGE_LIMITS) if rng.random() < 0.6 else None
    created_at = (starts_at if starts_at is not None else now - 30 * DAY) - rng.uniform(0, 14 * DAY)
    if ends_at is not None:
        created_at = min(created_at, ends_at - DAY)
    rule = CouponRule(
        id=coupon_id,
        code=_unique_code(rng, codes, percent=percent, value=value),
        type=coupon_type,
        active=state != "inactive",
        discount_type="percent" if percent else "fixed",
        discount_value=value,
        max_discount_cents=cap,
        min_order_total_cents=min_total,
        starts_at=starts_at,
        ends_at=ends_at,
        owner_user_id=owner,
        usage_limit=usage_limit,
        per_user_limit=per_user_limit,
    )
    return SeedCoupon(rule=rule, state=state, created_at=created_at)


def _window(
    rng: random.Random, coupon_type: str, state: str, now: float
) -> tuple[float | None, float | None]:
    # Active windows end at least a week from now, so a seeded demo stays valid for days.
    if state == "expired":
        ends_at = now - rng.uniform(DAY, 180 * DAY)
        starts_at = ends_at - rng.uniform(7 * DAY, 60 * DAY)
    else:
        starts_at = now - rng.uniform(DAY, 60 * DAY)
        ends_at = now + rng.uniform(7 * DAY, 90 * DAY)
    if coupon_type == "time_window":
        return starts_at, ends_at
    # User-specific coupons mostly have no window; an expired one needs its end date.
    if state == "expired":
        return (starts_at if rng.random() < 0.5 else None), ends_at
    return None, (ends_at if rng.random() < 0.5 else None)


def _unique_code(rng: random.Random, codes: set[str], *, percent: bool, value: int) -> str:
    amount = value // 100
    word = rng.choice(_WORDS)
    while True:
        suffix = "".join(rng.choices(_CODE_ALPHABET, k=6))
        code = f"{word}{amount}-{suffix}" if percent else f"{word}{amount}OFF-{suffix}"
        if code not in codes:
            codes.add(code)
            return code


def make_usage(
    coupons: list[SeedCoupon], *, count: int, users: int, seed: int, now: float
) -> CouponSet:
    """``count`` redemptions over the active coupons, each within the coupon's limits and the
    owner rule, so ``used_count`` and the per-user rows follow from them."""
    rng = random.Random(f"{seed}:usage")
    open_coupons = [c for c in coupons if c.state == "active"]
    if count and not open_coupons:
        raise SeedError("usage records need active coupons: seed more coupons or no usage")
    result = CouponSet(coupons=coupons, usage=[])
    per_user = result.per_user
    while len(result.usage) < count:
        if not open_coupons:
            raise SeedError(
                f"only {len(result.usage)} usage records fit the active coupons' limits; "
                "seed more coupons or fewer usage records"
            )
        slot = rng.randrange(len(open_coupons))
        coupon = open_coupons[slot]
        rule = coupon.rule
        user = rule.owner_user_id or _user_with_room(rng, rule, per_user, users)
        total = rule.min_order_total_cents + rng.randrange(500, 25_000)
        assert check_static(rule, user_id=user, order_total_cents=total, now=now) is None
        lower = max(coupon.created_at, rule.starts_at or 0.0, now - 90 * DAY)
        result.usage.append(
            Usage(
                coupon_id=rule.id,
                user_id=user,
                order_id=f"order_{len(result.usage) + 1:09d}",
                order_total_cents=total,
                discount_cents=discount_for(rule, total),
                used_at=lower + rng.random() * (now - 60 - lower),
            )
        )
        coupon.used_count += 1
        per_user[rule.id, user] = per_user.get((rule.id, user), 0) + 1
        if coupon.used_count >= _capacity(coupon, users):
            open_coupons[slot] = open_coupons[-1]
            open_coupons.pop()
    return result


def _capacity(coupon: SeedCoupon, users: int) -> int | float:
    """Uses the coupon can take in all, given its limits and who may use it."""
    rule = coupon.rule
    users_allowed = 1 if rule.owner_user_id is not None else users
    by_users = float("inf") if rule.per_user_limit is None else rule.per_user_limit * users_allowed
    by_total = float("inf") if rule.usage_limit is None else rule.usage_limit
    return min(by_users, by_total)


def _user_has_room(rule: CouponRule, per_user: dict[tuple[int, str], int], user: str) -> bool:
    limit = rule.per_user_limit
    return limit is None or per_user.get((rule.id, user), 0) < limit


def _user_with_room(
    rng: random.Random, rule: CouponRule, per_user: dict[tuple[int, str], int], users: int
) -> str:
    # Probe from a random user: the coupon is open, so some user still has room.
    start = rng.randrange(users)
    for step in range(users):
        candidate = user_id((start + step) % users + 1)
        if _user_has_room(rule, per_user, candidate):
            return candidate
    raise AssertionError("an open coupon has a user with room")
