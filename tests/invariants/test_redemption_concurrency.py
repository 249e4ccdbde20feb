"""Invariant 2 under concurrency, over real HTTP against real server processes: redemptions
per (coupon, user) never exceed the per-user limit, total redemptions never exceed the global
limit, and a repeated (code, order_id) is one redemption.

Each backend runs as a real cluster: SQLite (one embedded process), PostgreSQL with
in-process hot state (one process), and scaled mode, PostgreSQL + Redis, with the requests
split between two processes. After each burst the database is read directly, and validation
is asked in every process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SERVICE
from tests.fixtures.concurrent import Call, Outcome, peak_in_flight, post_together
from tests.fixtures.factories import redeem_request, time_window_coupon
from tests.fixtures.ledger import read_ledger
from tests.invariants.conftest import (
    BACKEND_PARAMS,
    Cluster,
    assert_hot_counters_match,
    create_coupon,
    module_cluster,
    reasons_everywhere,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with module_cluster(request.param, request, tmp_path_factory) as started:
        yield started


def redeem_calls(cluster: Cluster, code: str, bodies: list[dict[str, Any]]) -> list[Call]:
    return [
        Call(cluster.url_for(i), f"/api/v1/coupons/{code}/redeem", body, SERVICE)
        for i, body in enumerate(bodies)
    ]


def assert_all_answered(outcomes: list[Outcome]) -> None:
    errors = [o.error for o in outcomes if o.status is None]
    assert not errors, f"{len(errors)} requests got no response, e.g. {errors[0]}"
    unexpected = [(o.status, o.body) for o in outcomes if o.status not in (201, 409)]
    assert not unexpected, f"unexpected answers: {unexpected[:3]}"


def assert_concurrent(outcomes: list[Outcome]) -> None:
    """The burst really overlapped: at some moment most requests were in flight together."""
    peak = peak_in_flight(outcomes)
    assert peak >= len(outcomes) // 2, f"only {peak} of {len(outcomes)} requests overlapped"


async def test_one_user_200_concurrent_redemptions_of_a_once_per_user_coupon(
    cluster: Cluster,
) -> None:
    coupon = await create_coupon(cluster.urls[0], time_window_coupon(per_user_limit=1))
    code, user = coupon["code"], "user_0000001"
    bodies = [redeem_request(user, f"order-{i}") for i in range(200)]

    outcomes = await post_together(redeem_calls(cluster, code, bodies))

    assert_all_answered(outcomes)
    assert_concurrent(outcomes)
    winners = [o for o in outcomes if o.status == 201]
    assert len(winners) == 1, f"{len(winners)} redemptions succeeded"
    assert Counter(o.code for o in outcomes if o.status == 409) == {"user_limit_reached": 199}

    ledger = await read_ledger(cluster.database_url, code)
    ledger.assert_consistent()
    assert ledger.used_count == 1
    assert ledger.usage_ids == [winners[0].body["id"]]
    assert ledger.user_counters == {user: 1}
    await assert_hot_counters_match(cluster, ledger)

    assert await reasons_everywhere(cluster, code, user) == ["user_limit_reached"] * len(
        cluster.servers
    )
    # Only this user is capped: anyone else may still use the coupon.
    assert await reasons_everywhere(cluster, code, "user_0000002") == [None] * len(cluster.servers)


async def test_500_users_against_a_usage_limit_of_50(cluster: Cluster) -> None:
    coupon = await create_coupon(
        cluster.urls[0], time_window_coupon(usage_limit=50, per_user_limit=1)
    )
    code = coupon["code"]
    bodies = [redeem_request(f"user_{i:07d}", f"order-{i}") for i in range(500)]

    outcomes = await post_together(redeem_calls(cluster, code, bodies))

    assert_all_answered(outcomes)
    assert_concurrent(outcomes)
    winners = [o for o in outcomes if o.status == 201]
    assert len(winners) == 50, f"{len(winners)} redemptions succeeded"
    assert Counter(o.code for o in outcomes if o.status == 409) == {"usage_limit_reached": 450}

    ledger = await read_ledger(cluster.database_url, code)
    ledger.assert_consistent()
    assert ledger.used_count == 50
    assert sorted(ledger.usage_ids) == sorted(o.body["id"] for o in winners)
    assert set(ledger.user_counters) == {o.body["user_id"] for o in winners}
    await assert_hot_counters_match(cluster, ledger)

    expected = ["usage_limit_reached"] * len(cluster.servers)
    assert await reasons_everywhere(cluster, code, "user_9999999") == expected
    assert await reasons_everywhere(cluster, code, winners[0].body["user_id"]) == expected


@pytest.mark.parametrize(
    ("limits", "reason_after"),
    [
        pytest.param({"per_user_limit": 1}, "user_limit_reached", id="per_user_limit_1"),
        pytest.param(
            {"usage_limit": 1, "per_user_limit": None}, "usage_limit_reached", id="usage_limit_1"
        ),
        pytest.param({"usage_limit": None, "per_user_limit": None}, None, id="no_limits"),
    ],
)
async def test_the_same_order_redeemed_50_times_at_once_is_one_redemption(
    cluster: Cluster, limits: dict[str, Any], reason_after: str | None
) -> None:
    """The repeats of (code, order_id) all get the first redemption, whichever limit the
    first one used up."""
    coupon = await create_coupon(cluster.urls[0], time_window_coupon(**limits))
    code, user = coupon["code"], "user_0000001"
    bodies = [redeem_request(user, "order-same")] * 50

    outcomes = await post_together(redeem_calls(cluster, code, bodies))

    errors = [o.error for o in outcomes if o.status is None]
    assert not errors, f"{len(errors)} requests got no response, e.g. {errors[0]}"
    assert_concurrent(outcomes)
    answers = Counter((o.status, o.code) for o in outcomes)
    assert answers == {(201, None): 50}, f"answers: {dict(answers)}"
    assert len({o.body["id"] for o in outcomes}) == 1
    assert len({o.body["used_at"] for o in outcomes}) == 1
    fresh = [o for o in outcomes if o.headers is not None and "idempotent-replay" not in o.headers]
    assert len(fresh) == 1, f"{len(fresh)} answers claim to have created the redemption"

    ledger = await read_ledger(cluster.database_url, code)
    ledger.assert_consistent()
    assert ledger.usage_ids == [outcomes[0].body["id"]]
    assert ledger.user_counters == {user: 1}
    await assert_hot_counters_match(cluster, ledger)
    assert await reasons_everywhere(cluster, code, user) == [reason_after] * len(cluster.servers)
