"""Domain metrics (prometheus-client). HTTP metrics come from Litestar's Prometheus middleware.

With several server processes, prometheus-client's multiprocess mode aggregates the values
(``peakshop serve --workers N`` sets PROMETHEUS_MULTIPROC_DIR before the workers start).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, disable_created_metrics

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

# Pre-bound children: the hot path increments without a label lookup.
VALIDATION_BY_REASON = {reason: COUPON_VALIDATIONS.labels(reason) for reason in (*REASONS, "valid")}
