"""The worker: takes deliveries from the queue, runs each job type's handler with its retry
policy, buries exhausted jobs as dead letters (running the type's compensation), and runs
the scheduled sweeps of every domain.

Delivery is at least once: a worker killed mid-job leaves the job 'processing' with a lease;
when the lease runs out the job is delivered again. Handlers are therefore idempotent, and
``start_job`` lets only one attempt of a job run at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from peakshop.jobs import repository
from peakshop.jobs.queue import Delivery, JobMessage, JobQueue
from peakshop.jobs.retry import RetryPolicy
from peakshop.kit.clock import utcnow
from peakshop.kit.foreground import YieldToBursts
from peakshop.monitoring import metrics

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

log = structlog.get_logger(__name__)

RECEIVE_BATCH = 100  # deliveries taken at once; a batch-capable type handles them together
LEAVE_TO_WRITER_SECONDS = 0.5  # a job whose row is not written yet comes back this much later

# The name of the tasks that run jobs (a job's code can tell it runs in the worker).
JOB_TASK_NAME = "worker-job"

AfterCommit = Callable[[], Awaitable[None]]


class JobContext:
    """What a handler gets: the runtime, the attempt, and hooks that run after the outcome
    is committed (e.g. releasing hot counters once the system of record has released)."""

    def __init__(self, runtime: Runtime, message: JobMessage, attempt: int) -> None:
        self.runtime = runtime
        self.message = message
        self.attempt = attempt
        self._after_commit: list[AfterCommit] = []

    def after_commit(self, hook: AfterCommit) -> None:
        self._after_commit.append(hook)

    def discard_hooks(self) -> None:
        self._after_commit.clear()

    async def run_after_commit(self) -> None:
        for hook in self._after_commit:
            try:
                await hook()
            except Exception:  # the outcome stands; hot state is reconciled from the record
                log.exception("after_commit_hook_failed", job=self.message.id)
        self._after_commit.clear()


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]
# A whole batch at once: one outcome per job, None for done or the exception of a failed one.
BatchHandler = Callable[[list[JobContext], list[dict[str, Any]]], Awaitable[list[Exception | None]]]
DeadHandler = Callable[[JobContext, dict[str, Any], str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class JobType:
    name: str
    handle: Handler
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Compensation when the last attempt failed; runs once, before the job is buried.
    on_dead: DeadHandler | None = None
    # Optional: many jobs of this type in a few transactions instead of a few each.
    handle_batch: BatchHandler | None = None


@dataclass(frozen=True, kw_only=True)
class Sweep:
    name: str
    every: float  # seconds
    run: Callable[[Runtime], Awaitable[None]]


def new_message(
    job_type: JobType, *, job_id: str, payload: dict[str, Any], subject: str | None = None
) -> JobMessage:
    return JobMessage(
        id=job_id,
        name=job_type.name,
        payload=msgspec.json.encode(payload).decode(),
        max_attempts=job_type.retry.max_attempts,
        subject=subject,
        enqueued_at=time.time(),
    )


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        queue: JobQueue,
        job_types: dict[str, JobType],
        sweeps: list[Sweep],
        concurrency: int,
        lease_seconds: float,
        adopt_after_seconds: float = 5.0,
        yield_to: YieldToBursts | None = None,
    ) -> None:
        self._runtime = runtime
        self._queue = queue
        self._types = job_types
        self._sweeps = sweeps
        self._lease = lease_seconds
        self._adopt_after = adopt_after_seconds
        self._yield_to = yield_to
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._consumer = consumer_name()
        self._running: set[asyncio.Task[None]] = set()
        self._batches: set[asyncio.Task[None]] = set()  # the running batches among them
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._receive_forever(), name="worker-receive")]
        self._tasks += [
            asyncio.create_task(self._sweep_forever(sweep), name=f"sweep-{sweep.name}")
            for sweep in self._sweeps
        ]

    async def stop(self, *, drain_seconds: float = 10.0) -> None:
        """Stop taking deliveries, let running attempts finish (up to ``drain_seconds``).
        An attempt cut off here is delivered again after its lease: nothing is lost."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._running:
            await asyncio.wait(self._running, timeout=drain_seconds)
        for task in self._running:
            task.cancel()

    async def _receive_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                # Wait for a free slot first: a delivery waiting in this process's memory
                # would only age towards its lease.
                await self._has_free_slot()
                if self._yield_to is not None:
                    await self._yield_to.wait()
                deliveries = await self._queue.receive(
                    consumer=self._consumer, count=RECEIVE_BATCH, wait=1.0
                )
                if deliveries:
                    youngest = max(d.message.enqueued_at for d in deliveries)
                    hold = self._queue.settle_seconds - (time.time() - youngest)
                    if hold > 0:
                        await asyncio.sleep(hold)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue_receive_failed")
                await asyncio.sleep(1.0)
                continue
            batches: dict[str, list[Delivery]] = {}
            for delivery in deliveries:
                job_type = self._types.get(delivery.message.name)
                if job_type is not None and job_type.handle_batch is not None:
                    batches.setdefault(job_type.name, []).append(delivery)
                else:
                    await self._spawn(functools.partial(self.process, delivery))
            for name, batch in batches.items():
                await self._make_way_for_requests()
                await self._spawn(
                    functools.partial(self.process_batch, self._types[name], batch), batch=True
                )

    async def _make_way_for_requests(self) -> None:
        """Fewer batches at a time beside the requests (kit/foreground.py): 16 of them at
        once made the admissions' tail. Single jobs (a report, an email) keep every slot, so
        a long one never holds the batches up."""
        if self._yield_to is None:
            return
        while len(self._batches) >= self._yield_to.concurrency(self._concurrency):
            await asyncio.wait(set(self._batches), return_when=asyncio.FIRST_COMPLETED)

    async def _has_free_slot(self) -> None:
        await self._slots.acquire()
        self._slots.release()

    async def _spawn(self, work: Callable[[], Awaitable[None]], *, batch: bool = False) -> None:
        """Run ``work`` (one job, or one batch of a batch-capable type) in a slot."""
        await self._slots.acquire()
        task = asyncio.create_task(self._run(work), name=JOB_TASK_NAME)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        if batch:
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception:
            # The deliveries stay unacked: they come back after the lease.
            log.exception("job_processing_crashed")
        finally:
            self._slots.release()

    async def process_batch(self, job_type: JobType, deliveries: list[Delivery]) -> None:
        began = time.perf_counter()
        try:
            await self._process_batch(job_type, deliveries)
        finally:
            if self._yield_to is not None:  # holding its slot: kit/foreground.py says why
                await self._yield_to.rest(time.perf_counter() - began)

    async def _process_batch(self, job_type: JobType, deliveries: list[Delivery]) -> None:
        assert job_type.handle_batch is not None
        db = self._runtime.db
        attempts = await self._start(deliveries)
        started = time.perf_counter()
        todo = [
            (d, JobContext(self._runtime, d.message, attempts[d.message.id]))
            for d in deliveries
            if d.message.id in attempts
        ]
        if not todo:
            return
        metrics.JOBS_IN_FLIGHT.inc(len(todo))
        try:
            contexts = [context for _, context in todo]
            payloads = [msgspec.json.decode(d.message.payload) for d, _ in todo]
            try:
                outcomes = await job_type.handle_batch(contexts, payloads)
            except Exception as exc:
                outcomes = [exc] * len(todo)
            done = [
                (d, c) for (d, c), outcome in zip(todo, outcomes, strict=True) if outcome is None
            ]
            if done:
                await db.run_write(
                    functools.partial(
                        repository.finish_jobs,
                        job_ids=[d.message.id for d, _ in done],
                        now=utcnow(),
                    ),
                    background=True,
                )
                for _, context in done:
                    await context.run_after_commit()
                await self._queue.ack_many([delivery for delivery, _ in done])
                metrics.JOBS_PROCESSED.labels(job_type.name, "done").inc(len(done))
            for (delivery, context), outcome in zip(todo, outcomes, strict=True):
                if outcome is not None:
                    await self._failed(delivery, job_type, context, outcome)
        finally:
            metrics.JOBS_IN_FLIGHT.dec(len(todo))
            elapsed = time.perf_counter() - started
            seconds = metrics.JOB_SECONDS.labels(job_type.name)
            for _ in todo:
                seconds.observe(elapsed)

    async def _start(self, deliveries: list[Delivery]) -> dict[str, int]:
        """Claim the deliveries' jobs: their attempt numbers. The others are acked (done,
        dead, not due yet, or held by another worker) or, if their row is not written yet,
        handed back to the queue for a moment."""
        epoch = time.time()
        started = await self._runtime.db.run_write(
            functools.partial(
                repository.start_jobs,
                messages=[d.message for d in deliveries],
                now=utcnow(),
                epoch=epoch,
                lease=self._lease,
                adopt_after=self._adopt_after,
            ),
            background=True,
        )
        too_early = set(started.too_early)
        skipped = []
        later = []
        for delivery in deliveries:
            job_id = delivery.message.id
            if job_id in too_early:
                later.append(delivery)
            elif job_id in started.held:
                # Held: by a live worker (the message came twice) or a dead one whose lease
                # has not quite run out. Look again when it has: acking here would leave a
                # dead worker's job to the much slower republish sweep.
                at = started.held[job_id] + LEAVE_TO_WRITER_SECONDS
                await self._queue.retry_many([delivery], at=at)
            elif job_id not in started.claimed:
                skipped.append(delivery)
        if later:
            await self._queue.retry_many(later, at=epoch + LEAVE_TO_WRITER_SECONDS)
        if skipped:
            for delivery in skipped:
                metrics.JOBS_PROCESSED.labels(delivery.message.name, "skipped").inc()
            await self._queue.ack_many(skipped)
        return started.claimed

    async def process(self, delivery: Delivery) -> None:
        message = delivery.message
        job_type = self._types.get(message.name)
        db = self._runtime.db
        attempt = (await self._start([delivery])).get(message.id)
        if attempt is None:
            return
        started = time.perf_counter()
        metrics.JOBS_IN_FLIGHT.inc()
        context = JobContext(self._runtime, message, attempt)
        try:
            if job_type is None:
                raise LookupError(f"no handler for job type {message.name!r}")
            payload = msgspec.json.decode(message.payload)
            await job_type.handle(context, payload)
        except Exception as exc:
            await self._failed(delivery, job_type, context, exc)
        else:
            async with db.write() as conn:
                await repository.finish_job(conn, message.id, now=utcnow())
            await context.run_after_commit()
            await self._queue.ack(delivery)
            metrics.JOBS_PROCESSED.labels(message.name, "done").inc()
        finally:
            metrics.JOBS_IN_FLIGHT.dec()
            metrics.JOB_SECONDS.labels(message.name).observe(time.perf_counter() - started)

    async def _failed(
        self, delivery: Delivery, job_type: JobType | None, context: JobContext, exc: Exception
    ) -> None:
        message = delivery.message
        error = f"{type(exc).__name__}: {exc}"
        policy = job_type.retry if job_type is not None else RetryPolicy(max_attempts=1)
        if not policy.exhausted(context.attempt):
            retry_at = time.time() + policy.delay(context.attempt)
            async with self._runtime.db.write() as conn:
                await repository.fail_job(
                    conn, message.id, error=error, retry_at=retry_at, now=utcnow()
                )
            await self._queue.retry_later(delivery, at=retry_at)
            metrics.JOBS_PROCESSED.labels(message.name, "retry").inc()
            log.warning("job_attempt_failed", job=message.id, attempt=context.attempt, error=error)
            return
        # Out of attempts: compensate, then bury. If the compensation itself fails, the job
        # stays 'processing' and comes back after its lease to be compensated again.
        context.discard_hooks()  # those of the failed attempt never run
        if job_type is not None and job_type.on_dead is not None:
            await job_type.on_dead(context, msgspec.json.decode(message.payload), error)
        async with self._runtime.db.write() as conn:
            await repository.bury_job(conn, message.id, error=error, now=utcnow())
        await context.run_after_commit()
        await self._queue.ack(delivery)
        metrics.JOBS_PROCESSED.labels(message.name, "dead").inc()
        log.error(
            "job_dead_lettered",
            job=message.id,
            name=message.name,
            attempts=context.attempt,
            error=error,
            traceback="".join(traceback.format_exception(exc, limit=5)),
        )

    async def _sweep_forever(self, sweep: Sweep) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(sweep.every)
            try:
                await sweep.run(self._runtime)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep_failed", sweep=sweep.name)
