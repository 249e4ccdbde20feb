"""Domain metrics (prometheus-client). HTTP metrics are in monitoring/middleware.py.

With several server processes, prometheus-client's multiprocess mode aggregates the values
(``peakshop serve --workers N`` sets PROMETHEUS_MULTIPROC_DIR before the workers start), and
every gauge says how (``multiprocess_mode``). prometheus-client's process and GC collectors
only describe the process that answers a scrape, so in multiprocess mode they are not
exported; the monitor keeps ``peakshop_process_resident_memory_bytes``, the event-loop lag
and the GC counters per process instead (a ``pid`` label in multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from peakshop.coupons.schemas import REASONS

# The *_created series double the output and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Sub-millisecond to seconds: the hot paths answer in tens of microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

COUPON_VALIDATIONS = Counter(
    "peakshop_coupon_validations_total",
    "Coupon validation outcomes; reason is 'valid' for a valid coupon.",
    ["reason"],
)
COUPON_REDEMPTIONS = Counter(
    "peakshop_coupon_redemptions_total",
    "Coupon redemption outcomes: created, replayed, or the rejection reason.",
    ["outcome"],
)
VALIDATION_LOG_QUEUE = Gauge(
    "peakshop_validation_log_queue_size",
    "Validation log records buffered, not yet written.",
    multiprocess_mode="livesum",
)
VALIDATION_LOG_RECORDS = Counter(
    "peakshop_validation_log_records_total",
    "Validation log records by fate: written, dropped (buffer full), dead_lettered.",
    ["fate"],
)
VALIDATION_LOG_FLUSH_FAILURES = Counter(
    "peakshop_validation_log_flush_failures_total",
    "Failed validation log flush attempts (each retry counts).",
)
RATE_LIMITED = Counter(
    "peakshop_rate_limited_total",
    "Requests refused with 429, by endpoint (validate, orders) and exceeded scope (user, ip).",
    ["endpoint", "scope"],
)
RATE_LIMITER_ERRORS = Counter(
    "peakshop_rate_limiter_errors_total",
    "Requests let through unchecked because the rate limit storage failed (fail open).",
    ["endpoint"],
)

# Pre-bound children: the hot path increments without a label lookup.
VALIDATION_BY_REASON = {reason: COUPON_VALIDATIONS.labels(reason) for reason in (*REASONS, "valid")}

# --- jobs and orders ---------------------------------------------------------------------------

JOBS_PROCESSED = Counter(
    "peakshop_jobs_total",
    "Job attempts by job name and outcome: done, retry (an attempt failed), dead, skipped.",
    ["name", "outcome"],
)
JOB_SECONDS = Histogram(
    "peakshop_job_duration_seconds",
    "Time of one job attempt, from its start to its outcome.",
    ["name"],
    buckets=LATENCY_BUCKETS,
)
INLINE_READS_OVER_BUDGET = Counter(
    "peakshop_sqlite_inline_reads_over_budget_total",
    "Reads on the event loop's thread interrupted at their time budget and run in a thread.",
)
JOBS_IN_FLIGHT = Gauge(
    "peakshop_jobs_in_flight", "Job attempts running now.", multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "peakshop_queue_depth",
    "Job messages waiting (sampled each second by each process that works the queue).",
    multiprocess_mode="livemax",
)
DEAD_LETTERS = Gauge(
    "peakshop_dead_letters",
    "Dead-lettered jobs not yet retried or discarded.",
    multiprocess_mode="livemax",
)
FLASH_SALE_ADMISSIONS = Counter(
    "peakshop_flash_sale_admissions_total",
    "Flash-sale order attempts by outcome: admitted, replayed, or the rejection reason.",
    ["outcome"],
)
# Pre-bound children: the admission path increments without a label lookup.
FLASH_SALE_ADMISSIONS_BY_OUTCOME = {
    outcome: FLASH_SALE_ADMISSIONS.labels(outcome)
    for outcome in ("admitted", "replayed", "sold_out", "user_limit_reached", "not_active")
}
ORDERS_PLACED = Counter(
    "peakshop_orders_placed_total",
    "Regular order attempts by outcome: placed, replayed, or the rejection reason.",
    ["outcome"],
)
ORDER_TRANSITIONS = Counter(
    "peakshop_order_transitions_total",
    "Orders leaving pending, by new status (confirmed, failed, cancelled).",
    ["status"],
)

# --- cache (state/cache.py) --------------------------------------------------------------------

CACHE_REQUESTS = Counter(
    "peakshop_cache_requests_total",
    "Cache lookups by level (l1: in the process, l2: Redis) and result (hit, miss).",
    ["level", "result"],
)
CACHE_EVICTIONS = Counter(
    "peakshop_cache_evictions_total",
    "Entries pushed out to make room (least recently used first), by level.",
    ["level"],
)
CACHE_LATENCY = Histogram(
    "peakshop_cache_latency_seconds",
    "Time of a lookup by level (l1, l2: one Redis round trip), and of a load on a miss (load).",
    ["level"],
    buckets=LATENCY_BUCKETS,
)
CACHE_L2_HEALTHY = Gauge(
    "peakshop_cache_l2_healthy",
    "1 while the Redis level and the invalidation broadcast are in use, 0 while degraded.",
    multiprocess_mode="livemin",
)

JOB_QUEUE_WAIT = Histogram(
    "peakshop_job_queue_wait_seconds",
    "Time from a job's enqueueing to the start of its first attempt, by job name.",
    ["name"],
    buckets=LATENCY_BUCKETS,
)

# --- process (sampled every second by the monitor) ----------------------------------------

PROCESS_RSS = Gauge(
    "peakshop_process_resident_memory_bytes",
    "Resident memory of the server process (per process: a pid label in multiprocess mode).",
    multiprocess_mode="liveall",
)
EVENT_LOOP_LAG = Gauge(
    "peakshop_event_loop_lag_seconds",
    "Latest overshoot of a 50 ms sleep on the event loop (how late the loop ran it).",
    multiprocess_mode="liveall",
)
EVENT_LOOP_LAG_HISTOGRAM = Histogram(
    "peakshop_event_loop_lag_distribution_seconds",
    "Overshoots of the event-loop probe's 50 ms sleeps (kit/foreground.py).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_COLLECTIONS = Counter(
    "peakshop_gc_collections_total",
    "Garbage collections of the server processes, by generation.",
    ["generation"],
)
GC_COLLECTED = Counter(
    "peakshop_gc_collected_objects_total",
    "Objects freed by the garbage collector, by generation.",
    ["generation"],
)

# --- live events (monitoring/live.py) -------------------------------------------------------

LIVE_CLIENTS = Gauge(
    "peakshop_live_clients",
    "WebSocket clients of /ws/monitoring connected now.",
    multiprocess_mode="livesum",
)
LIVE_CLIENTS_DROPPED = Counter(
    "peakshop_live_clients_dropped_total",
    "WebSocket clients dropped for being too slow, by reason (backlog, send_timeout).",
    ["reason"],
)
LIVE_EVENTS = Counter(
    "peakshop_live_events_total",
    "Live events published by this process, by type (none while no client listens).",
    ["type"],
)
LIVE_EVENTS_BY_TYPE = {
    event_type: LIVE_EVENTS.labels(event_type)
    for event_type in ("metrics-update", "order-update", "inventory-update", "system-alert")
}
LIVE_EVENTS_DROPPED = Counter(
    "peakshop_live_events_dropped_total",
    "Live events not delivered, by where: outbox (full, or the broadcast failed), rate_limit "
    "(order updates past the per-process rate), relay (received while the process's fan-out "
    "was 10,000 behind), client_backlog (a client's backlog was full).",
    ["where"],
)
LIVE_DROPPED_OUTBOX = LIVE_EVENTS_DROPPED.labels("outbox")
LIVE_DROPPED_RATE = LIVE_EVENTS_DROPPED.labels("rate_limit")
LIVE_DROPPED_BACKLOG = LIVE_EVENTS_DROPPED.labels("client_backlog")
LIVE_DROPPED_RELAY = LIVE_EVENTS_DROPPED.labels("relay")

# --- flash sales (sampled from the system of record every second by the monitor) -----------


class SaleStockCollector(Collector):
    """Remaining, reserved and sold units of every flash sale whose window is open, as the
    monitor last read them. A collector rather than gauges: a sale that ends simply leaves
    the output (prometheus-client cannot remove a label in multiprocess mode), and the values
    come from the database, so the process that answers a scrape has them all."""

    def __init__(self) -> None:
        self.sales: list[tuple[int, int, int, int]] = []  # (sale_id, remaining, reserved, sold)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sales = self.sales
        for index, (name, documentation) in enumerate(
            (
                ("peakshop_flash_sale_remaining", "Units of an open flash sale still for sale."),
                ("peakshop_flash_sale_reserved", "Units of an open flash sale in pending orders."),
                ("peakshop_flash_sale_sold", "Units of an open flash sale in confirmed orders."),
            ),
            start=1,
        ):
            family = GaugeMetricFamily(name, documentation, labels=["sale_id"])
            for sale in sales:
                family.add_metric([str(sale[0])], sale[index])
            yield family


SALE_STOCK = SaleStockCollector()
REGISTRY.register(SALE_STOCK)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def exposition_registry() -> CollectorRegistry:
    """What /metrics exports: this process's registry, or with several server processes the
    aggregate of every process's files (plus the flash sales, read from the database)."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(SALE_STOCK)
    return registry


def forget_process() -> None:
    """At a graceful stop in multiprocess mode: this process's live gauges (``live*`` modes)
    leave the aggregate. A killed process's stay until the folder is cleared (a new
    ``peakshop serve`` starts with a fresh one): prometheus-client cannot know it died."""
    if multiprocess_dir() is not None:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
