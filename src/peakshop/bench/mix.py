"""The request mix of the validate scenario, drawn from the seeded database.

Each request is meant to be one kind (valid user-specific, valid time-window, expired,
inactive, unknown code, wrong owner). The kinds are told apart here from the raw columns,
independently of the server's rules module, and ``check`` asks the server about a sample of
each kind before a run, so a mix that does not test what it claims to is reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp
import msgspec
import sqlalchemy as sa

from peakshop.config import Settings
from peakshop.coupons.models import coupon_user_usage, coupons, users
from peakshop.db import Database


class Kind(StrEnum):
    VALID_USER = "valid_user_specific"
    VALID_WINDOW = "valid_time_window"
    EXPIRED = "expired"
    INACTIVE = "inactive"
    UNKNOWN = "unknown_code"
    WRONG_OWNER = "wrong_owner"


# What the server should answer for each kind: None is valid, otherwise the reason.
EXPECTED: dict[Kind, str | None] = {
    Kind.VALID_USER: None,
    Kind.VALID_WINDOW: None,
    Kind.EXPIRED: "expired",
    Kind.INACTIVE: "inactive",
    Kind.UNKNOWN: "not_found",
    Kind.WRONG_OWNER: "not_owner",
}
# A checkout validates mostly good codes; the rest are the typical mistakes. A choice, not a
# measurement of real traffic: --mix changes it.
DEFAULT_WEIGHTS: dict[Kind, float] = {
    Kind.VALID_USER: 0.25,
    Kind.VALID_WINDOW: 0.25,
    Kind.EXPIRED: 0.10,
    Kind.INACTIVE: 0.10,
    Kind.UNKNOWN: 0.15,
    Kind.WRONG_OWNER: 0.15,
}
# A coupon whose window closes (or opens) this close to now could change kind during a run.
WINDOW_MARGIN_S = 3_600
USER_WINDOWS = 40  # random windows of consecutive users, so sampling 1M users stays cheap
USERS_PER_WINDOW = 50


class MixError(ValueError):
    """The database cannot supply the requested mix (empty, or a kind with no candidate)."""


@dataclass(frozen=True)
class Item:
    kind: Kind
    code: str
    user_id: str
    order_total: str

    def body(self) -> bytes:
        return msgspec.json.encode(
            {"code": self.code, "user_id": self.user_id, "order_total": self.order_total}
        )


@dataclass
class Mix:
    items: list[Item]
    weights: dict[Kind, float]
    candidates: dict[Kind, int]  # distinct coupons (or codes) each kind draws from
    database: dict[str, int] = field(default_factory=dict)  # row counts

    def bodies(self) -> list[bytes]:
        return [item.body() for item in self.items]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((kind.value for kind in self.weights), 0)
        for item in self.items:
            counts[item.kind.value] += 1
        return counts


def parse_weights(text: str | None) -> dict[Kind, float]:
    """``valid_user_specific=3,expired=1,...``; kinds left out get weight 0."""
    if not text:
        return dict(DEFAULT_WEIGHTS)
    weights: dict[Kind, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weights[Kind(name.strip())] = float(value)
        except ValueError as exc:
            kinds = ", ".join(kind.value for kind in Kind)
            raise MixError(f"bad mix entry {part!r}: use kind=weight with kinds {kinds}") from exc
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise MixError("mix weights must be non-negative and not all zero")
    return {kind: weight for kind, weight in weights.items() if weight > 0}


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def classify(
    coupon_rows: Sequence[Mapping[str, Any]],
    *,
    per_user: Mapping[tuple[int, str], int],
    now: float,
) -> dict[Kind, list[Mapping[str, Any]]]:
    """The coupons each coupon-based kind can use. A valid coupon must have room left under
    its limits (for its owner, for user-specific ones); coupons near a window edge are left
    out so that none changes kind during a run."""
    by_kind: dict[Kind, list[Mapping[str, Any]]] = {kind: [] for kind in Kind}
    for row in coupon_rows:
        starts, ends = _epoch(row["starts_at"]), _epoch(row["ends_at"])
        if row["status"] == "inactive":
            by_kind[Kind.INACTIVE].append(row)
            continue
        if ends is not None and ends <= now - WINDOW_MARGIN_S:
            if starts is None or starts <= now:
                by_kind[Kind.EXPIRED].append(row)
            continue
        in_window = (starts is None or starts <= now - WINDOW_MARGIN_S) and (
            ends is None or ends > now + WINDOW_MARGIN_S
        )
        if not in_window:
            continue
        room = row["usage_limit"] is None or row["used_count"] < row["usage_limit"]
        if row["type"] == "user_specific" and row["owner_user_id"]:
            by_kind[Kind.WRONG_OWNER].append(row)
            owner_uses = per_user.get((row["id"], row["owner_user_id"]), 0)
            limit = row["per_user_limit"]
            if room and (limit is None or owner_uses < limit):
                by_kind[Kind.VALID_USER].append(row)
        elif row["type"] == "time_window" and room:
            by_kind[Kind.VALID_WINDOW].append(row)
    return by_kind


def build(
    by_kind: Mapping[Kind, Sequence[Mapping[str, Any]]],
    *,
    user_ids: Sequence[str],
    per_user: Mapping[tuple[int, str], int],
    known_codes: set[str],
    weights: Mapping[Kind, float],
    size: int,
    seed: int,
) -> list[Item]:
    """``size`` requests in random order, kinds in proportion to ``weights``."""
    missing = [kind.value for kind in weights if kind is not Kind.UNKNOWN and not by_kind[kind]]
    if missing:
        raise MixError(f"the database has no coupon for: {', '.join(missing)} (seed it first)")
    if not user_ids:
        raise MixError("the database has no users (seed it first)")
    rng = random.Random(seed)
    kinds = list(weights)
    picks = rng.choices(kinds, weights=[weights[kind] for kind in kinds], k=size)
    items = []
    for kind in picks:
        if kind is Kind.UNKNOWN:
            code = _unknown_code(rng, known_codes)
            items.append(Item(kind, code, rng.choice(user_ids), _money(rng.randrange(500, 30_000))))
            continue
        row = rng.choice(by_kind[kind])
        user = row["owner_user_id"]
        if kind is Kind.WRONG_OWNER:
            user = _other_user(rng, user_ids, not_this=row["owner_user_id"])
        elif kind is Kind.VALID_WINDOW:
            user = _user_with_room(rng, user_ids, row, per_user)
        elif user is None:  # expired or inactive time-window coupon: anyone
            user = rng.choice(user_ids)
        # Valid kinds clear the minimum order total; others are ordinary baskets.
        total = row["min_order_total_cents"] + rng.randrange(500, 30_000)
        items.append(Item(kind, row["code"], user, _money(total)))
    return items


def _unknown_code(rng: random.Random, known: set[str]) -> str:
    while True:
        code = "NOPE-" + "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=8))
        if code not in known:
            return code


def _other_user(rng: random.Random, user_ids: Sequence[str], *, not_this: str) -> str:
    for _ in range(100):
        user = rng.choice(user_ids)
        if user != not_this:
            return user
    raise MixError("the sampled users hold no one but the owner: seed more users")


def _user_with_room(
    rng: random.Random,
    user_ids: Sequence[str],
    row: Mapping[str, Any],
    per_user: Mapping[tuple[int, str], int],
) -> str:
    limit = row["per_user_limit"]
    for _ in range(100):
        user = rng.choice(user_ids)
        if limit is None or per_user.get((row["id"], user), 0) < limit:
            return user
    raise MixError(f"no sampled user has room left on coupon {row['code']}")


async def _read(
    settings: Settings, *, seed: int
) -> tuple[list[Any], dict[Any, int], list[str], int]:
    db = Database(settings)
    try:
        async with db.read() as conn:
            coupon_rows = (await conn.execute(sa.select(coupons))).mappings().all()
            usage_rows = (await conn.execute(sa.select(coupon_user_usage))).mappings().all()
            user_count = (await conn.scalar(sa.select(sa.func.count()).select_from(users))) or 0
            rng = random.Random(seed)
            windows = min(USER_WINDOWS, max(user_count // USERS_PER_WINDOW, 1))
            user_ids: list[str] = []
            for _ in range(windows if user_count else 0):
                start = rng.randrange(max(user_count - USERS_PER_WINDOW, 0) + 1)
                query = sa.select(users.c.id).order_by(users.c.id)
                query = query.offset(start).limit(USERS_PER_WINDOW)
                user_ids += (await conn.execute(query)).scalars().all()
    finally:
        await db.dispose()
    per_user = {(row["coupon_id"], row["user_id"]): int(row["count"]) for row in usage_rows}
    return list(coupon_rows), per_user, sorted(set(user_ids)), int(user_count)


def load(settings: Settings, *, size: int, weights: Mapping[Kind, float], seed: int = 42) -> Mix:
    """Read the coupons and a sample of users from the configured database and build the mix."""
    coupon_rows, per_user, user_ids, user_count = asyncio.run(_read(settings, seed=seed))
    by_kind = classify(coupon_rows, per_user=per_user, now=time.time())
    items = build(
        by_kind,
        user_ids=user_ids,
        per_user=per_user,
        known_codes={row["code"] for row in coupon_rows},
        weights=weights,
        size=size,
        seed=seed,
    )
    candidates: dict[Kind, int] = {
        kind: len(by_kind[kind]) for kind in weights if kind is not Kind.UNKNOWN
    }
    return Mix(
        items=items,
        weights=dict(weights),
        candidates=candidates,
        database={
            "users": user_count,
            "coupons": len(coupon_rows),
            "coupon_user_usage_rows": len(per_user),
            "users_sampled": len(user_ids),
        },
    )


async def check(
    *, url: str, token: str, items: Sequence[Item], per_kind: int = 20
) -> dict[str, dict[str, int]]:
    """Send up to ``per_kind`` requests of each kind and count the server's answers that match
    the kind, and those that do not (by what the server said)."""
    sample: dict[Kind, list[Item]] = {}
    for item in items:
        bucket = sample.setdefault(item.kind, [])
        if len(bucket) < per_kind:
            bucket.append(item)
    outcome: dict[str, dict[str, int]] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for kind, bucket in sample.items():
            counts = outcome.setdefault(kind.value, {"matched": 0})
            for item in bucket:
                async with session.post(url, data=item.body()) as response:
                    payload = await response.json() if response.status == 200 else None
                if payload is None:
                    answer = f"http_{response.status}"
                elif payload["valid"]:
                    answer = "valid"
                else:
                    answer = str(payload["reason"])
                expected = EXPECTED[kind] or "valid"
                key = "matched" if answer == expected else f"got_{answer}"
                counts[key] = counts.get(key, 0) + 1
    return outcome
