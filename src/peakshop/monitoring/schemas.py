"""Shapes of the monitoring endpoints and of the live events (WebSocket /ws/monitoring)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from peakshop.kit.batch_writer import WriterStats
from peakshop.state.cache import CacheStats

# --- the monitor's snapshot (the data of a metrics-update event) -------------------------------


class LatencyMs(msgspec.Struct):
    """Server-side latency percentiles over the last second, in ms; null without requests."""

    p50: float | None
    p95: float | None
    p99: float | None


class QueueNumbers(msgspec.Struct):
    depth: int  # messages waiting
    in_flight: int  # jobs being processed now (every worker)
    dead_letters: int  # dead-lettered, not retried or discarded


class SaleStock(msgspec.Struct, frozen=True):
    sale_id: int
    remaining: int
    reserved: int
    sold: int


class Snapshot(msgspec.Struct):
    """One second of one server process."""

    pid: int
    requests_per_second: float
    error_rate: float  # share of 5xx answers in the second
    latency_ms: LatencyMs
    queue: QueueNumbers
    validation_log_queue: int
    cache_hit_rate: float | None  # lookups answered without a load, null without lookups
    rss_bytes: int
    event_loop_lag_ms: float  # the largest overshoot measured in the second
    sales: list[SaleStock]  # flash sales whose window is open
    alerts_active: int
    client_error_rate: float  # share of 4xx answers in the second


# --- events --------------------------------------------------------------------------------------


class OrderUpdate(msgspec.Struct):
    order_id: str
    status: str  # pending | confirmed | failed | cancelled
    kind: str  # flash_sale | regular
    sale_id: int | None


class AlertEvent(msgspec.Struct):
    name: str
    severity: Literal["warning", "critical"]
    state: Literal["firing", "resolved"]
    message: str
    value: float
    threshold: float
    pid: int


EventType = Literal["metrics-update", "order-update", "inventory-update", "system-alert"]


class Event(msgspec.Struct):
    """One JSON text frame of /ws/monitoring."""

    type: EventType
    at: datetime  # UTC, encoded as ISO 8601 with a Z
    data: Any


# --- HTTP answers ----------------------------------------------------------------------------


class AlertRecord(msgspec.Struct):
    """A transition of an alert, as kept in the recent-alerts list."""

    at: datetime
    name: str
    severity: str
    state: str
    message: str
    value: float
    threshold: float
    pid: int


class ActiveAlert(msgspec.Struct):
    name: str
    severity: str
    since: datetime
    message: str
    value: float
    threshold: float


class AlertsOut(msgspec.Struct):
    pid: int
    active: list[ActiveAlert]
    alerts: list[AlertRecord]  # the recent transitions, newest first, at most 100


class MetricsOut(msgspec.Struct):
    """The latest metrics-update event of this process, and its recent alert transitions."""

    type: Literal["metrics-update"]
    at: datetime
    data: Snapshot
    recent_alerts: list[AlertRecord]


class Sample(msgspec.Struct):
    at: datetime
    data: Snapshot


class HistoryOut(msgspec.Struct):
    pid: int
    interval_seconds: float
    snapshots: list[Sample]  # oldest first


class BenchmarkOut(msgspec.Struct):
    file: str
    modified_at: datetime
    report: msgspec.Raw  # the report file's JSON, as written by the bench command


class ResetOut(msgspec.Struct):
    reset: bool
    pid: int


class MemoryHealth(msgspec.Struct):
    rss_bytes: int
    heap_bytes: int | None  # traced Python heap; null unless PEAKSHOP_MEMORY_TRACEMALLOC
    slope_bytes_per_minute: float | None  # least-squares trend over the window
    r2: float | None
    samples: int
    window_seconds: float
    suspected: bool  # memory_leak_suspected is firing


# --- health -----------------------------------------------------------------------------------


class Health(msgspec.Struct):
    status: str  # ok | degraded
    mode: str
    database: bool
    hot_state: bool
    uptime_seconds: float
    coupons_indexed: int
    validation_log_queue_size: int
    validation_log_dropped: int
    validation_log_dead_lettered: int
    validation_log: WriterStats
    cache: CacheStats  # hit rate, per level counts, L2 and broadcast state
    memory: MemoryHealth


class Ready(msgspec.Struct):
    ready: bool
    database: bool
    hot_state: bool
