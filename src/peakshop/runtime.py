"""The running pieces of one process (database, hot state, coupon index, validation log) and
their start-up and shutdown order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from peakshop import migrate
from peakshop.analytics import tasks as analytics_tasks
from peakshop.config import Settings
from peakshop.coupons import repository as coupon_repository
from peakshop.coupons.index import CouponIndex
from peakshop.coupons.tasks import ValidationLogRecord, build_validation_log
from peakshop.db import Database
from peakshop.inventory.service import SaleDirectory
from peakshop.jobs import audit, notifications, reports
from peakshop.jobs import tasks as jobs_tasks
from peakshop.jobs.queue import JobQueue
from peakshop.jobs.worker import Worker
from peakshop.kit.batch_writer import BatchWriter
from peakshop.kit.foreground import ForegroundLoad, LoopSaturation, YieldToBursts
from peakshop.monitoring import metrics
from peakshop.monitoring.live import LiveEvents
from peakshop.monitoring.monitor import Monitor
from peakshop.orders import tasks as order_tasks
from peakshop.orders.payment import build_confirmation
from peakshop.orders.recording import FlashOrderRecorder
from peakshop.state import HotState, build_state
from peakshop.state.cache import Cache, build_cache
from peakshop.state.limiter import RateLimiter, build_limiter

log = structlog.get_logger(__name__)

StopStep = tuple[str, Callable[[], Awaitable[None]]]  # a shutdown step's name and call
STOP_STEP_SECONDS = 15.0  # the longest one shutdown step may take (the worker's drain: 10 s)


async def stop_step(
    name: str, step: Callable[[], Awaitable[None]], *, seconds: float | None = None
) -> bool:
    """Run one shutdown step for at most ``seconds``; False if it failed or did not finish.
    Waited for with ``asyncio.wait``, not a timeout around the await: cancelling an await of
    a task that ignores its cancellation would wait for that task all the same."""
    seconds = STOP_STEP_SECONDS if seconds is None else seconds
    task = asyncio.ensure_future(step())
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.error("shutdown_step_timed_out", step=name, seconds=seconds)
        return False
    error = "cancelled" if task.cancelled() else task.exception()
    if error is not None:
        log.error("shutdown_step_failed", step=name, error=repr(error))
        return False
    return True


class Runtime:
    def __init__(self, settings: Settings, *, role: str = "api") -> None:
        """``role``: "api" for a server process (it runs the monitor), "worker" for a
        `peakshop worker` process (it publishes live events, it has no monitor)."""
        self.settings = settings
        self.role = role
        # Orders placed per second (flash-sale winners, regular orders): the in-process
        # worker yields to a burst of them (kit/foreground.py).
        self.foreground = ForegroundLoad()
        # How late the event loop wakes: the worker's yielding and the monitor's lag read it.
        # Its probe runs in a serving process (started below).
        self.event_loop_probe = LoopSaturation()
        self.db = Database(settings)
        self.state: HotState = build_state(settings, self.db)
        # Routes call ``await runtime.limiter.check(<rule>, user_id=..., client_ip=...)``.
        self.limiter: RateLimiter = build_limiter(settings)
        # Built before the broadcast starts (it subscribes to the invalidation channel).
        self.cache: Cache = build_cache(settings, self.state.broadcast)
        self.coupon_index = CouponIndex(
            db=self.db,
            broadcast=self.state.broadcast,
            refresh_seconds=settings.coupon_index_refresh_seconds,
        )
        self.validation_log: BatchWriter[ValidationLogRecord] = build_validation_log(
            settings, self.db
        )
        self.sale_directory = SaleDirectory(self.db)
        self.flash_recorder = FlashOrderRecorder(self.db, load=self.foreground)
        self.payment = build_confirmation(settings)
        self.job_types = {
            job.name: job
            for job in [
                *order_tasks.job_types(settings),
                *audit.JOB_TYPES,
                *notifications.job_types(settings),
                *reports.job_types(settings),
            ]
        }
        self.worker: Worker | None = None
        self.unfinished_stop_steps: list[str] = []  # the shutdown's hung or failed steps
        # Live events (WebSocket) and the per-process monitor; built last: the monitor reads
        # the pieces above and subscribes to the broadcast before it starts.
        self.live = LiveEvents(settings, self.db)
        self.monitor = Monitor(self)
        self.started_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._counters_stale = False
        self._reported = (0, 0, 0, 0)

    async def start(self) -> None:
        if self.settings.should_migrate_on_start:
            await migrate.upgrade_async(self.settings)
        if self.db.is_sqlite:
            # The log file is not Alembic's (see Database): a new or removed one is made here.
            await self.db.run_log_write(coupon_repository.create_validation_log_table)
        await self.coupon_index.start()  # subscribes before the broadcast connects
        await self.state.start()
        await self.cache.start()
        if not await self.state.counters.is_loaded():
            await self.load_usage_counters()
        await order_tasks.restore_hot_sales(self, replace=False)
        self.validation_log.start()
        await self.live.start()
        if self.settings.works_queue_in_process:
            self.start_worker()
        if self.role == "api":
            await self.monitor.start()
        self._tasks = [
            asyncio.create_task(self._sync_metrics(), name="metrics-sync"),
            asyncio.create_task(self._reconcile_counters(), name="usage-counters-reconcile"),
        ]
        if self.role == "api":
            probe = self.event_loop_probe.probe_forever()
            self._tasks.append(asyncio.create_task(probe, name="event-loop-probe"))
        # The start-up heap (framework, SQLAlchemy, the coupon index) lives as long as the
        # process: move it out of the collector's view, or every full collection walks it again
        # (~30 ms with the event loop stopped, seen in the open-loop tail latency).
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(self.settings.gil_switch_interval_ms / 1000)
        log.info("peakshop_started", mode=self.settings.mode.value, coupons=len(self.coupon_index))

    @property
    def queue(self) -> JobQueue:
        return self.state.queue

    def start_worker(self, *, concurrency: int | None = None) -> Worker:
        """Work the queue and run the scheduled sweeps in this process."""
        self.worker = Worker(
            self,
            queue=self.state.queue,
            job_types=self.job_types,
            sweeps=[
                *jobs_tasks.SWEEPS,
                *order_tasks.sweeps(self.settings),
                *analytics_tasks.sweeps(self.settings),
            ],
            concurrency=concurrency or self.settings.worker_concurrency,
            lease_seconds=self.settings.job_lease_seconds,
            adopt_after_seconds=self.settings.job_adopt_after_seconds,
            # Only a serving process has requests to yield to.
            yield_to=YieldToBursts(
                self.foreground,
                above_rate=self.settings.worker_yield_above_order_rate,
                max_seconds=self.settings.worker_max_yield_seconds,
                rest_ratio=self.settings.worker_rest_ratio,
                loop=self.event_loop_probe,
            )
            if self.role == "api" and self.settings.worker_yield_above_order_rate > 0
            else None,
        )
        self.worker.start()
        return self.worker

    async def audit(self, *, action: str, subject: str, before: Any, after: Any) -> None:
        """Record an admin change in the audit trail (by a background job)."""
        await audit.enqueue(self, action=action, subject=subject, before=before, after=after)

    def mark_usage_counters_stale(self) -> None:
        """The coupon usage counters are rebuilt from the record on the next check."""
        self._counters_stale = True

    async def load_usage_counters(self) -> None:
        """Rebuild the hot usage counters from the system of record."""
        async with self.db.read() as conn:
            totals = await coupon_repository.usage_totals(conn)
            per_user = await coupon_repository.per_user_usage(conn)
        await self.state.counters.load(totals=totals, per_user=per_user)

    async def stop(self) -> None:
        """Graceful shutdown: the server has stopped accepting and drained requests by now.
        Each step gets ``STOP_STEP_SECONDS``: one that hangs (a task that lost its
        cancellation, a peer that never answers) is logged by name and left behind, and the
        steps after it still run, so the process always gets to close its database."""
        steps: list[StopStep] = [
            ("monitor", self.monitor.stop),
            ("background tasks", self._stop_tasks),
        ]
        if self.worker is not None:
            steps.append(("worker", self.worker.stop))
        steps += [
            ("flash order recorder", self.flash_recorder.close),
            ("live events", self.live.stop),
            ("validation log", self.validation_log.close),
        ]
        await self._stop_steps(steps)
        self.sync_metrics()
        await self._stop_steps(
            [
                ("coupon index", self.coupon_index.close),
                ("rate limiter", self.limiter.close),
                ("cache", self.cache.close),
                ("hot state", self.state.close),
                ("database", self.db.dispose),
            ]
        )
        stats = self.validation_log.stats()
        metrics.forget_process()
        log.info("peakshop_stopped", **msgspec.structs.asdict(stats))

    async def _stop_steps(self, steps: list[StopStep]) -> None:
        for name, step in steps:
            if not await stop_step(name, step):
                self.unfinished_stop_steps.append(name)

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def record_coupon_use(self, coupon_id: int, user_id: str) -> None:
        """Update the hot counters after a committed redemption. The redemption stands even
        if this fails (the database is the system of record); the counters are then rebuilt."""
        try:
            await self.state.counters.record(coupon_id, user_id)
        except Exception:
            log.exception("usage_counter_update_failed", coupon_id=coupon_id)
            self._counters_stale = True

    async def _reconcile_counters(self) -> None:
        """Rebuild the hot counters when they are known to be stale or were lost (a Redis
        restart empties them); checked every ``coupon_index_refresh_seconds``."""
        while True:
            await asyncio.sleep(self.settings.coupon_index_refresh_seconds)
            try:
                if self._counters_stale or not await self.state.counters.is_loaded():
                    await self.load_usage_counters()
                    self._counters_stale = False
                    log.warning("usage_counters_rebuilt")
            except Exception:
                log.exception("usage_counter_reconcile_failed")

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def sync_metrics(self) -> None:
        """Copy the validation log's counters into Prometheus (works in multiprocess mode,
        unlike a scrape-time collector)."""
        stats = self.validation_log.stats()
        metrics.VALIDATION_LOG_QUEUE.set(stats.pending)
        current = (stats.written, stats.dropped, stats.dead_lettered, stats.flush_failures)
        written, dropped, dead, failures = (
            now - before for now, before in zip(current, self._reported, strict=True)
        )
        if written:
            metrics.VALIDATION_LOG_RECORDS.labels("written").inc(written)
        if dropped:
            metrics.VALIDATION_LOG_RECORDS.labels("dropped").inc(dropped)
        if dead:
            metrics.VALIDATION_LOG_RECORDS.labels("dead_lettered").inc(dead)
        if failures:
            metrics.VALIDATION_LOG_FLUSH_FAILURES.inc(failures)
        self._reported = current

    async def _sync_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sync_metrics()
