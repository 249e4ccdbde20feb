"""The coupons HTTP API on every backend (sqlite, postgres, scaled): administration, validation,
redemption, stats, validation logs, OpenAPI, auth, health and metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from peakshop.config import Settings
from tests.conftest import ADMIN, SERVICE
from tests.coupons.support import (
    VALIDATE,
    Client,
    count_rows,
    create_coupon,
    eventually,
    get_coupon,
    metric,
    patch_coupon,
    redeem,
    validate,
)
from tests.fixtures.factories import (
    iso,
    time_window_coupon,
    unique_order,
    unique_user,
    user_coupon,
)


def _now() -> datetime:
    return datetime.now(UTC)


# --- administration --------------------------------------------------------------------------


async def test_create_get_and_patch(client: Client) -> None:
    payload = time_window_coupon(
        code="summer-sale-1",
        discount_value="12.5",
        max_discount="20",
        min_order_total="30.5",
        usage_limit=100,
        per_user_limit=2,
    )
    created = await create_coupon(client, payload)
    assert created["code"] == "SUMMER-SALE-1"  # codes are case-insensitive, stored upper-case
    assert created["type"] == "time_window"
    assert created["status"] == "active"
    assert created["state"] == "active"
    assert created["discount_type"] == "percent"
    assert created["discount_value"] == "12.50"
    assert created["max_discount"] == "20.00"
    assert created["min_order_total"] == "30.50"
    assert created["usage_limit"] == 100
    assert created["per_user_limit"] == 2
    assert created["used_count"] == 0
    assert created["user_id"] is None

    assert await get_coupon(client, "summer-sale-1") == created

    patched = await patch_coupon(
        client, "SUMMER-SALE-1", {"status": "inactive", "discount_value": "7", "max_discount": None}
    )
    assert patched["status"] == "inactive"
    assert patched["state"] == "inactive"
    assert patched["discount_value"] == "7.00"
    assert patched["max_discount"] is None
    # Fields not in the patch are kept.
    assert patched["min_order_total"] == "30.50"
    assert patched["usage_limit"] == 100
    assert patched["starts_at"] == created["starts_at"]
    assert patched["updated_at"] >= created["updated_at"]
    assert patched["created_at"] == created["created_at"]
    assert await get_coupon(client, "summer-sale-1") == patched

    owned = await create_coupon(client, user_coupon("user_0000042", discount_value="5"))
    assert owned["type"] == "user_specific"
    assert owned["user_id"] == "user_0000042"
    assert owned["discount_type"] == "fixed"
    assert owned["discount_value"] == "5.00"
    assert owned["starts_at"] is None and owned["ends_at"] is None
    assert owned["state"] == "active"
    assert owned["id"] > created["id"]


async def test_duplicate_code_conflicts_and_unknown_code_is_404(client: Client) -> None:
    payload = time_window_coupon()
    await create_coupon(client, payload)
    for code in (payload["code"], payload["code"].lower()):
        response = await client.post(
            "/api/v1/coupons", json={**payload, "code": code}, headers=ADMIN
        )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "coupon_code_taken"
        assert response.json()["error"]["field"] == "code"

    for response in (
        await client.get("/api/v1/coupons/NO-SUCH-CODE", headers=ADMIN),
        await client.patch(
            "/api/v1/coupons/NO-SUCH-CODE", json={"status": "inactive"}, headers=ADMIN
        ),
        await client.get("/api/v1/coupons/NO-SUCH-CODE/stats", headers=ADMIN),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == {
            "code": "coupon_not_found",
            "message": "no coupon with code 'NO-SUCH-CODE'",
            "field": "code",
        }


async def _walk(client: Client, query: str, limit: int) -> tuple[list[str], int]:
    codes: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        url = f"/api/v1/coupons?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["items"]) <= limit
        codes.extend(item["code"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return codes, pages
        assert pages < 100, "pagination does not end"


async def test_cursor_pagination_walks_every_coupon_exactly_once(client: Client) -> None:
    created = [(await create_coupon(client, time_window_coupon()))["code"] for _ in range(7)]
    codes, pages = await _walk(client, "", limit=3)
    assert codes == list(reversed(created))  # newest first, each exactly once
    assert pages == 3
    # A page size that divides the count exactly does not end with an empty page.
    codes, pages = await _walk(client, "", limit=7)
    assert (len(codes), pages) == (7, 1)
    # The default limit takes all of them at once.
    page = (await client.get("/api/v1/coupons", headers=ADMIN)).json()
    assert [item["code"] for item in page["items"]] == list(reversed(created))
    assert page["next_cursor"] is None


async def test_list_filters_by_state_and_type(client: Client) -> None:
    now = _now()
    active_tw = (await create_coupon(client, time_window_coupon()))["code"]
    active_us = (await create_coupon(client, user_coupon("u1")))["code"]
    inactive_tw = (await create_coupon(client, time_window_coupon(status="inactive")))["code"]
    inactive_us = (await create_coupon(client, user_coupon("u1", status="inactive")))["code"]
    expired_tw = (
        await create_coupon(
            client,
            time_window_coupon(
                starts_at=iso(now - timedelta(days=10)), ends_at=iso(now - timedelta(days=1))
            ),
        )
    )["code"]
    expired_us = (
        await create_coupon(client, user_coupon("u2", ends_at=iso(now - timedelta(hours=1))))
    )["code"]
    # Scheduled (not started yet) is still an active coupon for the filters.
    scheduled_tw = (
        await create_coupon(
            client,
            time_window_coupon(
                starts_at=iso(now + timedelta(days=1)), ends_at=iso(now + timedelta(days=2))
            ),
        )
    )["code"]

    async def listed(query: str) -> set[str]:
        codes, _ = await _walk(client, query, limit=2)
        assert len(codes) == len(set(codes))
        return set(codes)

    assert await listed("&status=active") == {active_tw, active_us, scheduled_tw}
    assert await listed("&status=inactive") == {inactive_tw, inactive_us}
    assert await listed("&status=expired") == {expired_tw, expired_us}
    assert await listed("&type=user_specific") == {active_us, inactive_us, expired_us}
    assert await listed("&type=time_window") == {active_tw, inactive_tw, expired_tw, scheduled_tw}
    assert await listed("&status=expired&type=time_window") == {expired_tw}
    assert await listed("&status=active&type=user_specific") == {active_us}
    assert len(await listed("")) == 7

    states = {
        item["code"]: item["state"]
        for item in (await client.get("/api/v1/coupons", headers=ADMIN)).json()["items"]
    }
    assert states[scheduled_tw] == "scheduled"
    assert states[expired_us] == "expired"
    assert states[inactive_tw] == "inactive"
    assert states[active_tw] == "active"


# --- validation sees changes at once -----------------------------------------------------------


async def test_a_patch_is_seen_by_validation_at_once(client: Client) -> None:
    code = (await create_coupon(client, time_window_coupon(discount_value="10")))["code"]
    user = unique_user()
    assert (await validate(client, code, user, "80.00"))["discount"] == "8.00"

    await patch_coupon(client, code, {"status": "inactive"})
    assert (await validate(client, code, user, "80.00"))["reason"] == "inactive"

    await patch_coupon(client, code, {"status": "active", "discount_value": "50"})
    result = await validate(client, code, user, "80.00")
    assert (result["valid"], result["discount"], result["final_total"]) == (True, "40.00", "40.00")

    await patch_coupon(client, code, {"discount_type": "fixed", "discount_value": "100"})
    result = await validate(client, code, user, "80.00")
    assert (result["discount"], result["final_total"]) == ("80.00", "0.00")

    await patch_coupon(client, code, {"min_order_total": "80.01"})
    assert (await validate(client, code, user, "80.00"))["reason"] == "min_order_total"
    assert (await validate(client, code, user, "80.01"))["valid"] is True

    await patch_coupon(client, code, {"ends_at": iso(_now() - timedelta(seconds=1)),
                                      "starts_at": iso(_now() - timedelta(days=2))})  # fmt: skip
    assert (await validate(client, code, user, "90.00"))["reason"] == "expired"


async def test_validate_every_reason(client: Client) -> None:
    now = _now()
    owner, other = unique_user(), unique_user()
    coupons = {
        "inactive": time_window_coupon(status="inactive"),
        "expired": time_window_coupon(
            starts_at=iso(now - timedelta(days=2)), ends_at=iso(now - timedelta(seconds=1))
        ),
        "not_started": time_window_coupon(
            starts_at=iso(now + timedelta(hours=1)), ends_at=iso(now + timedelta(days=1))
        ),
        "not_owner": user_coupon(owner),
        "min_order_total": time_window_coupon(min_order_total="100.01"),
    }
    for reason, payload in coupons.items():
        code = (await create_coupon(client, payload))["code"]
        result = await validate(client, code.lower(), other, "100.00")
        assert result == {
            "valid": False,
            "code": code,
            "discount": "0.00",
            "final_total": "100.00",
            "reason": reason,
        }
    result = await validate(client, "NEVER-CREATED", other, "12.34")
    assert (result["reason"], result["code"], result["final_total"]) == (
        "not_found",
        "NEVER-CREATED",
        "12.34",
    )


# --- redemption ------------------------------------------------------------------------------


async def test_redeem_then_replay_then_conflict(client: Client, settings: Settings) -> None:
    code = (await create_coupon(client, time_window_coupon(discount_value="15", per_user_limit=1)))[
        "code"
    ]
    user, order = unique_user(), unique_order()
    first = await redeem(client, code.lower(), user, order, "20.05")
    assert first.status_code == 201, first.text
    assert "idempotent-replay" not in first.headers
    body = first.json()
    assert body["code"] == code
    assert body["user_id"] == user
    assert body["order_id"] == order
    assert (body["order_total"], body["discount"], body["final_total"]) == (
        "20.05",
        "3.01",  # 15 % of 20.05 = 3.0075 -> 3.01
        "17.04",
    )
    assert isinstance(body["id"], int)
    used_at = datetime.fromisoformat(body["used_at"].replace("Z", "+00:00"))
    assert abs((used_at - _now()).total_seconds()) < 60

    # The same (code, order_id) again, even with another total: the first result, flagged.
    again = await redeem(client, code, user, order, "999.00")
    assert again.status_code == 201
    assert again.headers["idempotent-replay"] == "true"
    assert again.json() == body

    # The same order for another user is a conflict, not a second use.
    stolen = await redeem(client, code, unique_user(), order)
    assert stolen.status_code == 409
    assert stolen.json()["error"]["code"] == "order_id_conflict"
    assert stolen.json()["error"]["field"] == "order_id"

    assert (await get_coupon(client, code))["used_count"] == 1
    assert await count_rows(settings, "coupon_usage") == 1

    # The per-user limit now rejects a new order, and validation agrees.
    again_new = await redeem(client, code, user, unique_order())
    assert again_new.status_code == 409
    assert again_new.json()["reason"] == "user_limit_reached"
    assert (await validate(client, code, user))["reason"] == "user_limit_reached"
    assert (await validate(client, code, unique_user()))["valid"] is True


REJECTIONS: dict[str, dict[str, Any]] = {
    "inactive": {"status": "inactive"},
    "expired": {"starts_at": -2 * 86_400, "ends_at": -1},
    "not_started": {"starts_at": 3_600, "ends_at": 86_400},
    "not_owner": {"owner": "someone_else"},
    "min_order_total": {"min_order_total": "100.01"},
    "usage_limit_reached": {"uses_by_others": 2},
    "user_limit_reached": {"uses_by_user": 1},
}


async def test_each_redeem_rejection_is_a_409_with_the_reason(
    client: Client, settings: Settings
) -> None:
    for reason, spec in REJECTIONS.items():
        spec = dict(spec)
        user = unique_user()
        payload = user_coupon(spec.pop("owner")) if "owner" in spec else time_window_coupon()
        for key in ("starts_at", "ends_at"):
            if key in spec:
                payload[key] = iso(_now() + timedelta(seconds=spec.pop(key)))
        uses_by_others, uses_by_user = spec.pop("uses_by_others", 0), spec.pop("uses_by_user", 0)
        payload.update(spec, usage_limit=2, per_user_limit=1)
        code = (await create_coupon(client, payload))["code"]
        for _ in range(uses_by_others):
            assert (await redeem(client, code, unique_user(), unique_order())).status_code == 201
        for _ in range(uses_by_user):
            assert (await redeem(client, code, user, unique_order())).status_code == 201
        used_before = (await get_coupon(client, code))["used_count"]
        assert used_before == uses_by_others + uses_by_user
        rows_before = await count_rows(settings, "coupon_usage")

        response = await redeem(client, code, user, unique_order(), "100.00")
        assert response.status_code == 409, (reason, response.text)
        assert response.json()["reason"] == reason
        assert response.json()["error"]["code"] == reason
        assert reason in response.json()["error"]["message"]

        # A rejection writes nothing, and validation gives the same reason.
        assert (await get_coupon(client, code))["used_count"] == used_before, reason
        assert await count_rows(settings, "coupon_usage") == rows_before, reason
        assert (await validate(client, code, user, "100.00"))["reason"] == reason

    # An unknown coupon in the path is a 404 (the resource does not exist), not a 409.
    response = await redeem(client, "NO-SUCH-CODE", unique_user(), unique_order())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "coupon_not_found"
    assert response.json()["error"]["field"] == "code"


async def test_validation_follows_redemptions(client: Client) -> None:
    """The hot usage counters (in process or in Redis) follow each committed redemption."""
    global_limit = (
        await create_coupon(client, time_window_coupon(usage_limit=2, per_user_limit=5))
    )["code"]
    first, second, third = unique_user(), unique_user(), unique_user()
    assert (await redeem(client, global_limit, first, unique_order())).status_code == 201
    assert (await validate(client, global_limit, third))["valid"] is True
    assert (await redeem(client, global_limit, second, unique_order())).status_code == 201
    assert (await validate(client, global_limit, third))["reason"] == "usage_limit_reached"
    assert (await validate(client, global_limit, first))["reason"] == "usage_limit_reached"
    assert (await get_coupon(client, global_limit))["used_count"] == 2

    user_limit = (await create_coupon(client, time_window_coupon(per_user_limit=2)))["code"]
    for _ in range(2):
        assert (await validate(client, user_limit, first))["valid"] is True
        assert (await redeem(client, user_limit, first, unique_order())).status_code == 201
    assert (await validate(client, user_limit, first))["reason"] == "user_limit_reached"
    assert (await validate(client, user_limit, second))["valid"] is True

    unlimited = (
        await create_coupon(client, time_window_coupon(per_user_limit=None, usage_limit=None))
    )["code"]
    for _ in range(3):
        assert (await redeem(client, unlimited, first, unique_order())).status_code == 201
    assert (await validate(client, unlimited, first))["valid"] is True
    assert (await get_coupon(client, unlimited))["used_count"] == 3


# --- stats and validation logs ---------------------------------------------------------------


async def test_stats_and_validation_logs(logged_client: Client, settings: Settings) -> None:
    client = logged_client
    owner = unique_user()
    code = (
        await create_coupon(
            client, user_coupon(owner, min_order_total="10.00", discount_value="2.50")
        )
    )["code"]
    other_code = (await create_coupon(client, time_window_coupon()))["code"]
    stranger = unique_user()
    traffic = [
        (code, owner, "20.00"),
        (code, owner, "30.00"),
        (code, owner, "40.00"),
        (code, owner, "9.99"),  # min_order_total
        (code, owner, "5.00"),  # min_order_total
        (code, stranger, "50.00"),  # not_owner
        (other_code, owner, "10.00"),
        (other_code, stranger, "10.00"),
    ]
    for c, user, total in traffic:
        await validate(client, c, user, total)
    assert (await redeem(client, code, owner, unique_order(), "20.00")).status_code == 201

    async def flushed() -> bool:
        return await count_rows(settings, "validation_logs") == len(traffic)

    await eventually(flushed)

    stats_response = await client.get(f"/api/v1/coupons/{code.lower()}/stats", headers=ADMIN)
    assert stats_response.status_code == 200, stats_response.text
    stats = stats_response.json()
    assert stats["code"] == code
    assert stats["used_count"] == 1
    expected_reasons = {
        "not_found": 0,
        "inactive": 0,
        "expired": 0,
        "not_started": 0,
        "not_owner": 1,
        "min_order_total": 2,
        "usage_limit_reached": 0,
        "user_limit_reached": 0,
    }
    for window in ("all_time", "last_24h"):
        assert stats[window] == {
            "attempts": 6,
            "valid": 3,
            "invalid": 3,
            "by_reason": expected_reasons,
        }
    latency = stats["latency_last_24h"]
    assert isinstance(latency["p50_us"], int) and isinstance(latency["p95_us"], int)
    assert 0 <= latency["p50_us"] <= latency["p95_us"]

    # Newest first, filtered by code and by user.
    logs = (await client.get(f"/api/v1/validation-logs?code={code}", headers=ADMIN)).json()
    items = logs["items"]
    assert logs["next_cursor"] is None
    assert [item["order_total"] for item in items] == [
        "50.00", "5.00", "9.99", "40.00", "30.00", "20.00"
    ]  # fmt: skip
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    newest = items[0]
    assert (newest["code"], newest["user_id"], newest["valid"], newest["reason"]) == (
        code,
        stranger,
        False,
        "not_owner",
    )
    assert newest["discount"] == "0.00"
    assert items[-1]["valid"] is True and items[-1]["discount"] == "2.50"
    assert items[-1]["reason"] is None
    assert all(item["latency_us"] >= 0 for item in items)
    created = [datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")) for item in items]
    assert all(abs((moment - _now()).total_seconds()) < 60 for moment in created)

    by_user = (
        await client.get(f"/api/v1/validation-logs?user_id={stranger}", headers=ADMIN)
    ).json()["items"]
    assert [(item["code"], item["reason"]) for item in by_user] == [
        (other_code, None),
        (code, "not_owner"),
    ]
    both = (
        await client.get(
            f"/api/v1/validation-logs?user_id={stranger}&code={other_code.lower()}", headers=ADMIN
        )
    ).json()["items"]
    assert [item["code"] for item in both] == [other_code]

    # Paginated: three pages of three, each record once.
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        url = "/api/v1/validation-logs?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=ADMIN)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(traffic) == len(set(seen))
    assert seen == sorted(seen, reverse=True)

    # A coupon nobody tried has empty stats; a code that does not exist but was tried (someone
    # guessing codes) has stats; one that neither exists nor was tried is a 404.
    untried = (await client.get(f"/api/v1/coupons/{other_code}/stats", headers=ADMIN)).json()
    assert untried["all_time"]["attempts"] == 2
    fresh = (await create_coupon(client, time_window_coupon()))["code"]
    fresh_stats = (await client.get(f"/api/v1/coupons/{fresh}/stats", headers=ADMIN)).json()
    assert fresh_stats["all_time"]["attempts"] == fresh_stats["last_24h"]["attempts"] == 0
    assert fresh_stats["latency_last_24h"] == {"p50_us": None, "p95_us": None}
    await validate(client, "GUESSED-CODE", stranger)
    await eventually(lambda: count_rows(settings, "validation_logs", code="GUESSED-CODE"))
    guessed = (await client.get("/api/v1/coupons/GUESSED-CODE/stats", headers=ADMIN)).json()
    assert guessed["used_count"] == 0
    assert guessed["all_time"]["attempts"] == guessed["all_time"]["by_reason"]["not_found"] == 1


# --- OpenAPI, auth, health, metrics ---------------------------------------------------------------


async def test_openapi_documents_every_endpoint(embedded_client: Client) -> None:
    client = embedded_client
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    validate_op = paths["/api/v1/coupons/validate"]["post"]
    body_schema = validate_op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body_schema["required"]) == {"code", "user_id", "order_total"}
    assert set(validate_op["responses"]) >= {"200", "400", "401"}
    reasons = validate_op["responses"]["200"]["content"]["application/json"]["schema"][
        "properties"
    ]["reason"]
    assert "usage_limit_reached" in str(reasons)
    assert "post" in paths["/api/v1/coupons/{code}/redeem"]
    assert {"get", "post"} <= set(paths["/api/v1/coupons"])
    assert {"get", "patch"} <= set(paths["/api/v1/coupons/{code}"])
    assert "get" in paths["/api/v1/coupons/{code}/stats"]
    assert "get" in paths["/api/v1/validation-logs"]
    assert "get" in paths["/health"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_auth(embedded_client: Client) -> None:
    client = embedded_client
    code = (await create_coupon(client, time_window_coupon(per_user_limit=None)))["code"]
    validate_body = {"code": code, "user_id": "u1", "order_total": "10.00"}
    calls: list[tuple[str, str, dict[str, Any] | None, bool]] = [
        ("POST", VALIDATE, validate_body, False),
        ("POST", f"/api/v1/coupons/{code}/redeem", None, False),
        ("GET", "/api/v1/coupons", None, True),
        ("POST", "/api/v1/coupons", None, True),
        ("GET", f"/api/v1/coupons/{code}", None, True),
        ("PATCH", f"/api/v1/coupons/{code}", {"status": "active"}, True),
        ("GET", f"/api/v1/coupons/{code}/stats", None, True),
        ("GET", "/api/v1/validation-logs", None, True),
    ]

    async def call(
        method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> Any:
        if body is None and method == "POST":
            body = (
                {"user_id": "u1", "order_id": unique_order(), "order_total": "10.00"}
                if url.endswith("/redeem")
                else time_window_coupon()
            )
        return await client.request(method, url, json=body, headers=headers)

    for method, url, body, admin_only in calls:
        label = f"{method} {url}"
        for headers, reason in (
            ({}, "missing"),
            ({"Authorization": "Bearer wrong-token"}, "invalid"),
            ({"Authorization": ADMIN["Authorization"].replace("Bearer", "Basic")}, "missing"),
            ({"Authorization": ADMIN["Authorization"] + "x"}, "invalid"),
            ({"Authorization": ADMIN["Authorization"].lower()}, "missing"),
        ):
            response = await call(method, url, body, headers)
            assert response.status_code == 401, (label, headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.json()["error"]["field"] == "authorization"
            assert reason in response.json()["error"]["message"]
        service = await call(method, url, body, SERVICE)
        if admin_only:
            assert service.status_code == 403, (label, service.text)
            assert service.json()["error"]["code"] == "forbidden"
        else:
            assert service.status_code in (200, 201), (label, service.text)
        admin = await call(method, url, body, ADMIN)
        assert admin.status_code in (200, 201), (label, admin.text)


async def test_health_and_ready(client: Client, backend: str) -> None:
    await create_coupon(client, time_window_coupon())
    await create_coupon(client, time_window_coupon())
    await validate(client, "NOT-THERE", unique_user())
    response = await client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["mode"] == ("scaled" if backend == "scaled" else "embedded")
    assert health["database"] is True
    assert health["hot_state"] is True
    assert 0 <= health["uptime_seconds"] < 600
    assert health["coupons_indexed"] == 2
    log = health["validation_log"]
    assert log["emitted"] == 1
    assert health["validation_log_queue_size"] == log["pending"]
    assert health["validation_log_dropped"] == log["dropped"] == 0
    assert health["validation_log_dead_lettered"] == log["dead_lettered"] == 0
    assert log["balanced"] is True
    assert log["emitted"] == log["written"] + log["dead_lettered"] + log["dropped"] + log["pending"]
    assert (await client.get("/ready")).json() == {
        "ready": True,
        "database": True,
        "hot_state": True,
    }


async def test_metrics_count_validation_outcomes(client: Client) -> None:
    owner = unique_user()
    code = (await create_coupon(client, user_coupon(owner, min_order_total="10")))["code"]
    inactive = (await create_coupon(client, time_window_coupon(status="inactive")))["code"]

    def outcomes(text: str) -> dict[str, float]:
        names = ["valid", "not_found", "inactive", "not_owner", "min_order_total", "expired"]
        return {
            name: metric(text, "peakshop_coupon_validations_total", reason=name) for name in names
        }

    def redemptions(text: str) -> dict[str, float]:
        names = ["created", "replayed", "user_limit_reached"]
        return {
            name: metric(text, "peakshop_coupon_redemptions_total", outcome=name) for name in names
        }

    before = (await client.get("/metrics")).text
    for _ in range(3):
        await validate(client, code, owner, "10.00")
    await validate(client, code, owner, "9.99")
    await validate(client, code, unique_user(), "10.00")
    await validate(client, inactive, owner, "10.00")
    await validate(client, "UNKNOWN-1", owner, "10.00")
    await validate(client, "UNKNOWN-2", owner, "10.00")
    # Rejected requests are not validation outcomes.
    bad = await client.post(VALIDATE, json={"code": code, "user_id": owner}, headers=SERVICE)
    assert bad.status_code == 400
    order = unique_order()
    assert (await redeem(client, code, owner, order, "10.00")).status_code == 201
    assert (await redeem(client, code, owner, order, "10.00")).status_code == 201
    assert (await redeem(client, code, owner, unique_order(), "10.00")).status_code == 409
    response = await client.get("/metrics")
    assert response.status_code == 200
    after = response.text

    deltas = {k: outcomes(after)[k] - v for k, v in outcomes(before).items()}
    assert deltas == {
        "valid": 3,
        "not_found": 2,
        "inactive": 1,
        "not_owner": 1,
        "min_order_total": 1,
        "expired": 0,
    }
    redeemed = {k: redemptions(after)[k] - v for k, v in redemptions(before).items()}
    assert redeemed == {"created": 1, "replayed": 1, "user_limit_reached": 1}
    # HTTP metrics per route template and status.
    redeem_route = "/api/v1/coupons/{code}/redeem"

    def http(text: str, route: str, status: str) -> float:
        return metric(text, "peakshop_http_requests_total", route=route, status=status)

    assert http(after, redeem_route, "201") - http(before, redeem_route, "201") == 2
    assert http(after, redeem_route, "409") - http(before, redeem_route, "409") == 1
    assert http(after, VALIDATE, "200") - http(before, VALIDATE, "200") == 8
    assert "peakshop_validation_log_queue_size" in after
