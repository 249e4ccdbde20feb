"""HTTP routes of orders: placement (flash sale and regular), status, cancellation."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from litestar import Request, Router, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response
from litestar.types import Receive, Scope, Send

from peakshop.auth import admin_guard, service_guard
from peakshop.coupons.schemas import ID_PATTERN
from peakshop.errors import InvalidInput, PeakshopError
from peakshop.inventory.errors import AdmissionRejected, SaleNotFound
from peakshop.jobs import service as jobs_service
from peakshop.jobs.schemas import JobOut
from peakshop.kit.asgi import (
    authorization,
    client_ip,
    decode,
    header,
    read_body,
    send_error,
    send_json,
)
from peakshop.kit.clock import utcnow
from peakshop.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from peakshop.monitoring import metrics
from peakshop.orders import placement, service
from peakshop.orders.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    Accepted,
    FlashSaleOrderRequest,
    OrderMetrics,
    OrderOut,
    OrderPage,
    OrderRequest,
)
from peakshop.runtime import Runtime

_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
_ID_RE = re.compile(ID_PATTERN)
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Required. 1-128 letters, digits or _.:-; the same key returns the first answer.",
    ),
]


def _key(value: str | None) -> str:
    if value is None:
        raise InvalidInput("the Idempotency-Key header is required", field="Idempotency-Key")
    if not _KEY_RE.match(value):
        raise InvalidInput(
            "Idempotency-Key must be 1-128 letters, digits or _.:-", field="Idempotency-Key"
        )
    return value


def _accepted(answer: Accepted, replay: bool) -> Response[Accepted]:
    headers = {"Idempotent-Replay": "true"} if replay else {}
    return Response(answer, status_code=202, headers=headers)


def _client_ip(request: Request) -> str | None:  # type: ignore[type-arg]
    return request.client.host if request.client else None


def _sale_id(scope: Scope) -> int:
    sale_id = int(scope["path_params"]["sale_id"])
    if not 1 <= sale_id < 2**63:
        raise SaleNotFound(sale_id)
    return sale_id


def _count_admission(outcome: str) -> None:
    child = metrics.FLASH_SALE_ADMISSIONS_BY_OUTCOME.get(outcome)
    (child or metrics.FLASH_SALE_ADMISSIONS.labels(outcome)).inc()


_flash_decoder = msgspec.json.Decoder(FlashSaleOrderRequest)
_encoder = msgspec.json.Encoder()
_REPLAY_HEADERS = ((b"idempotent-replay", b"true"),)


FLASH_SALE_ORDER_PATH = "/api/v1/flash-sales/{sale_id:int}/orders"


async def place_flash_sale_order(scope: Scope, receive: Receive, send: Send) -> None:
    """Buy in a flash sale: admitted or refused at once by the hot store (409 with the
    reason: sold_out, user_limit_reached, not_active); the order is processed by the queue.

    A thin ASGI handler (see kit/asgi.py): losers, most of a sale's traffic, are refused at
    the hot store's speed. It is dispatched by ``PeakshopApp`` before the router (see
    app.py); its OpenAPI entry is in openapi.py."""
    runtime: Runtime = scope["litestar_app"].state.runtime
    try:
        if scope.get("method") != "POST":
            raise PeakshopError("use POST", code="method_not_allowed")
        scope["litestar_app"].state.tokens.check(authorization(scope), admin_only=False)
        raw_key = header(scope, b"idempotency-key")
        key = _key(None if raw_key is None else raw_key.decode("latin-1"))
        data = decode(_flash_decoder, await read_body(receive))
        await runtime.limiter.check("orders", user_id=data.user_id, client_ip=client_ip(scope))
        answer, replay = await placement.place_flash_sale_order(
            runtime,
            sale_id=_sale_id(scope),
            user_id=data.user_id,
            quantity=data.quantity,
            idempotency_key=key,
            now=utcnow(),
        )
    except AdmissionRejected as exc:
        _count_admission(exc.reason)
        await send_error(send, exc)
        return
    except PeakshopError as exc:
        await send_error(send, exc)
        return
    _count_admission("replayed" if replay else "admitted")
    await send_json(send, 202, _encoder.encode(answer), _REPLAY_HEADERS if replay else ())


@post("/api/v1/orders", guards=[service_guard], status_code=202)
async def place_order(
    request: Request,  # type: ignore[type-arg]
    data: JSONBody[OrderRequest],
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> Response[Accepted]:
    """Place an order: every item's stock is reserved and the coupon redeemed, all or
    nothing; the order is processed by the queue."""
    runtime: Runtime = state.runtime
    key = _key(idempotency_key)
    await runtime.limiter.check("orders", user_id=data.user_id, client_ip=_client_ip(request))
    try:
        answer, replay = await placement.place_order(
            runtime,
            user_id=data.user_id,
            items=data.items,
            coupon_code=data.coupon_code,
            idempotency_key=key,
            now=utcnow(),
        )
    except PeakshopError as exc:
        metrics.ORDERS_PLACED.labels(exc.code).inc()
        raise
    metrics.ORDERS_PLACED.labels("replayed" if replay else "placed").inc()
    return _accepted(answer, replay)


@get("/api/v1/orders/admin/metrics", guards=[admin_guard])
async def order_metrics(state: State) -> OrderMetrics:
    """Orders by status, placement rate, queue depth, dead letters, oldest pending order."""
    return await service.order_metrics(state.runtime, now=utcnow())


@get("/api/v1/orders/jobs/{job_id:str}", guards=[service_guard])
async def get_job(job_id: FromPath[str], state: State) -> JobOut:
    """A job's status: queued, processing, done, failed (a retry is scheduled) or dead."""
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await jobs_service.get_job(conn, job_id=job_id)


@get("/api/v1/orders/{order_id:str}", guards=[service_guard])
async def get_order(order_id: FromPath[str], state: State) -> OrderOut:
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        return await service.get_order(conn, order_id=order_id)


@post("/api/v1/orders/{order_id:str}/cancel", guards=[service_guard], status_code=200)
async def cancel_order(order_id: FromPath[str], state: State) -> OrderOut:
    """Cancel a pending or confirmed order: its units and coupon use are given back."""
    return await service.cancel_order(state.runtime, order_id=order_id, now=utcnow())


@get("/api/v1/users/{user_id:str}/orders", guards=[service_guard])
async def user_orders(
    user_id: FromPath[str],
    state: State,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> OrderPage:
    """The user's orders, newest first, with an opaque cursor."""
    if not _ID_RE.match(user_id):
        raise InvalidInput("user_id must be 1-64 letters, digits or _.:@-", field="user_id")
    runtime: Runtime = state.runtime
    async with runtime.db.read() as conn:
        items, next_seq = await service.user_orders(
            conn, user_id=user_id, before_seq=decode_cursor(cursor), limit=limit
        )
    return OrderPage(items=items, next_cursor=None if next_seq is None else encode_cursor(next_seq))


router = Router(
    path="/",
    route_handlers=[
        place_order,
        order_metrics,
        get_job,
        get_order,
        cancel_order,
        user_orders,
    ],
    tags=["orders"],
)
