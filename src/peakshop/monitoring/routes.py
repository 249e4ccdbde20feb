"""Health, readiness, Prometheus metrics, the monitoring API and the live events WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import structlog
from litestar import Router, WebSocket, get, post, websocket
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.params import Parameter
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from peakshop.auth import admin_guard
from peakshop.errors import Conflict, NotFound, Unavailable
from peakshop.monitoring import dashboard, metrics
from peakshop.monitoring.fanout import CLOSING, DISCONNECTED, server_calls
from peakshop.monitoring.schemas import (
    AlertsOut,
    BenchmarkOut,
    Health,
    HistoryOut,
    MetricsOut,
    Ready,
    ResetOut,
    Sample,
)
from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

# Close codes of /ws/monitoring.
CLOSE_UNAUTHORIZED = 4401  # no token, or not the admin token: do not reconnect with it
CLOSE_TOO_SLOW = 1013  # the client did not keep up and was dropped: reconnect
CLOSE_GOING_AWAY = 1001
CLOSE_MONITORING_OFF = 4503  # PEAKSHOP_MONITORING_ENABLED=false: there are no events to send
MONITORING_OFF = "monitoring is turned off on this server (PEAKSHOP_MONITORING_ENABLED=false)"


@get("/health", tags=["monitoring"])
async def health(state: State) -> Health:
    """Liveness with details: always 200 while the process serves; status says degraded when
    the database or the hot state is unreachable, or the cache runs without Redis (L2)."""
    runtime: Runtime = state.runtime
    database = await runtime.db.ping()
    hot_state = await runtime.state.ping()
    stats = runtime.validation_log.stats()
    cache = runtime.cache.stats()
    return Health(
        status="ok" if database and hot_state and not cache.degraded else "degraded",
        mode=runtime.settings.mode.value,
        database=database,
        hot_state=hot_state,
        uptime_seconds=round(runtime.uptime(), 3),
        coupons_indexed=len(runtime.coupon_index),
        validation_log_queue_size=stats.pending,
        validation_log_dropped=stats.dropped,
        validation_log_dead_lettered=stats.dead_lettered,
        validation_log=stats,
        cache=cache,
        memory=runtime.monitor.memory_health(),
    )


@get("/ready", tags=["monitoring"])
async def ready(state: State) -> Response[Ready]:
    """Readiness for a load balancer: 503 until the database and hot state answer."""
    runtime: Runtime = state.runtime
    database = await runtime.db.ping()
    hot_state = await runtime.state.ping()
    body = Ready(ready=database and hot_state, database=database, hot_state=hot_state)
    return Response(body, status_code=200 if body.ready else 503)


@get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response[bytes]:
    """Prometheus text format; with several server processes, the sum (or per-process
    values, as each metric says) of all of them."""
    body = generate_latest(metrics.exposition_registry())
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# --- the monitoring API (admin) ---------------------------------------------------------------


def monitoring_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """With monitoring off there is no snapshot, history or alert to show: 503 with the
    reason, rather than numbers that look like an idle server."""
    if not connection.app.state.runtime.settings.monitoring_enabled:
        raise Unavailable(MONITORING_OFF, code="monitoring_disabled")


_MONITORED = [admin_guard, monitoring_guard]  # the token first: a stranger learns nothing


@get("/metrics", guards=_MONITORED, tags=["monitoring"])
async def latest_metrics(state: State) -> MetricsOut:
    """This process's latest snapshot, as the metrics-update event that carried it, with
    the recent alert transitions (newest first)."""
    monitor = state.runtime.monitor
    at, snapshot = monitor.latest
    return MetricsOut(
        type="metrics-update",
        at=at,
        data=snapshot,
        recent_alerts=monitor.alerts.recent_newest_first(),
    )


@get("/history", guards=_MONITORED, tags=["monitoring"])
async def history(
    state: State,
    minutes: Annotated[
        int, Parameter(ge=1, le=60, description="The last 1-60 minutes, one sample a second.")
    ] = 5,
) -> HistoryOut:
    """This process's snapshots of the last ``minutes`` minutes, oldest first."""
    monitor = state.runtime.monitor
    samples = [
        Sample(at=datetime.fromtimestamp(at, UTC), data=snapshot)
        for at, snapshot in monitor.since(minutes * 60)
    ]
    return HistoryOut(pid=monitor.pid, interval_seconds=1.0, snapshots=samples)


