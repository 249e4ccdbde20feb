"""The OpenAPI entry of the validation endpoint, written by hand because it is a raw ASGI
handler (the framework documents only ordinary handlers)."""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    RequestBody,
    Schema,
)

from peakshop.coupons.schemas import CODE_PATTERN, ID_PATTERN, REASONS

_AMOUNT = Schema(
    one_of=[
        Schema(type=OpenAPIType.STRING, pattern=r"^\d+(\.\d{1,2})?$"),
        Schema(type=OpenAPIType.NUMBER),
    ],
    description="Amount with at most two decimals, 0 to 1,000,000,000",
    examples=["49.90"],
)
ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "code": Schema(type=OpenAPIType.STRING),
                "message": Schema(type=OpenAPIType.STRING),
                "field": Schema(
                    one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)]
                ),
            },
            required=["code", "message", "field"],
        )
    },
    required=["error"],
)


def json_response(schema: Schema, description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description, content={"application/json": OpenAPIMediaType(schema=schema)}
    )


def add_validate_operation(schema: OpenAPI) -> None:
    request = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "code": Schema(type=OpenAPIType.STRING, pattern=CODE_PATTERN, examples=["SUMMER-2026"]),
            "user_id": Schema(
                type=OpenAPIType.STRING, pattern=ID_PATTERN, examples=["user_0000042"]
            ),
            "order_total": _AMOUNT,
        },
        required=["code", "user_id", "order_total"],
        additional_properties=False,
    )
    response = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "valid": Schema(type=OpenAPIType.BOOLEAN),
            "code": Schema(type=OpenAPIType.STRING),
            "discount": Schema(type=OpenAPIType.STRING, examples=["7.49"]),
            "final_total": Schema(type=OpenAPIType.STRING, examples=["42.41"]),
            "reason": Schema(
                one_of=[
                    Schema(type=OpenAPIType.STRING, enum=list(REASONS)),
                    Schema(type=OpenAPIType.NULL),
                ]
            ),
        },
        required=["valid", "code", "discount", "final_total", "reason"],
    )
    operation = Operation(
        tags=["coupons"],
        summary="Validate a coupon",
        description=(
            "Read-only check of a coupon for a user and an order total. Answers from memory; "
            "every attempt is logged asynchronously. Needs the service (or admin) token."
        ),
        operation_id="ValidateCoupon",
        request_body=RequestBody(
            content={"application/json": OpenAPIMediaType(schema=request)}, required=True
        ),
        responses={
            "200": json_response(response, "Validation result (valid or the reason it is not)"),
            "400": json_response(ERROR_SCHEMA, "Malformed body or field; error.field names it"),
            "401": json_response(ERROR_SCHEMA, "Missing or invalid bearer token"),
            "413": json_response(ERROR_SCHEMA, "Body too large"),
            "429": json_response(
                ERROR_SCHEMA,
                "Rate limit of the user or the client IP exceeded; the body's retry_after and "
                "scope (user, ip) and the Retry-After header say when to retry",
            ),
        },
        security=[{"bearer": []}],
    )
    if schema.paths is None:
        schema.paths = {}
    schema.paths["/api/v1/coupons/validate"] = PathItem(post=operation)
