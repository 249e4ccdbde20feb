"""Shapes of the monitoring endpoints."""

from __future__ import annotations

import msgspec

from peakshop.kit.batch_writer import WriterStats
from peakshop.state.cache import CacheStats


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


class Ready(msgspec.Struct):
    ready: bool
    database: bool
    hot_state: bool
