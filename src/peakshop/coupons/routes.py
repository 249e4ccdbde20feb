"""HTTP routes of the coupons domain.

Validation, the hottest endpoint, is a thin ASGI handler: it decodes and encodes with msgspec
directly and skips the framework's per-request machinery (measured in benchmarks/; its
OpenAPI entry is written by hand in ``openapi.py``). Everything else uses ordinary handlers.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Router, asgi, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response
from litestar.types import Receive, Scope, Send
from sqlalchemy.exc import IntegrityError

from peakshop.auth import admin_guard, service_guard
from peakshop.coupons import repository, service
from peakshop.coupons.errors import CouponNotFound, RedemptionRejected
from peakshop.coupons.schemas import (
    CODE_PATTERN,
    ID_PATTERN,
    CouponCreate,
    CouponOut,
    CouponPage,
    CouponPatch,
    CouponStats,
    RedeemRequest,
    Redemption,
    ValidateRequest,
    ValidateResponse,
    ValidationLogOut,
    ValidationLogPage,
)
from peakshop.coupons.tasks import ValidationLogRecord
from peakshop.errors import InvalidInput, PeakshopError
from peakshop.kit.asgi import authorization, client_ip, decode, read_body, send_error, send_json
from peakshop.kit.clock import from_db, utcnow
from peakshop.kit.money import format_cents, parse_cents
from peakshop.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page_of
from peakshop.monitoring import metrics
from peakshop.runtime import Runtime

_CODE_RE = re.compile(CODE_PATTERN)
_ID_RE = re.compile(ID_PATTERN)
_validate_decoder = msgspec.json.Decoder(ValidateRequest)
_encoder = msgspec.json.Encoder()


def parse_amount(value: Any, field: str) -> int:
    try:
        return parse_cents(value, field=field)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc


@asgi("/api/v1/coupons/validate", is_mount=False, copy_scope=False)
async def validate_coupon(scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter_ns()
    runtime: Runtime = scope["litestar_app"].state.runtime
    try:
        if scope.get("method") != "POST":
            raise PeakshopError("use POST", code="method_not_allowed")
        scope["litestar_app"].state.tokens.check(authorization(scope), admin_only=False)
        request = decode(_validate_decoder, await read_body(receive))
        total = parse_amount(request.order_total, "order_total")
        await runtime.limiter.check("validate", user_id=request.user_id, client_ip=client_ip(scope))
        code = request.code.upper()
        reason, discount = await service.validate(
            index=runtime.coupon_index,
            counters=runtime.state.counters,
            code=code,
            user_id=request.user_id,
            order_total_cents=total,
            now=time.time(),
        )
    except PeakshopError as exc:
        await send_error(send, exc)
        return
    body = _encoder.encode(
        ValidateResponse(
            valid=reason is None,
            code=code,
            discount=format_cents(discount),
            final_total=format_cents(total - discount),
            reason=reason,  # type: ignore[arg-type]
        )
    )
    await send_json(send, 200, body)
    metrics.VALIDATION_BY_REASON[reason or "valid"].inc()
    runtime.validation_log.emit(
        ValidationLogRecord(
            code=code,
            user_id=request.user_id,
            order_total_cents=total,
            valid=reason is None,
            reason=reason,
            discount_cents=discount,
            latency_us=(time.perf_counter_ns() - started) // 1000,
            created_at=utcnow(),
        )
    )


def _code(code: str) -> str:
    if not _CODE_RE.match(code):
        raise InvalidInput("code must be 3-32 letters, digits, '-' or '_'", field="code")
    return code.upper()


_LIMITS = ("usage_limit_reached", "user_limit_reached")


async def _committed_repeat(runtime: Runtime, code: str, data: RedeemRequest) -> Redemption | None:
    try:
        async with runtime.db.read() as conn:
            return await service.find_redemption(
                conn, code=code, user_id=data.user_id, order_id=data.order_id
            )
    except CouponNotFound:
        return None


@post("/api/v1/coupons/{code:str}/redeem", guards=[service_guard], status_code=201)
async def redeem_coupon(
    code: FromPath[str], data: JSONBody[RedeemRequest], state: State
) -> Response[Redemption]:
    """Redeem a coupon for an order, atomically. A repeat of (code, order_id) returns the first
    redemption (header ``Idempotent-Replay: true``); a rejection is a 409 with the reason."""
    runtime: Runtime = state.runtime
    code = _code(code)
    total = parse_amount(data.order_total, "order_total")
    try:
        async with runtime.db.write() as conn:
            redemption, new_use_of = await service.redeem(
                conn,
                code=code,
                user_id=data.user_id,
                order_id=data.order_id,
                order_total_cents=total,
                now=utcnow(),
            )
    except IntegrityError:
        # A concurrent request with the same (code, order_id) committed first.
        async with runtime.db.read() as conn:
            redemption = await service.find_redemption(
                conn, code=code, user_id=data.user_id, order_id=data.order_id
            )
        new_use_of = None
    except RedemptionRejected as exc:
        # Likewise when the concurrent request took the use that this one was refused for: its
        # redemption had committed before the refusal (the limits queue on row locks).
        repeat = await _committed_repeat(runtime, code, data) if exc.reason in _LIMITS else None
        if repeat is None:
            metrics.COUPON_REDEMPTIONS.labels(exc.code).inc()
            raise
        redemption, new_use_of = repeat, None
    except PeakshopError as exc:
        metrics.COUPON_REDEMPTIONS.labels(exc.code).inc()
        raise
    created = new_use_of is not None
    if new_use_of is not None:
        await runtime.record_coupon_use(new_use_of, data.user_id)
    metrics.COUPON_REDEMPTIONS.labels("created" if created else "replayed").inc()
    headers = {} if created else {"Idempotent-Replay": "true"}
    return Response(redemption, status_code=201, headers=headers)


@post("/api/v1/coupons", guards=[admin_guard], status_code=201)
async def create_coupon(data: JSONBody[CouponCreate], state: State) -> CouponOut:
    runtime: Runtime = state.runtime
    async with runtime.db.write() as conn:
        coupon = await service.create_coupon(conn, data=data, now=utcnow())
    await runtime.coupon_index.announce(coupon.code)
    await runtime.audit(
        action="coupon.create", subject=f"coupon:{coupon.code}", before=None, after=coupon
    )
    return coupon


@get("/api/v1/coupons", guards=[admin_guard])
async def list_coupons(
    state: State,
    status: FromQuery[Literal["active", "inactive", "expired"] | None] = None,
    # Named as the query parameter itself, so that a validation error names "type".
    type: Annotated[Literal["user_specific", "time_window"] | None, QueryParameter()] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> CouponPage:
    """Coupons, newest first, with an opaque cursor (``next_cursor``)."""
    runtime: Runtime = state.runtime
    now = utcnow()
    async with runtime.db.read() as conn:
        rows = await repository.list_coupons(
            conn,
            state=status,
            coupon_type=type,
            before_id=decode_cursor(cursor),
            limit=limit + 1,
            now=now,
        )
    items, next_cursor = page_of([service.coupon_out(row, now=now) for row in rows], limit=limit)
    return CouponPage(items=items, next_cursor=next_cursor)


@get("/api/v1/coupons/{code:str}", guards=[admin_guard])
async def get_coupon(code: FromPath[str], state: State) -> CouponOut:
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await service.get_coupon(conn, code=_code(code), now=utcnow())


@patch("/api/v1/coupons/{code:str}", guards=[admin_guard])
async def update_coupon(
    code: FromPath[str], data: JSONBody[CouponPatch], state: State
) -> CouponOut:
    """Change a coupon; validation in every process sees the change at once."""
    runtime: Runtime = state.runtime
    async with runtime.db.write() as conn:
        before = await service.get_coupon(conn, code=_code(code), now=utcnow())
        coupon = await service.update_coupon(conn, code=_code(code), patch=data, now=utcnow())
    await runtime.coupon_index.announce(coupon.code)
    await runtime.audit(
        action="coupon.update", subject=f"coupon:{coupon.code}", before=before, after=coupon
    )
    return coupon


@get("/api/v1/coupons/{code:str}/stats", guards=[admin_guard])
async def coupon_stats(code: FromPath[str], state: State) -> CouponStats:
    """Validation attempts (all time and last 24 h), outcomes by reason, server latency."""
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await service.coupon_stats(conn, code=_code(code), now=utcnow())


@get("/api/v1/validation-logs", guards=[admin_guard])
async def list_validation_logs(
    state: State,
    code: FromQuery[str | None] = None,
    user_id: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ValidationLogPage:
    """Validation attempts, newest first, filtered by code and/or user."""
    runtime: Runtime = state.runtime
    if user_id is not None and not _ID_RE.match(user_id):
        raise InvalidInput("user_id must be 1-64 letters, digits or _.:@-", field="user_id")
    async with runtime.db.read() as conn:
        rows = await repository.list_validation_logs(
            conn,
            code=None if code is None else _code(code),
            user_id=user_id,
            before_id=decode_cursor(cursor),
            limit=limit + 1,
        )
    items, next_cursor = page_of(
        [
            ValidationLogOut(
                id=row["id"],
                code=row["code"],
                user_id=row["user_id"],
                order_total=format_cents(row["order_total_cents"]),
                valid=row["valid"],
                reason=row["reason"],
                discount=format_cents(row["discount_cents"]),
                latency_us=row["latency_us"],
                created_at=from_db(row["created_at"]) or row["created_at"],
            )
            for row in rows
        ],
        limit=limit,
    )
    return ValidationLogPage(items=items, next_cursor=next_cursor)


router = Router(
    path="/",
    route_handlers=[
        validate_coupon,
        redeem_coupon,
        create_coupon,
        list_coupons,
        get_coupon,
        update_coupon,
        coupon_stats,
        list_validation_logs,
    ],
    tags=["coupons"],
    security=[{"bearer": []}],
)
