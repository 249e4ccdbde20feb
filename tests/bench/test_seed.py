"""`peakshop seed`: sizes, distribution, determinism, limits and counters, refusal, reset,
--if-empty, Redis counters in scaled mode, and the real command in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from peakshop.bench.seed import SeedReport, seed_database
from peakshop.bench.seed_data import SeedError
from peakshop.bench.seed_store import DatabaseNotEmpty
from peakshop.config import Settings
from peakshop.coupons import repository as coupon_repository
from peakshop.coupons.models import users
from peakshop.coupons.rules import check_static, coupon_state, discount_for, rule_from_row
from peakshop.coupons.schemas import CODE_PATTERN
from peakshop.db import Database
from peakshop.kit.clock import to_epoch
from peakshop.state.redis import RedisState
from tests.conftest import make_settings

USERS, COUPONS, USAGE = 2_000, 200, 150
# Small chunks, so several chunks and a partial last one are exercised.
CHUNK = 700


async def seed(settings: Settings, **options: Any) -> SeedReport:
    sizes: dict[str, Any] = {"users": USERS, "coupons": COUPONS, "usage": USAGE, "seed": 42}
    return await seed_database(settings, chunk_size=CHUNK, **{**sizes, **options})


async def fetch(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    db = Database(settings)
    try:
        async with db.read() as conn:
            return [tuple(row) for row in await conn.execute(sa.text(sql))]
    finally:
        await db.dispose()


async def count(settings: Settings, table: str) -> int:
    return int((await fetch(settings, f"SELECT count(*) FROM {table}"))[0][0])


async def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """What must not depend on the run: codes, owners, kinds, limits, users, usage."""
    return {
        "coupons": await fetch(
            settings,
            "SELECT id, code, type, status, discount_type, discount_value, max_discount_cents,"
            " min_order_total_cents, owner_user_id, usage_limit, per_user_limit, used_count"
            " FROM coupons ORDER BY id",
        ),
        "users": await fetch(settings, "SELECT id, email FROM users ORDER BY id"),
        "usage": await fetch(
            settings,
            "SELECT coupon_id, user_id, order_id, order_total_cents, discount_cents"
            " FROM coupon_usage ORDER BY order_id",
        ),
    }


async def test_sizes_and_distribution(seed_settings: Settings) -> None:
    report = await seed(seed_settings)
    assert (report.users, report.coupons, report.usage) == (USERS, COUPONS, USAGE)
    assert await count(seed_settings, "users") == USERS
    assert await count(seed_settings, "coupons") == COUPONS
    assert await count(seed_settings, "coupon_usage") == USAGE
    assert await count(seed_settings, "coupon_user_usage") == report.user_usage
    ids = [row[0] for row in await fetch(seed_settings, "SELECT id FROM users ORDER BY id")]
    assert ids == [f"user_{n:07d}" for n in range(1, USERS + 1)]

    # The states as the app derives them from the stored rows (timestamps round-trip).
    now = time.time()
    db = Database(seed_settings)
    try:
        async with db.read() as conn:
            rows = await coupon_repository.all_coupons(conn)
    finally:
        await db.dispose()
    states = [
        coupon_state(status=r["status"], starts_at=r["starts_at"], ends_at=r["ends_at"], now=now)
        for r in rows
    ]
    for state, share in (("active", 0.60), ("expired", 0.25), ("inactive", 0.15)):
        assert abs(states.count(state) / COUPONS - share) <= 0.02, state
        assert report.coupons_by_state[state] == states.count(state)
    user_specific = sum(r["type"] == "user_specific" for r in rows)
    assert abs(user_specific / COUPONS - 0.5) <= 0.02
    assert all(re.fullmatch(CODE_PATTERN, r["code"]) and r["code"].isupper() for r in rows)
    per_user_limits = [r["per_user_limit"] for r in rows]
    assert per_user_limits.count(1) > 0.6 * COUPONS and None in per_user_limits
    assert any(limit is not None and limit > 1 for limit in per_user_limits)
    usage_limits = {r["usage_limit"] for r in rows}
    assert None in usage_limits and len(usage_limits) > 2
    assert all((r["type"] == "user_specific") == (r["owner_user_id"] is not None) for r in rows)
    assert all(r["owner_user_id"] in set(ids) for r in rows if r["owner_user_id"])
    assert all(r["starts_at"] and r["ends_at"] for r in rows if r["type"] == "time_window")
    assert {r["discount_type"] for r in rows} == {"percent", "fixed"}
    assert any(r["max_discount_cents"] for r in rows) and any(
        r["min_order_total_cents"] for r in rows
    )

    created = users.c.created_at
    db = Database(seed_settings)
    try:
        async with db.read() as conn:
            signups = (
                await conn.execute(sa.select(sa.func.min(created), sa.func.max(created)))
            ).one()
    finally:
        await db.dispose()
    first, last = (to_epoch(moment) for moment in signups)
    assert first is not None and last is not None
    assert now - 367 * 86_400 < first < last < now

    assert report.user_specific_demo is not None and report.time_window_demo is not None
    by_code = {r["code"]: rule_from_row(r) for r in rows}
    for demo in (report.user_specific_demo, report.time_window_demo):
        rule = by_code[demo.code]
        assert check_static(rule, user_id=demo.user_id, order_total_cents=5_000, now=now) is None


async def test_limits_and_counters_are_consistent(seed_settings: Settings) -> None:
    await seed(seed_settings, users=300, coupons=120, usage=400)
    per_coupon = await fetch(
        seed_settings,
        "SELECT c.id, c.used_count, c.usage_limit, count(u.id) FROM coupons c"
        " LEFT JOIN coupon_usage u ON u.coupon_id = c.id GROUP BY c.id, c.used_count, c.usage_limit",
    )
    for _, used_count, usage_limit, rows in per_coupon:
        assert used_count == rows
        assert usage_limit is None or used_count <= usage_limit
    implied = await fetch(
        seed_settings,
        "SELECT coupon_id, user_id, count(*) FROM coupon_usage GROUP BY coupon_id, user_id",
    )
    stored = await fetch(seed_settings, "SELECT coupon_id, user_id, count FROM coupon_user_usage")
    assert sorted(implied) == sorted(stored)

    db = Database(seed_settings)
    try:
        async with db.read() as conn:
            rules = {r["id"]: rule_from_row(r) for r in await coupon_repository.all_coupons(conn)}
    finally:
        await db.dispose()
    for coupon_id, _user, used in stored:
        limit = rules[coupon_id].per_user_limit
        assert limit is None or used <= limit
    now = time.time()
    usage = await fetch(
        seed_settings,
        "SELECT coupon_id, user_id, order_total_cents, discount_cents FROM coupon_usage",
    )
    for coupon_id, user, total, discount in usage:
        rule = rules[coupon_id]
        # Only active coupons, only by their owner, above the minimum, with the right discount.
        assert check_static(rule, user_id=user, order_total_cents=total, now=now) is None
        assert discount == discount_for(rule, total)


async def test_same_seed_same_data_on_both_databases(sqlite_url: str, postgres_url: str) -> None:
    sqlite, postgres = make_settings(sqlite_url), make_settings(postgres_url)
    await seed(sqlite)
    first = await snapshot(sqlite)
    await seed(sqlite, reset=True)
    assert await snapshot(sqlite) == first
    await seed(postgres)
    assert await snapshot(postgres) == first
    await seed(sqlite, reset=True, seed=7)
    other = await snapshot(sqlite)
    assert [c[1] for c in other["coupons"]] != [c[1] for c in first["coupons"]]


async def test_refuses_a_non_empty_database_without_reset(seed_settings: Settings) -> None:
    await seed(seed_settings)
    before = await snapshot(seed_settings)
    with pytest.raises(DatabaseNotEmpty, match="--reset"):
        await seed(seed_settings, seed=7)
    assert await snapshot(seed_settings) == before


async def test_if_empty_seeds_once(seed_settings: Settings) -> None:
    assert not (await seed(seed_settings, if_empty=True)).skipped
    before = await snapshot(seed_settings)
    report = await seed(seed_settings, if_empty=True, seed=7)
    assert report.skipped and report.users == 0
    assert await snapshot(seed_settings) == before


async def test_reset_replaces_everything(seed_settings: Settings) -> None:
    await seed(seed_settings, users=500, coupons=50, usage=30)
    stamp = "2026-01-01 00:00:00" if seed_settings.is_sqlite else "2026-01-01T00:00:00Z"
    db = Database(seed_settings)
    try:
        await db.run_log_write(
            lambda conn: conn.execute(
                sa.text(
                    "INSERT INTO validation_logs (code, user_id, order_total_cents, valid, reason,"
                    " discount_cents, latency_us, created_at) VALUES ('X', 'u', 1, false, NULL,"
                    f" 0, 1, '{stamp}')"
                )
            )
        )
    finally:
        await db.dispose()
    report = await seed(seed_settings, reset=True)
    assert report.users == USERS
    assert await count(seed_settings, "validation_logs") == 0
    assert await count(seed_settings, "users") == USERS
    assert await count(seed_settings, "coupons") == COUPONS
    assert await count(seed_settings, "coupon_usage") == USAGE
    if not seed_settings.is_sqlite:
        # The id sequence continues after the given ids: the next admin-created coupon fits.
        nextval = await fetch(
            seed_settings, "SELECT nextval(pg_get_serial_sequence('coupons', 'id'))"
        )
        assert nextval[0][0] == COUPONS + 1


async def test_impossible_sizes_write_nothing(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    with pytest.raises(SeedError, match="active coupons"):
        await seed(settings, coupons=0, usage=5)
    with pytest.raises(SeedError, match="negative"):
        await seed(settings, users=-1)
    with pytest.raises(SeedError, match="contradict"):
        await seed(settings, reset=True, if_empty=True)
    assert await count(settings, "users") == 0


@pytest.mark.redis
async def test_scaled_mode_rebuilds_redis_counters(postgres_url: str, redis_url: str) -> None:
    settings = make_settings(postgres_url, redis_url)
    state = RedisState(redis_url)
    try:
        stale = "peakshop:{cpn:99999}:usage"
        await state.client.hset(stale, "__total__", 3)
        await seed(settings)
        assert await state.counters.is_loaded()
        assert not await state.client.exists(stale)
        totals = await fetch(settings, "SELECT id, used_count FROM coupons")
        for coupon_id, used_count in totals:
            assert (await state.counters.get(coupon_id, "nobody"))[0] == used_count
        for coupon_id, user, used in await fetch(
            settings, "SELECT coupon_id, user_id, count FROM coupon_user_usage"
        ):
            assert (await state.counters.get(coupon_id, user))[1] == used
    finally:
        await state.close()


def test_cli_in_a_subprocess(tmp_path: Path) -> None:
    # A database file that does not exist yet: the command migrates it first.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKSHOP_")}
    env["PEAKSHOP_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    command = [sys.executable, "-m", "peakshop", "seed", "--users", "2000", "--coupons", "200"]
    command += ["--usage", "150", "--seed", "42"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *extra], env=env, capture_output=True, text=True, timeout=120
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert "2,000" in first.stdout and "user-specific coupon:" in first.stdout
    assert "time-window coupon:" in first.stdout
    again = run()
    assert again.returncode == 2
    assert "--reset" in again.stderr
    skipped = run("--if-empty")
    assert skipped.returncode == 0 and "nothing seeded" in skipped.stdout
    reset = run("--reset")
    assert reset.returncode == 0, reset.stderr
