"""Per-route HTTP metrics as a thin ASGI middleware.

Written by hand instead of using Litestar's PrometheusMiddleware: measured in-process on
the validate endpoint, that one cost ~26 us per request (a Request object, four label
lookups and an in-progress gauge), more than the endpoint's own work (~17 us). This one
caches the labelled children per (method, route, status), so a request costs one dict
lookup, one increment and one histogram observation.
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from peakshop.monitoring.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "peakshop_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "peakshop_http_request_duration_seconds",
    "HTTP request latency (server side, until the response starts) by route.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
EXCLUDED_ROUTES = frozenset({"/metrics"})

_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def http_metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path_template")
        if scope["type"] != ScopeType.HTTP or route is None or route in EXCLUDED_ROUTES:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_observe)
        finally:
            key = (scope.get("method", "GET"), route, status)
            children = _children.get(key)
            if children is None:
                labels = (key[0], key[1], str(status))
                children = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
                _children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    return middleware
