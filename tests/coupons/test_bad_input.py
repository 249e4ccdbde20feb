"""Bad input gets a clear 4xx naming the field, and nothing is written: no coupon, no usage,
no validation-log row, no change to the coupon."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from peakshop.config import Settings
from peakshop.kit.pagination import encode_cursor
from tests.conftest import ADMIN, SERVICE
from tests.coupons.support import (
    VALIDATE,
    Client,
    count_rows,
    create_coupon,
    eventually,
    get_coupon,
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

BIG = 17 * 1024  # over the validate endpoint's 16 KiB limit
# A case: (label, body as JSON-able value or raw bytes, expected status, expected field).
Case = tuple[str, Any, int, str | None]


def assert_error(response: httpx.Response, status: int, field: str | None, label: str) -> None:
    assert response.status_code == status, (label, response.status_code, response.text)
    body = response.json()
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, (label, body)
    assert isinstance(error["message"], str) and error["message"], (label, body)
    assert error["field"] == field, (label, body)
    expected_code = {400: "invalid_request", 413: "payload_too_large"}.get(status)
    if expected_code:
        assert error["code"] == expected_code, (label, body)


async def send(client: Client, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.request(
        method, url, content=content, headers={**headers, "content-type": "application/json"}
    )


def amount_cases(base: dict[str, Any], field: str) -> list[Case]:
    bad_amounts: list[tuple[str, Any]] = [
        ("negative", "-1.00"),
        ("negative number", -0.01),
        ("three decimals", "10.001"),
        ("three decimals as a number", 10.001),
        ("NaN", "NaN"),
        ("infinity", "Infinity"),
        ("boolean", True),
        ("absurd", "1000000000.01"),
        ("astronomical exponent", "1e999999"),
        ("astronomical number", 1e308),
        ("empty", ""),
        ("words", "ten euros"),
        ("list", [1]),
        ("object", {"amount": 1}),
        ("null", None),
    ]
    cases: list[Case] = [
        (f"{field} {label}", {**base, field: value}, 400, field) for label, value in bad_amounts
    ]
    cases.append(
        (
            f"{field} NaN literal",
            json.dumps({**base, field: 1}).replace("1}", "NaN}").encode(),
            400,
            None,
        )
    )
    missing = {k: v for k, v in base.items() if k != field}
    cases.append((f"{field} missing", missing, 400, field))
    return cases


def common_body_cases(base: dict[str, Any]) -> list[Case]:
    return [
        ("unknown field", {**base, "coupon": "X"}, 400, "coupon"),
        ("malformed JSON", b'{"user_id": "u1", ', 400, None),
        ("trailing garbage", json.dumps(base).encode() + b"}", 400, None),
        ("empty body", b"", 400, None),
        ("not UTF-8", b'{"user_id": "\xff\xfe"}', 400, None),
    ]


def non_object_cases(field: str | None) -> list[Case]:
    return [
        (f"non-object {raw!r}", raw, 400, field)
        for raw in (b"[]", b'"text"', b"null", b"42", b"true")
    ]


# --- validate ---------------------------------------------------------------------------------


async def test_validate_rejects_bad_bodies_and_logs_nothing(
    logged_client: Client, settings: Settings
) -> None:
    client = logged_client
    code = (await create_coupon(client, time_window_coupon()))["code"]
    base = {"code": code, "user_id": "user_0000001", "order_total": "20.00"}
    cases: list[Case] = [
        *amount_cases(base, "order_total"),
        *common_body_cases(base),
        *non_object_cases(None),
        ("code missing", {"user_id": "u1", "order_total": "1"}, 400, "code"),
        ("code number", {**base, "code": 12345}, 400, "code"),
        ("code null", {**base, "code": None}, 400, "code"),
        ("code empty", {**base, "code": ""}, 400, "code"),
        ("code too short", {**base, "code": "AB"}, 400, "code"),
        ("code too long", {**base, "code": "A" * 33}, 400, "code"),
        ("code huge", {**base, "code": "A" * 10_000}, 400, "code"),
        ("code with a space", {**base, "code": "SUMMER SALE"}, 400, "code"),
        ("code with a quote", {**base, "code": "ABC'--"}, 400, "code"),
        ("code non-ASCII", {**base, "code": "ÉTÉ-2026"}, 400, "code"),
        ("code leading dash", {**base, "code": "-ABC"}, 400, "code"),
        ("code newline", {**base, "code": "ABC\n"}, 400, "code"),
        ("user_id missing", {"code": code, "order_total": "1"}, 400, "user_id"),
        ("user_id number", {**base, "user_id": 42}, 400, "user_id"),
        ("user_id empty", {**base, "user_id": ""}, 400, "user_id"),
        ("user_id too long", {**base, "user_id": "u" * 65}, 400, "user_id"),
        ("user_id with a space", {**base, "user_id": "user 1"}, 400, "user_id"),
        ("user_id newline", {**base, "user_id": "user_1\n"}, 400, "user_id"),
        ("oversized body", {**base, "padding": "x" * BIG}, 413, None),
    ]
    for label, body, status, field in cases:
        response = await send(client, "POST", VALIDATE, body, SERVICE)
        assert_error(response, status, field, label)
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = await send(client, "POST", VALIDATE, base, headers)
        assert_error(response, 401, "authorization", "bad token")
    wrong_method = await client.get(VALIDATE, headers=SERVICE)
    assert wrong_method.status_code == 405

    # One good request as a marker: once its row is written, the log has flushed, and it
    # holds that one row only.
    assert (await validate(client, code, "marker_user", "20.00"))["valid"] is True
    await eventually(lambda: count_rows(settings, "validation_logs"))
    assert await count_rows(settings, "validation_logs") == 1
    assert await count_rows(settings, "validation_logs", user_id="marker_user") == 1
    health = (await client.get("/health")).json()
    assert health["validation_log"]["emitted"] == 1


async def test_validate_accepts_the_amount_forms_it_documents(client: Client) -> None:
    code = (await create_coupon(client, time_window_coupon(discount_value="10")))["code"]
    for total, discount in (
        ("20", "2.00"),
        ("20.5", "2.05"),
        ("20.50", "2.05"),
        (20.5, "2.05"),
        (20, "2.00"),
        ("0", "0.00"),
        ("0.00", "0.00"),
        ("1000000000.00", "100000000.00"),
    ):
        assert (await validate(client, code, "u1", total))["discount"] == discount, total


# --- redeem -----------------------------------------------------------------------------------


async def test_redeem_rejects_bad_input_and_writes_nothing(
    client: Client, settings: Settings
) -> None:
    code = (await create_coupon(client, time_window_coupon(per_user_limit=1)))["code"]
    user = unique_user()
    base = {"user_id": user, "order_id": unique_order(), "order_total": "20.00"}
    url = f"/api/v1/coupons/{code}/redeem"
    cases: list[Case] = [
        *amount_cases(base, "order_total"),
        *common_body_cases(base),
        *non_object_cases(None),
        ("user_id missing", {"order_id": "o-1", "order_total": "1"}, 400, "user_id"),
        ("user_id too long", {**base, "user_id": "u" * 65}, 400, "user_id"),
        ("user_id number", {**base, "user_id": 7}, 400, "user_id"),
        ("order_id missing", {"user_id": user, "order_total": "1"}, 400, "order_id"),
        ("order_id empty", {**base, "order_id": ""}, 400, "order_id"),
        ("order_id too long", {**base, "order_id": "o" * 65}, 400, "order_id"),
        ("order_id with a slash", {**base, "order_id": "a/b"}, 400, "order_id"),
        ("order_id list", {**base, "order_id": ["o-1"]}, 400, "order_id"),
        ("order_id newline", {**base, "order_id": "o-1\n"}, 400, "order_id"),
    ]
    for label, body, status, field in cases:
        response = await send(client, "POST", url, body, SERVICE)
        assert_error(response, status, field, label)
    for bad_code in (
        "AB",
        "A" * 33,
        "A" * 2_000,
        "SUMMER%20SALE",
        "ABC%27--",
        "%C3%89T%C3%89-26",
        "ABC%0A",
    ):
        response = await send(client, "POST", f"/api/v1/coupons/{bad_code}/redeem", base, SERVICE)
        assert_error(response, 400, "code", f"path code {bad_code}")
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = await send(client, "POST", url, base, headers)
        assert_error(response, 401, "authorization", "bad token")
    oversized = await send(
        client, "POST", url, {**base, "padding": "x" * (11 * 1024 * 1024)}, SERVICE
    )
    assert oversized.status_code == 413

    assert await count_rows(settings, "coupon_usage") == 0
    assert await count_rows(settings, "coupon_user_usage") == 0
    assert (await get_coupon(client, code))["used_count"] == 0
    # The user's single use was not consumed by any of the rejected requests.
    good = await redeem(client, code, user, base["order_id"], "20.00")
    assert good.status_code == 201, good.text
    assert (await get_coupon(client, code))["used_count"] == 1


# --- create -----------------------------------------------------------------------------------


async def test_create_rejects_invalid_coupons_and_writes_nothing(
    client: Client, settings: Settings
) -> None:
    existing = await create_coupon(client, time_window_coupon())
    now = datetime.now(UTC)
    tw = time_window_coupon()
    us = user_coupon("owner_1")
    fixed = time_window_coupon(discount_type="fixed", discount_value="5.00")
    no_window = {k: v for k, v in tw.items() if k not in ("starts_at", "ends_at")}
    cases: list[Case] = [
        ("percent above 100", {**tw, "discount_value": "100.01"}, 400, "discount_value"),
        ("percent 1000", {**tw, "discount_value": 1000}, 400, "discount_value"),
        ("percent zero", {**tw, "discount_value": "0"}, 400, "discount_value"),
        ("percent negative", {**tw, "discount_value": "-10"}, 400, "discount_value"),
        ("percent three decimals", {**tw, "discount_value": "12.345"}, 400, "discount_value"),
        ("percent NaN", {**tw, "discount_value": "NaN"}, 400, "discount_value"),
        ("percent sNaN", {**tw, "discount_value": "sNaN"}, 400, "discount_value"),
        ("percent infinite", {**tw, "discount_value": "Infinity"}, 400, "discount_value"),
        ("percent boolean", {**tw, "discount_value": True}, 400, "discount_value"),
        ("fixed zero", {**fixed, "discount_value": "0.00"}, 400, "discount_value"),
        ("fixed NaN", {**fixed, "discount_value": "NaN"}, 400, "discount_value"),
        ("fixed absurd", {**fixed, "discount_value": "1e999999"}, 400, "discount_value"),
        ("fixed three decimals", {**fixed, "discount_value": "1.001"}, 400, "discount_value"),
        ("max_discount negative", {**tw, "max_discount": "-1"}, 400, "max_discount"),
        ("max_discount NaN", {**tw, "max_discount": "NaN"}, 400, "max_discount"),
        ("min_order_total negative", {**tw, "min_order_total": "-0.01"}, 400, "min_order_total"),
        ("min_order_total absurd", {**tw, "min_order_total": "1e999999"}, 400, "min_order_total"),
        (
            "ends_at before starts_at",
            {**tw, "starts_at": iso(now + timedelta(days=2)), "ends_at": iso(now)},
            400,
            "ends_at",
        ),
        ("ends_at equal to starts_at", {**tw, "ends_at": tw["starts_at"]}, 400, "ends_at"),
        ("time_window without window", no_window, 400, "starts_at"),
        ("time_window without starts_at", {**tw, "starts_at": None}, 400, "starts_at"),
        ("time_window without ends_at", {**tw, "ends_at": None}, 400, "ends_at"),
        ("time_window with an owner", {**tw, "user_id": "owner_1"}, 400, "user_id"),
        ("user_specific without owner", {**us, "user_id": None}, 400, "user_id"),
        ("user_specific owner empty", {**us, "user_id": ""}, 400, "user_id"),
        ("user_specific owner too long", {**us, "user_id": "u" * 65}, 400, "user_id"),
        ("unknown type", {**tw, "type": "birthday"}, 400, "type"),
        ("unknown discount_type", {**tw, "discount_type": "bogo"}, 400, "discount_type"),
        ("status expired is derived", {**tw, "status": "expired"}, 400, "status"),
        ("usage_limit zero", {**tw, "usage_limit": 0}, 400, "usage_limit"),
        ("usage_limit absurd", {**tw, "usage_limit": 10**12}, 400, "usage_limit"),
        ("usage_limit fractional", {**tw, "usage_limit": 1.5}, 400, "usage_limit"),
        ("per_user_limit negative", {**tw, "per_user_limit": -1}, 400, "per_user_limit"),
        ("starts_at not a date", {**tw, "starts_at": "yesterday"}, 400, "starts_at"),
        ("ends_at a number", {**tw, "ends_at": 1_700_000_000}, 400, "ends_at"),
        ("code missing", {k: v for k, v in tw.items() if k != "code"}, 400, "code"),
        ("code too long", {**tw, "code": "A" * 33}, 400, "code"),
        ("code malformed", {**tw, "code": "NO SPACES"}, 400, "code"),
        ("used_count is not settable", {**tw, "used_count": 5}, 400, "used_count"),
        ("id is not settable", {**tw, "id": 1}, 400, "id"),
        *common_body_cases(tw),
        *non_object_cases(None),
    ]
    for label, body, status, field in cases:
        response = await send(client, "POST", "/api/v1/coupons", body, ADMIN)
        assert_error(response, status, field, label)
    for headers in ({}, SERVICE, {"Authorization": "Bearer not-the-token"}):
        response = await send(client, "POST", "/api/v1/coupons", tw, headers)
        assert response.status_code in (401, 403)
    oversized = await send(
        client, "POST", "/api/v1/coupons", {**tw, "padding": "x" * (11 * 1024 * 1024)}, ADMIN
    )
    assert oversized.status_code == 413

    assert await count_rows(settings, "coupons") == 1
    listed = (await client.get("/api/v1/coupons", headers=ADMIN)).json()["items"]
    assert [item["code"] for item in listed] == [existing["code"]]
    # The codes of the rejected bodies are still free.
    await create_coupon(client, tw)


# --- patch ------------------------------------------------------------------------------------


async def test_patch_rejects_invalid_changes_and_changes_nothing(
    client: Client, settings: Settings
) -> None:
    tw = (await create_coupon(client, time_window_coupon(usage_limit=10, per_user_limit=1)))["code"]
    us = (await create_coupon(client, user_coupon("owner_1")))["code"]
    for _ in range(3):
        assert (await redeem(client, tw, unique_user(), unique_order())).status_code == 201
    tw_before, us_before = await get_coupon(client, tw), await get_coupon(client, us)
    assert tw_before["used_count"] == 3
    starts_at = datetime.fromisoformat(tw_before["starts_at"].replace("Z", "+00:00"))

    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("usage_limit below used_count", tw, {"usage_limit": 2}, 400, "usage_limit"),
        ("usage_limit zero", tw, {"usage_limit": 0}, 400, "usage_limit"),
        ("percent above 100", tw, {"discount_value": "150"}, 400, "discount_value"),
        ("percent NaN", tw, {"discount_value": "NaN"}, 400, "discount_value"),
        ("fixed zero", tw, {"discount_type": "fixed", "discount_value": "0"}, 400, "discount_value"),
        ("ends_at before starts_at", tw, {"ends_at": iso(starts_at - timedelta(seconds=1))}, 400, "ends_at"),
        ("window removed", tw, {"starts_at": None}, 400, "starts_at"),
        ("end removed", tw, {"ends_at": None}, 400, "ends_at"),
        ("owner on a time_window", tw, {"user_id": "someone"}, 400, "user_id"),
        ("owner removed", us, {"user_id": None}, 400, "user_id"),
        ("status expired", tw, {"status": "expired"}, 400, "status"),
        ("discount_type unknown", tw, {"discount_type": "bogo"}, 400, "discount_type"),
        ("min_order_total negative", tw, {"min_order_total": "-1"}, 400, "min_order_total"),
        ("code is not patchable", tw, {"code": "OTHER-CODE"}, 400, "code"),
        ("type is not patchable", tw, {"type": "user_specific"}, 400, "type"),
        ("used_count is not patchable", tw, {"used_count": 0}, 400, "used_count"),
        ("malformed JSON", tw, b'{"status": ', 400, None),
        ("non-object", tw, b"[]", 400, None),
        ("empty body", tw, b"", 400, None),
        ("path code too long", "A" * 33, {"status": "inactive"}, 400, "code"),
        ("path code malformed", "NO%20SPACES", {"status": "inactive"}, 400, "code"),
    ]  # fmt: skip
    for label, code, body, status, field in cases:
        response = await send(client, "PATCH", f"/api/v1/coupons/{code}", body, ADMIN)
        assert_error(response, status, field, label)
    unknown = await send(
        client, "PATCH", "/api/v1/coupons/NO-SUCH-CODE", {"status": "inactive"}, ADMIN
    )
    assert_error(unknown, 404, "code", "unknown code")
    forbidden = await send(
        client, "PATCH", f"/api/v1/coupons/{tw}", {"status": "inactive"}, SERVICE
    )
    assert forbidden.status_code == 403

    assert await get_coupon(client, tw) == tw_before
    assert await get_coupon(client, us) == us_before
    assert await count_rows(settings, "coupons") == 2
    # Still valid: none of the rejected patches reached the validation index either.
    assert (await validate(client, tw, unique_user()))["valid"] is True

    # Lowering the limit to exactly the uses made is allowed, and validation follows.
    response = await send(client, "PATCH", f"/api/v1/coupons/{tw}", {"usage_limit": 3}, ADMIN)
    assert response.status_code == 200, response.text
    assert (await validate(client, tw, unique_user()))["reason"] == "usage_limit_reached"


# --- query parameters ---------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_bad_query_parameters(client: Client) -> None:
    code = (await create_coupon(client, time_window_coupon()))["code"]
    raw_cursors = {
        "not base64": "!!!",
        "base64 of garbage": _b64("garbage"),
        "empty list": _b64("[]"),
        "string id": _b64('["x"]'),
        "zero id": _b64("[0]"),
        "negative id": _b64("[-1]"),
        "id beyond int64": _b64(f"[{2**63}]"),
        "float id": _b64("[1.5]"),
    }
    for url in ("/api/v1/coupons", "/api/v1/validation-logs"):
        for label, cursor in raw_cursors.items():
            response = await client.get(f"{url}?cursor={cursor}", headers=ADMIN)
            assert_error(response, 400, "cursor", f"{url} cursor {label}")
        for limit in ("0", "-1", "201", "1000000", "ten", "1.5", ""):
            response = await client.get(f"{url}?limit={limit}", headers=ADMIN)
            assert_error(response, 400, "limit", f"{url} limit {limit!r}")
        # The largest page is allowed; a cursor beyond every id simply starts from the top.
        assert (await client.get(f"{url}?limit=200", headers=ADMIN)).status_code == 200
        far = await client.get(f"{url}?cursor={encode_cursor(2**40)}", headers=ADMIN)
        assert far.status_code == 200, far.text
    listed = (
        await client.get(f"/api/v1/coupons?cursor={encode_cursor(2**40)}", headers=ADMIN)
    ).json()
    assert [item["code"] for item in listed["items"]] == [code]

    for query, field in (
        ("status=expiring", "status"),
        ("status=ACTIVE", "status"),
        ("type=birthday", "type"),
    ):
        response = await client.get(f"/api/v1/coupons?{query}", headers=ADMIN)
        assert_error(response, 400, field, query)
    for query, field in (("user_id=a%20b", "user_id"), ("user_id=" + "u" * 65, "user_id"),
                         ("code=NO%20SPACES", "code"), ("code=AB", "code")):  # fmt: skip
        response = await client.get(f"/api/v1/validation-logs?{query}", headers=ADMIN)
        assert_error(response, 400, field, query)
    for path in ("/api/v1/coupons/AB", "/api/v1/coupons/" + "A" * 33 + "/stats"):
        response = await client.get(path, headers=ADMIN)
        assert_error(response, 400, "code", path)
