"""Shapes of the monitoring endpoints."""

from __future__ import annotations

import msgspec

from peakshop.kit.batch_writer import WriterStats


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


class Ready(msgspec.Struct):
    ready: bool
    database: bool
    hot_state: bool
