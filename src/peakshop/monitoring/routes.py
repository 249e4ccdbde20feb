"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from litestar import Router, get
from litestar.datastructures import State
from litestar.plugins.prometheus import PrometheusController
from litestar.response import Response

from peakshop.monitoring.schemas import Health, Ready
from peakshop.runtime import Runtime


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
    )


@get("/ready", tags=["monitoring"])
async def ready(state: State) -> Response[Ready]:
    """Readiness for a load balancer: 503 until the database and hot state answer."""
    runtime: Runtime = state.runtime
    database = await runtime.db.ping()
    hot_state = await runtime.state.ping()
    body = Ready(ready=database and hot_state, database=database, hot_state=hot_state)
    return Response(body, status_code=200 if body.ready else 503)


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


router = Router(path="/", route_handlers=[health, ready, MetricsController])
