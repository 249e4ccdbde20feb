"""Memory trend of the process: RSS (and optionally the traced Python heap) sampled every few
seconds, and the least-squares line through the samples of the window.

A leak is suspected when memory climbs steadily: the slope is above the threshold, the line
explains the samples well (R² high: a steady climb, not a one-off jump or a sawtooth of
allocations and frees), and RSS is past a floor (a process warming its caches at start
climbs too, from low). The monitor raises the ``memory_leak_suspected`` alert from it.
"""

from __future__ import annotations

import math
from collections import deque

import msgspec


class Trend(msgspec.Struct, frozen=True):
    slope_per_second: float  # bytes per second
    r2: float
    samples: int

    @property
    def slope_per_minute(self) -> float:
        return self.slope_per_second * 60.0


def least_squares(points: list[tuple[float, float]]) -> Trend | None:
    """Slope and coefficient of determination of y over x; None with fewer than 3 points or
    no spread in x. A flat series (no variance in y) has R² 0: there is no trend to explain."""
    n = len(points)
    if n < 3:
        return None
    mean_x = math.fsum(x for x, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in points)
    if sxx <= 0:
        return None
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in points)
    syy = math.fsum((y - mean_y) ** 2 for _, y in points)
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return Trend(slope_per_second=slope, r2=r2, samples=n)


class MemoryTrend:
    """The samples of the last ``window`` seconds and the leak verdict over them."""

    def __init__(
        self,
        *,
        window: float,
        interval: float,
        slope_per_minute: float,
        min_r2: float,
        min_bytes: float,
    ) -> None:
        self.window = window
        self.interval = interval
        self.slope_per_minute = slope_per_minute
        self.min_r2 = min_r2
        self.min_bytes = min_bytes
        # Half the window must be covered before anything is suspected: a few samples at
        # start-up always climb.
        self.min_samples = max(3, math.ceil(0.5 * window / interval))
        self._points: deque[tuple[float, float]] = deque()
        self.last_bytes = 0
        self.heap_bytes: int | None = None

    def add(self, at: float, rss: int, heap: int | None = None) -> None:
        self._points.append((at, float(rss)))
        self.last_bytes = rss
        self.heap_bytes = heap
        while self._points and self._points[0][0] < at - self.window:
            self._points.popleft()

    def clear(self) -> None:
        self._points.clear()

    def trend(self) -> Trend | None:
        return least_squares(list(self._points))

    def suspected(self, trend: Trend | None = None) -> bool:
        trend = trend if trend is not None else self.trend()
        return (
            trend is not None
            and trend.samples >= self.min_samples
            and trend.slope_per_minute > self.slope_per_minute
            and trend.r2 >= self.min_r2
            and self.last_bytes > self.min_bytes
        )
