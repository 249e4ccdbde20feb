"""The per-process monitor: every second a snapshot of this server process (requests, errors,
latency percentiles, queue, validation log, cache, memory, event-loop lag, open flash sales,
alerts), kept for an hour at one-second resolution, checked against the alert thresholds and
published as a ``metrics-update`` live event; beside it, the event-loop lag (sampled by the
Runtime's probe, kit/foreground.py) and the memory trend (leak suspicion).

Built by the Runtime and started with it in every server process; in scaled mode each
process has its own (its snapshot carries its pid). The request numbers come from the
middleware's own per-second counters (monitoring/requests.py), not from Prometheus. The
queue and flash-sale numbers are read from the system of record each second (a few indexed
counts) and are the same in every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import tracemalloc
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psutil
import structlog

from peakshop.inventory import repository as inventory_repository
from peakshop.jobs import repository as jobs_repository
from peakshop.monitoring import metrics
from peakshop.monitoring.alerts import Alerts, Severity
from peakshop.monitoring.history import History
from peakshop.monitoring.memory import MemoryTrend
from peakshop.monitoring.requests import RequestStats
from peakshop.monitoring.schemas import (
    AlertEvent,
    LatencyMs,
    MemoryHealth,
    QueueNumbers,
    SaleStock,
    Snapshot,
)

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

INTERVAL = 1.0  # seconds between snapshots
SAMPLE_TIMEOUT = 0.8  # the database sampling of one tick gives up after this
BROADCAST_CHANNEL = "monitoring"
MIB = 1024 * 1024


class Monitor:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.pid = os.getpid()
        self.requests = RequestStats()  # fed by the HTTP middleware
        self.history = History(self.pid)
        self.alerts = Alerts(pid=self.pid, for_seconds=settings.alert_for_seconds)
        self.memory = MemoryTrend(
            window=settings.memory_window_seconds,
            interval=settings.memory_sample_seconds,
            slope_per_minute=settings.memory_leak_slope_mb_per_minute * MIB,
            min_r2=settings.memory_leak_min_r2,
            min_bytes=settings.memory_leak_min_rss_mb * MIB,
        )
        self._process = psutil.Process(self.pid)
        self._origin = f"{self.pid}-{id(self):x}"
        self._tasks: list[asyncio.Task[None]] = []
        self._last_tick = time.monotonic()
        self._lag_max = 0.0
        self._queue = QueueNumbers(depth=0, in_flight=0, dead_letters=0)
        self._sales: list[SaleStock] = []
        self._cache_seen = (0, 0)  # (lookups, loads) at the last tick
        self._gc_seen = [(0, 0)] * len(gc.get_stats())
        self._traced = False
        self._failure_logged_at = 0.0
        self.latest: tuple[datetime, Snapshot] = (datetime.now(UTC), self._empty_snapshot())
        # Subscribed here, not in start(): the broadcast only listens to the channels
        # subscribed before it starts (a reset through any process resets every process).
        runtime.state.broadcast.subscribe(BROADCAST_CHANNEL, self._on_broadcast)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.memory_tracemalloc and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._traced = True
        self._cache_seen = self._cache_counts()
        self._gc_seen = [(g["collections"], g["collected"]) for g in gc.get_stats()]
        self._last_tick = time.monotonic()
        self._sample_memory()
        # The memory trend stays with monitoring off: /health shows it, and a sample every
        # memory_sample_seconds costs nothing measurable.
        self._tasks = [asyncio.create_task(self._memory_forever(), name="monitor-memory")]
        if self.settings.monitoring_enabled:
            self._tasks += [
                asyncio.create_task(self._tick_forever(), name="monitor-tick"),
            ]
            # The Runtime's event-loop probe (kit/foreground.py) reports each sample here.
            self.runtime.event_loop_probe.listeners.append(self._record_lag)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.runtime.event_loop_probe.listeners.remove(self._record_lag)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._traced:
            tracemalloc.stop()
            self._traced = False
        metrics.SALE_STOCK.sales = []

    # --- reading ---------------------------------------------------------------------------------

    def since(self, seconds: float) -> list[tuple[float, Snapshot]]:
        return self.history.since(time.time() - seconds)

    def memory_health(self) -> MemoryHealth:
        trend = self.memory.trend()
        return MemoryHealth(
            rss_bytes=self.memory.last_bytes,
            heap_bytes=self.memory.heap_bytes,
            slope_bytes_per_minute=None if trend is None else round(trend.slope_per_minute, 1),
            r2=None if trend is None else round(trend.r2, 4),
            samples=0 if trend is None else trend.samples,
            window_seconds=self.memory.window,
            suspected=self.alerts.is_firing("memory_leak_suspected"),
        )

    async def reset(self, *, everywhere: bool) -> None:
        """Clear this monitor's history, its per-second counters, the recent alerts and the
        memory trend (and with ``everywhere`` every other server process's too). Prometheus'
        counters are monotonic and stay as they are."""
        self.clear()
        if everywhere:
            try:
                await self.runtime.state.broadcast.publish(
                    BROADCAST_CHANNEL, f"reset:{self._origin}"
                )
            except Exception:
                log.exception("monitor_reset_broadcast_failed")

    def clear(self) -> None:
        self.history.clear()
        self.requests.rotate()
        self._last_tick = time.monotonic()
        self._lag_max = 0.0
        self._cache_seen = self._cache_counts()
        self.alerts.reset()
        self.memory.clear()
        self.latest = (datetime.now(UTC), self._empty_snapshot())
        log.info("monitor_reset")

    async def _on_broadcast(self, message: str) -> None:
        if message.startswith("reset:") and message != f"reset:{self._origin}":
            self.clear()

    # --- the tick --------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + INTERVAL
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += INTERVAL
            if next_at < loop.time():  # the loop was stalled: skip the missed ticks
                next_at = loop.time() + INTERVAL
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log_failure("monitor_tick_failed")

    async def tick(self) -> Snapshot:
        """Take the snapshot of the second that just ended, keep it, check the alerts,
        publish it. Runs every second; callable directly (tests)."""
        ticked = time.monotonic()
        elapsed = max(ticked - self._last_tick, 1e-6)
        self._last_tick = ticked
        second = self.requests.rotate()
        lag, self._lag_max = self._lag_max, 0.0
        at = datetime.now(UTC)
        rss = self._process.memory_info().rss
        await self._sample_database()
        requests = second.requests
        error_rate = second.server_errors / requests if requests else 0.0
        client_error_rate = second.client_errors / requests if requests else 0.0
        p50, p95, p99 = (_ms(second.percentile(q)) for q in (0.50, 0.95, 0.99))
        lookups, loads = self._cache_counts()
        new_lookups = lookups - self._cache_seen[0]
        new_loads = loads - self._cache_seen[1]
        self._cache_seen = (lookups, loads)
        hit_rate = round((new_lookups - new_loads) / new_lookups, 4) if new_lookups > 0 else None

        events = self._evaluate_alerts(
            at=at, requests=requests, error_rate=error_rate, p99=p99, rss=rss
        )
        snapshot = Snapshot(
            pid=self.pid,
            requests_per_second=round(requests / elapsed, 3),
            error_rate=round(error_rate, 4),
            latency_ms=LatencyMs(p50=p50, p95=p95, p99=p99),
            queue=self._queue,
            validation_log_queue=self.runtime.validation_log.pending,
            cache_hit_rate=hit_rate,
            rss_bytes=rss,
            event_loop_lag_ms=round(lag * 1000, 3),
            sales=self._sales,
            alerts_active=self.alerts.active_count,
            client_error_rate=round(client_error_rate, 4),
        )
        self.history.append(at.timestamp(), snapshot)
        self.latest = (at, snapshot)
        self._export(rss)
        live = self.runtime.live
        for event in events:
            live.publish("system-alert", event, at)
        live.publish("metrics-update", snapshot, at)
        return snapshot

    async def _sample_database(self) -> None:
        """Queue numbers and open sales; on failure the last values stay (and it is logged)."""
        runtime = self.runtime
        try:
            async with asyncio.timeout(SAMPLE_TIMEOUT):
                depth = await runtime.queue.depth()
                async with runtime.db.read() as conn:
                    in_flight, dead = await jobs_repository.count_in_flight_and_dead(conn)
                    sales = await inventory_repository.active_sale_stock(
                        conn, now=datetime.now(UTC)
                    )
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log_failure("monitor_sample_failed")
            return
        self._queue = QueueNumbers(depth=depth, in_flight=in_flight, dead_letters=dead)
        fresh = [SaleStock(*row) for row in sales]
        if fresh != self._sales:
            self._sales = fresh

    def _evaluate_alerts(
        self, *, at: datetime, requests: int, error_rate: float, p99: float | None, rss: int
    ) -> list[AlertEvent]:
        s = self.settings
        growth = self._queue.dead_letters - self.history.int_ago(
            "dead_letters", 60, default=self._queue.dead_letters
        )
        rules: list[tuple[str, Severity, bool, float, float, str]] = [
            (
                "high_error_rate",
                "critical",
                requests > 0 and error_rate > s.alert_error_rate,
                round(error_rate, 4),
                s.alert_error_rate,
                f"{error_rate:.1%} of the requests answered 5xx in the last second",
            ),
            (
                "high_latency_p99",
                "warning",
                p99 is not None and p99 > s.alert_p99_ms,
                p99 or 0.0,
                s.alert_p99_ms,
                f"P99 latency {p99 or 0:.1f} ms in the last second",
            ),
            (
                "queue_backlog",
                "warning",
                self._queue.depth > s.alert_queue_depth,
                float(self._queue.depth),
                float(s.alert_queue_depth),
                f"{self._queue.depth} job messages waiting",
            ),
            (
                "dead_letters_growing",
                "critical",
                growth > s.alert_dead_letters_per_minute,
                float(growth),
                float(s.alert_dead_letters_per_minute),
                f"{growth} jobs dead-lettered in the last minute",
            ),
            (
                "high_memory",
                "warning",
                rss > s.alert_rss_mb * MIB,
                float(rss),
                s.alert_rss_mb * MIB,
                f"resident memory {rss / MIB:.0f} MiB",
            ),
        ]
        events = []
        for name, severity, over, value, threshold, message in rules:
            event = self.alerts.evaluate(
                name,
                over=over,
                value=value,
                threshold=threshold,
                severity=severity,
                message=message,
                at=at,
            )
            if event is not None:
                _log_transition(event)
                events.append(event)
        return events

    def _export(self, rss: int) -> None:
        metrics.PROCESS_RSS.set(rss)
        metrics.QUEUE_DEPTH.set(self._queue.depth)
        metrics.DEAD_LETTERS.set(self._queue.dead_letters)
        metrics.SALE_STOCK.sales = [
            (s.sale_id, s.remaining, s.reserved, s.sold) for s in self._sales
        ]
        for generation, stats in enumerate(gc.get_stats()):
            seen_collections, seen_collected = self._gc_seen[generation]
            label = str(generation)
            if stats["collections"] > seen_collections:
                metrics.GC_COLLECTIONS.labels(label).inc(stats["collections"] - seen_collections)
            if stats["collected"] > seen_collected:
                metrics.GC_COLLECTED.labels(label).inc(stats["collected"] - seen_collected)
            self._gc_seen[generation] = (stats["collections"], stats["collected"])

    def _cache_counts(self) -> tuple[int, int]:
        stats = self.runtime.cache.stats()
        return stats.l1.hits + stats.l1.misses, stats.loads

    def _empty_snapshot(self) -> Snapshot:
        return Snapshot(
            pid=self.pid,
            requests_per_second=0.0,
            error_rate=0.0,
            latency_ms=LatencyMs(p50=None, p95=None, p99=None),
            queue=self._queue,
            validation_log_queue=0,
            cache_hit_rate=None,
            rss_bytes=self._process.memory_info().rss,
            event_loop_lag_ms=0.0,
            sales=self._sales,
            alerts_active=self.alerts.active_count,
            client_error_rate=0.0,
        )

    # --- event-loop lag and memory ------------------------------------------------------------

    def _record_lag(self, lag: float) -> None:
        """One sample of how late the event loop woke a 50 ms sleep: time it spent on other
        work without yielding."""
        if lag > self._lag_max:
            self._lag_max = lag
        metrics.EVENT_LOOP_LAG.set(lag)
        metrics.EVENT_LOOP_LAG_HISTOGRAM.observe(lag)

    async def _memory_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.memory_sample_seconds)
            try:
                event = self._sample_memory()
            except Exception:
                self._log_failure("memory_sample_failed")
                continue
            if event is not None:
                self.runtime.live.publish("system-alert", event)

    def _sample_memory(self) -> AlertEvent | None:
        rss = self._process.memory_info().rss
        heap = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        self.memory.add(time.monotonic(), rss, heap)
        trend = self.memory.trend()
        suspected = self.memory.suspected(trend)
        slope = 0.0 if trend is None else trend.slope_per_minute
        event = self.alerts.evaluate(
            "memory_leak_suspected",
            over=suspected,
            value=round(slope, 1),
            threshold=self.memory.slope_per_minute,
            severity="warning",
            message=(
                f"RSS {rss / MIB:.0f} MiB, growing {slope / MIB:.2f} MiB/min steadily "
                f"(R² {0.0 if trend is None else trend.r2:.2f}) over the last "
                f"{self.memory.window:.0f} s"
            ),
            at=datetime.now(UTC),
            needed=1,  # the trend over the window is the smoothing already
        )
        if event is not None:
            _log_transition(event)
        return event

    def _log_failure(self, event: str) -> None:
        now = time.monotonic()
        if now - self._failure_logged_at >= 10.0:  # at most one line every 10 s
            self._failure_logged_at = now
            log.exception(event)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _log_transition(event: AlertEvent) -> None:
    if event.state == "firing":
        log.warning("alert_firing", alert=event.name, value=event.value, message=event.message)
    else:
        log.info("alert_resolved", alert=event.name, value=event.value)
