"""This process's HTTP requests, second by second, for the monitor.

The middleware calls ``record`` once per request: a bisect over the bucket bounds (in C) and
three increments, no allocation. Latencies go into fixed log buckets 5% apart from 10 us to
100 s (331 counters), so a percentile read from them is within 2.5% of the true value (the
bucket's geometric middle is reported), however many requests the second held. The monitor
takes the second's numbers with ``rotate`` and the counters start again from zero.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import msgspec

_LOWEST = 1e-5  # seconds; faster requests are counted in the first bucket
_RATIO = 1.05
_HIGHEST = 100.0  # seconds; slower ones in the last
BOUNDS: tuple[float, ...] = tuple(
    _LOWEST * _RATIO**i for i in range(math.ceil(math.log(_HIGHEST / _LOWEST, _RATIO)) + 1)
)
_MIDDLES: tuple[float, ...] = (
    BOUNDS[0],
    *(math.sqrt(BOUNDS[i - 1] * BOUNDS[i]) for i in range(1, len(BOUNDS))),
    BOUNDS[-1],
)


class SecondStats(msgspec.Struct, frozen=True):
    """One interval's requests: counts by class and the latency histogram (seconds)."""

    requests: int
    client_errors: int  # 4xx
    server_errors: int  # 5xx
    buckets: list[int]  # len(BOUNDS) + 1 counters, see BOUNDS

    def percentile(self, share: float) -> float | None:
        """The latency (seconds) under which ``share`` of the requests answered; None
        without requests."""
        if self.requests <= 0:
            return None
        rank = max(1, math.ceil(share * self.requests))
        seen = 0
        for index, count in enumerate(self.buckets):
            seen += count
            if seen >= rank:
                return _MIDDLES[index]
        return _MIDDLES[-1]


class RequestStats:
    """Counters of the current interval; ``record`` is the hot path."""

    __slots__ = ("_buckets", "client_errors", "requests", "server_errors")

    def __init__(self) -> None:
        self.requests = 0
        self.client_errors = 0
        self.server_errors = 0
        self._buckets = [0] * (len(BOUNDS) + 1)

    def record(self, seconds: float, status: int) -> None:
        self.requests += 1
        if status >= 400:
            if status >= 500:
                self.server_errors += 1
            else:
                self.client_errors += 1
        self._buckets[bisect_left(BOUNDS, seconds)] += 1

    def rotate(self) -> SecondStats:
        """The numbers since the last rotation; counting starts again from zero."""
        taken = SecondStats(self.requests, self.client_errors, self.server_errors, self._buckets)
        self.requests = self.client_errors = self.server_errors = 0
        self._buckets = [0] * (len(BOUNDS) + 1)
        return taken
