"""Per-request observation: request id, Prometheus metrics per route, the monitor's
per-second numbers, slow-request log. One wrapper around the whole application
(``PeakshopApp.__call__``), so 404s and the thin ASGI handlers are seen too.

Written by hand instead of using Litestar's PrometheusMiddleware: measured in-process on
the validate endpoint, that one cost ~26 us per request (a Request object, four label
lookups and an in-progress gauge), more than the endpoint's own work (~17 us). This one
caches the labelled children per (method, route, status), so a request costs one dict
lookup, one increment and one histogram observation; the request id is a per-process
prefix and a counter unless the client sent a valid ``X-Request-ID``.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from peakshop.kit.foreground import InFlight
from peakshop.monitoring.logs import REQUEST_ID
from peakshop.monitoring.metrics import LATENCY_BUCKETS
from peakshop.monitoring.requests import RequestStats

log = structlog.get_logger(__name__)

HTTP_REQUESTS = Counter(
    "peakshop_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "peakshop_http_request_duration_seconds",
    "HTTP request latency (server side, until the response is sent) by route.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
EXCLUDED_ROUTES = frozenset({"/metrics"})  # the scrapes themselves
# The monitor's per-second numbers leave out the dashboard's own requests too.
NOT_TRAFFIC = EXCLUDED_ROUTES | {
    "/api/v1/monitoring/metrics",
    "/api/v1/monitoring/history",
    "/api/v1/monitoring/alerts",
    "/api/v1/monitoring/benchmark",
    "/api/v1/monitoring/metrics/reset",
}
REQUEST_ID_HEADER = b"x-request-id"
# What a client may send as its request id: up to 128 characters that need no escaping in
# a header or a log line. Anything else is replaced by a generated id.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")

_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_prefix = os.urandom(6).hex()
_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique across processes (a random per-process prefix) and cheap (a counter)."""
    return f"{_prefix}-{next(_counter):x}"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _VALID_REQUEST_ID.fullmatch(value) else None
    return None


def observe_http(
    app: ASGIApp, *, stats: RequestStats | None, slow_seconds: float, in_flight: InFlight
) -> ASGIApp:
    """Wrap ``app`` (HTTP scopes only) with the request id, the metrics, the slow log and the
    count of requests in flight (for background work to make way, kit/foreground.py);
    without ``stats`` (monitoring turned off) without the metrics. What to record is chosen
    here, once: the per-request path checks no flag."""
    record = _recorder(stats) if stats is not None else None

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _incoming_request_id(scope) or new_request_id()
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: the one given may be shared (a cached response's headers).
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        in_flight.count += 1
        try:
            await app(scope, receive, send_observed)
        finally:
            in_flight.count -= 1
            elapsed = time.perf_counter() - started
            if record is not None:
                record(scope, status, elapsed)
            if elapsed >= slow_seconds:
                _log_slow(scope, status, elapsed)
            REQUEST_ID.reset(token)

    return observed


def _recorder(stats: RequestStats) -> Callable[[Scope, int, float], None]:
    """The monitor's per-second numbers and the Prometheus series of one request."""

    def record(scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("path_template")
        method: str = scope.get("method", "GET")  # type: ignore[assignment]
        if route not in NOT_TRAFFIC:
            stats.record(elapsed, status)
        if route is not None and route not in EXCLUDED_ROUTES:
            key = (method, route, status)
            children = _children.get(key)
            if children is None:
                labels = (method, route, str(status))
                children = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
                _children[key] = children
            children[0].inc()
            children[1].observe(elapsed)

    return record


def _log_slow(scope: Scope, status: int, elapsed: float) -> None:
    log.warning(
        "slow_request",
        method=scope.get("method", "GET"),
        path=scope["path"],
        route=scope.get("path_template"),
        status=status,
        duration_ms=round(elapsed * 1000, 3),
    )
