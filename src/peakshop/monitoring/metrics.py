"""Domain metrics (prometheus-client). HTTP metrics come from Litestar's Prometheus middleware.

With several server processes, prometheus-client's multiprocess mode aggregates the values
(``peakshop serve --workers N`` sets PROMETHEUS_MULTIPROC_DIR before the workers start).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

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
