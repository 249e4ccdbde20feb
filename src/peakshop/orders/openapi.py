"""The OpenAPI entry of the flash-sale order endpoint, written by hand because it is a thin
ASGI handler dispatched before the router (the framework documents only its own routes)."""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    RequestBody,
    Schema,
)

from peakshop.coupons.openapi import ERROR_SCHEMA, json_response
from peakshop.coupons.schemas import ID_PATTERN
from peakshop.orders.routes import FLASH_SALE_ORDER_PATH
from peakshop.orders.schemas import IDEMPOTENCY_KEY_PATTERN

_REFUSAL = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        **(ERROR_SCHEMA.properties or {}),
        "reason": Schema(
            type=OpenAPIType.STRING, enum=["sold_out", "user_limit_reached", "not_active"]
        ),
    },
    required=["error", "reason"],
)


def add_flash_sale_order_operation(schema: OpenAPI) -> None:
    request = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "user_id": Schema(
                type=OpenAPIType.STRING, pattern=ID_PATTERN, examples=["user_0000042"]
            ),
            "quantity": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=10_000, default=1),
        },
        required=["user_id"],
        additional_properties=False,
    )
    accepted = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "order_id": Schema(type=OpenAPIType.STRING),
            "job_id": Schema(type=OpenAPIType.STRING),
            "status": Schema(type=OpenAPIType.STRING, enum=["pending"]),
        },
        required=["order_id", "job_id", "status"],
    )
    operation = Operation(
        tags=["orders"],
        summary="Buy in a flash sale",
        description=(
            "Admitted or refused at once by the hot store: stock, the buyer's cap and the "
            "idempotency key are checked in one atomic step. An admitted order is processed by "
            "the queue (GET /api/v1/orders/{order_id}, GET /api/v1/orders/jobs/{job_id}). The "
            "same Idempotency-Key with the same body returns the first answer (header "
            "Idempotent-Replay: true); with another body, 422. Needs the service token."
        ),
        operation_id="PlaceFlashSaleOrder",
        parameters=[
            Parameter(
                name="sale_id",
                param_in="path",
                required=True,
                schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
            ),
            Parameter(
                name="Idempotency-Key",
                param_in="header",
                required=True,
                schema=Schema(type=OpenAPIType.STRING, pattern=IDEMPOTENCY_KEY_PATTERN),
            ),
        ],
        request_body=RequestBody(
            content={"application/json": OpenAPIMediaType(schema=request)}, required=True
        ),
        responses={
            "202": json_response(accepted, "Admitted: the order is pending, its job queued"),
            "400": json_response(ERROR_SCHEMA, "Malformed body, field or Idempotency-Key"),
            "401": json_response(ERROR_SCHEMA, "Missing or invalid bearer token"),
            "404": json_response(ERROR_SCHEMA, "No such flash sale"),
            "409": json_response(_REFUSAL, "Refused: sold_out, user_limit_reached or not_active"),
            "422": json_response(ERROR_SCHEMA, "Idempotency-Key reused with another request"),
            "429": json_response(ERROR_SCHEMA, "Rate limit exceeded; see Retry-After"),
            "503": json_response(ERROR_SCHEMA, "The order could not be recorded; try again"),
        },
        security=[{"bearer": []}],
    )
    if schema.paths is None:
        schema.paths = {}
    path = FLASH_SALE_ORDER_PATH.replace(":int", "")
    schema.paths[path] = PathItem(post=operation)
