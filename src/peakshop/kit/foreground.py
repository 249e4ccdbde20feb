"""How busy the process is answering requests, for background work to yield to.

In embedded mode the queue's worker shares one process, and so one GIL, with the requests.
A flash sale's admissions are the latency that matters; their confirmations (the worker) can
follow a few seconds later. Processing a winner costs about as much CPU as admitting it, and
run beside the admissions it held the GIL for stretches that made up the open-loop P99. So
the in-process worker asks ``busy()`` before taking more jobs and waits while requests come
faster than a threshold, for at most a bounded time (see ``jobs/worker.py``).

Counting is one clock read and an increment per request; the rate is taken over the last
complete quarter-second slot and the current one.
"""

from __future__ import annotations

import asyncio
import time

SLOT_SECONDS = 0.25


class ForegroundLoad:
    __slots__ = ("_count", "_previous", "_slot")

    def __init__(self) -> None:
        self._slot = 0
        self._count = 0
        self._previous = 0

    def note(self, now: float | None = None) -> None:
        """One request arrived (``now``: ``time.monotonic()``, for tests)."""
        slot = int((time.monotonic() if now is None else now) / SLOT_SECONDS)
        if slot != self._slot:
            self._previous = self._count if slot == self._slot + 1 else 0
            self._slot, self._count = slot, 0
        self._count += 1

    def rate(self, now: float | None = None) -> float:
        """Requests per second over the previous slot and the elapsed part of this one."""
        moment = time.monotonic() if now is None else now
        slot = int(moment / SLOT_SECONDS)
        if slot == self._slot:
            current, previous = self._count, self._previous
        elif slot == self._slot + 1:
            current, previous = 0, self._count
        else:
            return 0.0
        elapsed = moment - slot * SLOT_SECONDS
        return (previous + current) / (SLOT_SECONDS + elapsed)


class YieldToRequests:
    """Background work's side: ``await wait()`` before taking more work returns at once when
    requests are slow, else when they slow down, or once ``max_seconds`` have passed since
    this burst made it wait (from then on it no longer waits, until the burst ends: a
    sustained load gets the worker beside it, as without yielding)."""

    POLL_SECONDS = 0.05

    def __init__(self, load: ForegroundLoad, *, above_rps: float, max_seconds: float) -> None:
        self._load = load
        self._above = above_rps
        self._max = max_seconds
        self._since: float | None = None  # when the current burst started holding work back
        self.waited_seconds = 0.0  # total, for metrics and tests

    async def wait(self) -> None:
        while self._load.rate() > self._above:
            now = time.monotonic()
            if self._since is None:
                self._since = now
            if now - self._since >= self._max:
                return
            await asyncio.sleep(self.POLL_SECONDS)
            self.waited_seconds += time.monotonic() - now
        self._since = None