@get("/alerts", guards=_MONITORED, tags=["monitoring"])
async def alerts(state: State) -> AlertsOut:
    """The alerts firing in this process now, and the recent transitions (newest first)."""
    monitor = state.runtime.monitor
    return AlertsOut(
        pid=monitor.pid,
        active=monitor.alerts.active(),
        alerts=monitor.alerts.recent_newest_first(),
    )


@post("/metrics/reset", guards=_MONITORED, tags=["monitoring"], status_code=200)
async def reset_metrics(state: State) -> ResetOut:
    """Clear the monitors' history, per-second counters, recent alerts and memory trend, in
    every server process (through the broadcast). Prometheus' counters are monotonic and are
    not touched."""
    monitor = state.runtime.monitor
    await monitor.reset(everywhere=True)
    return ResetOut(reset=True, pid=monitor.pid)


@get("/benchmark", guards=[admin_guard], tags=["monitoring"])
async def benchmark(
    state: State,
    file: Annotated[
        str | None,
        Parameter(description="A report's file name; default: the newest report."),
    ] = None,
) -> BenchmarkOut:
    """The newest benchmark report (JSON) under PEAKSHOP_BENCH_RESULTS_DIR, as written by the
    bench commands; 404 when there is none."""
    folder = Path(state.runtime.settings.bench_results_dir)
    return await asyncio.to_thread(_read_report, folder, file)


def _read_report(folder: Path, name: str | None) -> BenchmarkOut:
    reports = sorted(
        (path for path in folder.glob("*.json") if path.is_file()),
        key=lambda path: path.stat().st_mtime,
    )
    if name is not None:
        # Only a file of the listing: no path of the caller's is ever opened.
        reports = [path for path in reports if path.name == name]
        if not reports:
            raise NotFound(f"no benchmark report named {name!r}", field="file")
    for path in reversed(reports):  # newest first; a report being written is skipped
        content = path.read_bytes()
        try:
            msgspec.json.decode(content)
        except msgspec.DecodeError:
            if name is not None:
                raise Conflict(f"{name} is not valid JSON", field="file") from None
            continue
        return BenchmarkOut(
            file=path.name,
            modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            report=msgspec.Raw(content),
        )
    raise NotFound(f"no benchmark report in {folder}")


# --- live events -----------------------------------------------------------------------------


def _authorized(socket: WebSocket, admin_token: str) -> bool:  # type: ignore[type-arg]
    """The admin token, from ``?token=`` (browsers cannot set headers on a WebSocket) or
    the Authorization header."""
    token = socket.query_params.get("token")
    if token is None:
        header = socket.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
    return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())


@websocket("/ws/monitoring")
async def monitoring_events(socket: WebSocket) -> None:  # type: ignore[type-arg]
    """Live events (JSON text frames): metrics-update, order-update, inventory-update,
    system-alert. Admin token required; a client that does not keep up is dropped."""
    runtime: Runtime = socket.app.state.runtime
    settings = runtime.settings
    await socket.accept()
    if not _authorized(socket, settings.admin_token):
        await socket.close(code=CLOSE_UNAUTHORIZED, reason="admin token required")
        return
    if not runtime.live.enabled:
        await socket.close(code=CLOSE_MONITORING_OFF, reason="monitoring is turned off")
        return
    # The events go out through the process's fan-out (fanout.py), from the server's own
    # calls: this handler only waits for the end of the connection, and closes it.
    receive, send = server_calls(socket.scope, socket.receive, socket.send)
    async with runtime.live.connect(receive, send) as client:
        reason = await client.ended
    if reason == DISCONNECTED:
        return
    if reason == CLOSING:
        await _close(socket, CLOSE_GOING_AWAY, "server shutting down")
        return
    metrics.LIVE_CLIENTS_DROPPED.labels(reason).inc()
    log.warning("live_client_dropped", reason=reason, client=_client(socket))
    await _close(socket, CLOSE_TOO_SLOW, f"too slow ({reason}): reconnect")


async def _close(socket: WebSocket, code: int, reason: str) -> None:  # type: ignore[type-arg]
    # A client that stopped reading may block this too: give it a moment, then let the
    # server drop the connection when the handler returns.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await socket.close(code=code, reason=reason)


def _client(socket: WebSocket) -> str | None:  # type: ignore[type-arg]
    return socket.client.host if socket.client else None


api_router = Router(
    path="/api/v1/monitoring",
    route_handlers=[latest_metrics, history, alerts, reset_metrics, benchmark],
)
router = Router(
    path="/",
    route_handlers=[
        health,
        ready,
        prometheus_metrics,
        monitoring_events,
        api_router,
        dashboard.router,
    ],
)
