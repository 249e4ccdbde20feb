"""Invariants 2, 3 and 5 under faults: a server process crashes in the middle of a burst of
redemptions; a server stops gracefully with validation-log records still buffered."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, SERVICE
from tests.fixtures.concurrent import Call, Outcome, post_together
from tests.fixtures.factories import redeem_request, time_window_coupon, validate_request
from tests.fixtures.faults import alive_workers, crash
from tests.fixtures.ledger import count_validation_logs, read_ledger, redis_usage
from tests.invariants.conftest import cluster_settings, create_coupon, running_cluster

pytestmark = pytest.mark.slow

USAGE_LIMIT = 150
USERS = 200  # each sends two orders, one to each process: 400 requests, 200 possible winners
CRASH_AFTER = 30  # successful redemptions seen before process A is killed


def redeem_call(base_url: str, code: str, user_id: str, order_id: str) -> Call:
    return Call(
        base_url, f"/api/v1/coupons/{code}/redeem", redeem_request(user_id, order_id), SERVICE
    )


def acknowledged(outcomes: list[Outcome]) -> dict[str, int]:
    """order_id -> redemption id of every redemption the API acknowledged (201)."""
    return {o.body["order_id"]: o.body["id"] for o in outcomes if o.status == 201}


def assert_answered(outcomes: list[Outcome], where: str) -> None:
    unanswered = [o.error for o in outcomes if o.status is None]
    assert not unanswered, f"{len(unanswered)} requests to {where} got no answer: {unanswered[0]}"
    unexpected = Counter((o.status, o.code) for o in outcomes if o.status not in (201, 409))
    assert not unexpected, f"unexpected answers from {where}: {dict(unexpected)}"


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_process_killed_mid_burst_never_lets_redemptions_past_a_limit(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = cluster_settings(postgres_url, redis_url, tmp_path)
    with running_cluster("scaled", settings, count=2, log_dir=tmp_path) as cluster:
        a, b = cluster.servers
        coupon = await create_coupon(
            b.url, time_window_coupon(usage_limit=USAGE_LIMIT, per_user_limit=1)
        )
        code = coupon["code"]
        calls = []
        for i in range(USERS):
            user = f"user_{i:07d}"
            calls += [
                redeem_call(a.url, code, user, f"order-{i}-a"),
                redeem_call(b.url, code, user, f"order-{i}-b"),
            ]

        wins = 0
        crashed: asyncio.Task[None] | None = None

        async def crash_mid_run(outcome: Outcome) -> None:
            nonlocal wins, crashed
            wins += outcome.status == 201
            if wins >= CRASH_AFTER and crashed is None:
                crashed = asyncio.create_task(asyncio.to_thread(crash, a))

        burst = await post_together(calls, on_outcome=crash_mid_run)
        assert crashed is not None, f"the burst ended with only {wins} wins: nothing was killed"
        await crashed
        assert not alive_workers(a), "a worker of the killed server survived"

        on_a = [o for o in burst if o.call.base_url == a.url]
        on_b = [o for o in burst if o.call.base_url == b.url]
        lost = [o for o in on_a if o.status is None]
        assert lost, "the crash came after process A had answered everything: not mid-run"
        assert len(lost) < len(on_a), "process A answered nothing before the crash"
        assert_answered(on_b, "the surviving process")

        ledger = await read_ledger(cluster.database_url, code)
        ledger.assert_consistent()
        # Invariant 3: everything acknowledged before the crash is in the database.
        acked = acknowledged(burst)
        missing = {order for order in acked if order not in ledger.by_order}
        assert not missing, f"acknowledged redemptions missing from the database: {missing}"

        # The storefront retries what got no answer, on the surviving process: a redemption
        # that A committed before dying comes back as a replay, anything else is decided anew.
        retried = await post_together(
            [
                redeem_call(b.url, code, o.call.json["user_id"], o.call.json["order_id"])
                for o in lost
            ]
        )
        assert_answered(retried, "the surviving process (retries)")
        for outcome in retried:
            order = outcome.call.json["order_id"]
            if order in ledger.by_order:  # committed by A before it died
                assert outcome.status == 201, (
                    f"{order}: committed, yet the retry got {outcome.body}"
                )
                assert outcome.body["id"] == ledger.by_order[order]
                assert outcome.headers is not None
                assert outcome.headers.get("idempotent-replay") == "true"
        after_retry = await read_ledger(cluster.database_url, code)
        after_retry.assert_consistent()

        # Use up what is left through the survivor: exactly the limit, never more.
        left = USAGE_LIMIT - after_retry.used_count
        top_up = await post_together(
            [
                redeem_call(b.url, code, f"user_new_{i:04d}", f"order-new-{i}")
                for i in range(left + 20)
            ]
        )
        assert_answered(top_up, "the surviving process (top-up)")
        assert Counter((o.status, o.code) for o in top_up) == {
            **({(201, None): left} if left else {}),
            (409, "usage_limit_reached"): 20,
        }

        final = await read_ledger(cluster.database_url, code)
        final.assert_consistent()
        assert final.used_count == USAGE_LIMIT
        # Every use in the database was acknowledged to its caller, first time or on retry.
        assert final.by_order == acknowledged(burst) | acknowledged(retried) | acknowledged(top_up)

        # The hot counters that validation reads are updated by the process that did the work,
        # after its commit: a process killed in between leaves them behind, never ahead.
        total, per_user = await redis_usage(redis_url, final.coupon_id)
        assert total <= final.used_count, f"Redis total {total} > {final.used_count} uses"
        ahead = {u: n for u, n in per_user.items() if n > final.user_counters.get(u, 0)}
        assert not ahead, f"Redis counts uses the database does not have: {ahead}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("scaled", id="scaled", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend_urls(request: pytest.FixtureRequest) -> tuple[str, str, str | None]:
    """(backend, database URL, Redis URL) of a fresh database."""
    if request.param == "sqlite":
        return request.param, request.getfixturevalue("sqlite_url"), None
    return (
        request.param,
        request.getfixturevalue("postgres_url"),
        request.getfixturevalue("redis_url"),
    )


async def test_graceful_shutdown_flushes_every_validation_log_record(
    backend_urls: tuple[str, str, str | None], tmp_path: Path
) -> None:
    backend, database_url, redis_url = backend_urls
    # Neither the size nor the time trigger can fire during the test: only shutdown flushes.
    settings = cluster_settings(
        database_url, redis_url, tmp_path, validation_log_flush_interval=60.0
    )
    extra = {"PEAKSHOP_VALIDATION_LOG_BATCH_SIZE": "100000"}
    with running_cluster(backend, settings, count=1, log_dir=tmp_path, extra_env=extra) as cluster:
        server = cluster.servers[0]
        coupon = await create_coupon(server.url, time_window_coupon(min_order_total="50.00"))
        bodies = [
            validate_request(coupon["code"], f"user_{i:07d}", "20.00" if i % 3 else "80.00")
            for i in range(250)
        ] + [validate_request("NO-SUCH-CODE", f"user_{i:07d}") for i in range(50)]
        outcomes = await post_together(
            [Call(server.url, "/api/v1/coupons/validate", body, SERVICE) for body in bodies]
        )
        assert Counter(o.status for o in outcomes) == {200: len(bodies)}
        reasons = Counter(o.body["reason"] for o in outcomes)
        assert reasons == {None: 84, "min_order_total": 166, "not_found": 50}

        async with httpx.AsyncClient(base_url=server.url, headers=ADMIN) as client:
            health = (await client.get("/health")).json()
        assert health["validation_log_queue_size"] == len(bodies)
        assert await count_validation_logs(cluster.database_url) == 0, "flushed before shutdown"

        assert server.stop() == 0, server.log()

    assert await count_validation_logs(database_url) == len(bodies), server.log()
    dead_letters = Path(settings.validation_log_dead_letter_path)
    assert not await asyncio.to_thread(dead_letters.exists), "records were dead-lettered"
