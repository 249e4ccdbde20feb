"""A bounded in-memory buffer flushed in batches by a background task.

Written by hand because no maintained library does this small thing with these guarantees:
``emit`` never blocks or awaits (the hot path calls it), overflow is dropped and counted,
failed flushes are retried with backoff and then dead-lettered, and
``emitted == written + dead_lettered + dropped + pending`` holds at every moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec
import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")
MAX_BATCH = 5_000  # one INSERT never carries more than this many rows


class WriterStats(msgspec.Struct):
    emitted: int
    written: int
    dropped: int
    dead_lettered: int
    pending: int
    flush_failures: int
    balanced: bool  # emitted == written + dead_lettered + dropped + pending


class BatchWriter(Generic[T]):
    def __init__(
        self,
        *,
        name: str,
        write: Callable[[list[T]], Awaitable[None]],
        dead_letter: Callable[[list[T]], Awaitable[None]],
        batch_size: int,
        flush_interval: float,
        max_buffer: int,
        attempts: int,
        retry_base_delay: float,
    ) -> None:
        self.name = name
        self._write = write
        self._dead_letter = dead_letter
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.attempts = attempts
        self.retry_base_delay = retry_base_delay
        self._buffer: list[T] = []
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self.emitted = 0
        self.written = 0
        self.dropped = 0
        self.dead_lettered = 0
        self.flush_failures = 0

    @property
    def pending(self) -> int:
        return len(self._buffer) + self._in_flight

    def emit(self, record: T) -> bool:
        """Buffer one record; never blocks. Returns False when the record was dropped."""
        self.emitted += 1
        if len(self._buffer) + self._in_flight >= self.max_buffer or self._closed:
            self.dropped += 1
            return False
        self._buffer.append(record)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()
        return True

    def stats(self) -> WriterStats:
        pending = self.pending
        return WriterStats(
            emitted=self.emitted,
            written=self.written,
            dropped=self.dropped,
            dead_lettered=self.dead_lettered,
            pending=pending,
            flush_failures=self.flush_failures,
            balanced=self.emitted == self.written + self.dead_lettered + self.dropped + pending,
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batch-writer-{self.name}")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered now, in batches of at most ``MAX_BATCH``."""
        while self._buffer:
            batch = self._buffer[:MAX_BATCH]
            del self._buffer[:MAX_BATCH]
            self._in_flight += len(batch)
            try:
                await self._flush_batch(batch)
            except asyncio.CancelledError:
                self._buffer[:0] = batch  # not written: keep it for the final flush
                raise
            finally:
                self._in_flight -= len(batch)

    async def _flush_batch(self, batch: list[T]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                await self._write(batch)
            except Exception as exc:
                self.flush_failures += 1
                log.warning(
                    "batch_flush_failed",
                    writer=self.name,
                    attempt=attempt,
                    attempts=self.attempts,
                    size=len(batch),
                    error=repr(exc),
                )
                if attempt < self.attempts:
                    delay = self.retry_base_delay * 2 ** (attempt - 1)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                continue
            self.written += len(batch)
            return
        try:
            await self._dead_letter(batch)
        except Exception:
            log.exception("dead_letter_failed", writer=self.name, size=len(batch))
            self.dropped += len(batch)
            return
        self.dead_lettered += len(batch)
        log.error("batch_dead_lettered", writer=self.name, size=len(batch))

    async def close(self) -> None:
        """Stop the background task and flush everything still buffered (graceful shutdown).

        The task is asked to stop rather than cancelled, so a batch being written is never
        interrupted halfway; records emitted from now on are dropped and counted.
        """
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()
        self._closed = True
