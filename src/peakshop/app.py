"""create_app(settings): wires the domains, plugins, error handling and lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import structlog
from litestar import Litestar, Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from peakshop.analytics import routes as analytics_routes
from peakshop.auth import Tokens
from peakshop.catalog import routes as catalog_routes
from peakshop.config import Settings, load_settings
from peakshop.coupons import routes as coupon_routes
from peakshop.coupons.openapi import add_validate_operation
from peakshop.errors import PeakshopError, RateLimited
from peakshop.inventory import routes as inventory_routes
from peakshop.jobs import routes as jobs_routes
from peakshop.kit.asgi import decode_error_field_text, send_json
from peakshop.monitoring import routes as monitoring_routes
from peakshop.monitoring.fanout import keep_server_calls
from peakshop.monitoring.logs import configure_logging
from peakshop.monitoring.middleware import observe_http
from peakshop.orders import routes as order_routes
from peakshop.orders.openapi import add_flash_sale_order_operation
from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _error(status: int, code: str, message: str, field: str | None = None) -> Response[object]:
    return Response(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status
    )


def _on_domain_error(_: Request, exc: PeakshopError) -> Response[object]:  # type: ignore[type-arg]
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return Response(exc.to_body(), status_code=exc.status_code, headers=headers)


def _on_validation_error(_: Request, exc: ValidationException) -> Response[object]:  # type: ignore[type-arg]
    details = exc.extra if isinstance(exc.extra, list) else []
    first = details[0] if details and isinstance(details[0], dict) else {}
    field = first.get("key") or None
    if isinstance(field, str) and field.endswith("_"):
        field = field[:-1]  # a parameter named after a keyword (from_ is the query's "from")
    message = first.get("message") or exc.detail
    if field in (None, "data") and isinstance(message, str):
        # A body error: msgspec names the field inside its message.
        field = decode_error_field_text(message) or field
    if field == "data":  # the body as a whole (the framework's name for it), not a field
        field = None
        if message == "'data'":  # the framework's KeyError text for an empty body
            message = "the request body must be a JSON object"
    return _error(400, "invalid_request", str(message), field)


def _on_undecodable(_: Request, exc: UnicodeDecodeError) -> Response[object]:  # type: ignore[type-arg]
    # msgspec raises this (not a DecodeError) for invalid UTF-8 inside a JSON string.
    return _error(400, "invalid_request", "the request body is not valid UTF-8")


def _on_http_error(_: Request, exc: HTTPException) -> Response[object]:  # type: ignore[type-arg]
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, exc.detail)


def _on_unexpected(request: Request, exc: Exception) -> Response[object]:  # type: ignore[type-arg]
    # The request id is added by the log processor (monitoring/logs.py).
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return _error(500, "internal_error", "internal server error")


_FLASH_SALE_ORDER = re.compile(r"^/api/v1/flash-sales/(\d{1,19})/orders$")


class PeakshopApp(Litestar):
    """Litestar, with every HTTP request observed (request id, metrics, slow log: see
    monitoring/middleware.py) and one endpoint dispatched before the router.

    The flash-sale order endpoint is a thin ASGI handler with a path parameter, and
    Litestar 2 cannot route HTTP requests to such a handler (its routing trie files an
    ``@asgi`` handler's parameters under "asgi" and looks them up under the method: a
    KeyError). So the path is matched here; everything else goes through the router."""

    _observed: ASGIApp
    _runtime: Runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == ScopeType.HTTP:
            await self._observed(scope, receive, send)
            return
        if scope["type"] == ScopeType.WEBSOCKET:
            keep_server_calls(scope, receive, send)  # for the live events' fan-out
        await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only HTTP scopes come here (__call__).
        if scope["path"] == catalog_routes.PRODUCTS_PATH and scope["method"] == "GET":  # type: ignore[typeddict-item]
            key = catalog_routes.raw_list_key(scope["query_string"])
            body = self._runtime.cache.peek(key)
            if body is not None:  # else the router's handler answers (and stores the alias)
                scope["path_template"] = catalog_routes.PRODUCTS_PATH
                await send_json(send, 200, body)
                return
        if match := _FLASH_SALE_ORDER.match(scope["path"]):
            scope["litestar_app"] = self
            scope["path_params"] = {"sale_id": match.group(1)}
            scope["path_template"] = order_routes.FLASH_SALE_ORDER_PATH
            await order_routes.place_flash_sale_order(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings)
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = PeakshopApp(
        route_handlers=[
            coupon_routes.router,
            catalog_routes.router,
            analytics_routes.router,
            inventory_routes.router,
            order_routes.router,
            jobs_routes.router,
            monitoring_routes.router,
        ],
        lifespan=[lifespan],
        state=None,
        exception_handlers={
            PeakshopError: _on_domain_error,
            ValidationException: _on_validation_error,
            UnicodeDecodeError: _on_undecodable,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="peakshop",
            version=version("peakshop"),
            description="E-commerce backend built for peak traffic.",
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        debug=False,
    )
    # With monitoring off the wrapper without metrics is chosen here, once: the hot paths
    # behind it check no flag per request.
    app._observed = observe_http(
        app._dispatch,
        stats=runtime.monitor.requests if settings.monitoring_enabled else None,
        slow_seconds=settings.slow_request_ms / 1000,
        in_flight=runtime.event_loop_probe.in_flight,
    )
    app.state.runtime = runtime
    app._runtime = runtime
    app.state.tokens = Tokens(settings)
    add_validate_operation(app.openapi_schema)
    add_flash_sale_order_operation(app.openapi_schema)
    return app


def app_factory() -> Litestar:
    """Entry point for the ASGI server (``granian --factory peakshop.app:app_factory``)."""
    return create_app()
