"""How busy the process is with orders and requests, for background work to make way.

In embedded mode the queue's worker shares one process, and so one GIL, with the requests.
A flash sale's admissions are the latency that matters; their confirmations (the worker) can
follow a few seconds later. Confirming a winner costs about as much CPU as admitting it, and
run beside the admissions, 16 batches at a time, it held the GIL for stretches that made up
their open-loop P99. So the in-process worker (``YieldToBursts``, used by ``jobs/worker.py``):

- takes no jobs while orders are placed faster than a threshold, for at most a bounded time
  (orders, not requests: refused buyers cost ~50 us each and keep coming long after a sale
  is sold out; yielding to them held the confirmations back for the whole of the limit);
- runs at most ``gentle_concurrency`` batches at a time (single jobs keep every slot), and
  after each batch rests ``rest_ratio`` times as long as the batch took. A batch's
  statements run in SQLite's C code in a thread, beside the requests, on a 2-core machine
  that also carries the load generator: back to back, they kept one core busy and the
  requests' median went from 1.0 to ~3.5 ms while 10,000 winners were confirmed; one batch
  at a time with a rest as long as the batch brought it to ~1.6 ms, and the run's P99 from
  4.6 to 3.0-3.3 ms (``benchmarks/flash_open_timeline.py --window 0.25``; README, Where the
  figures stand).

Both only while the event loop keeps up (``LoopSaturation``: how late a 50 ms sleep wakes,
and how many requests are in the process, both smoothed): once requests queue in it, as in a
closed-loop run, holding the worker back buys them no latency and only delays the
confirmations. The same probe gives the monitor its event-loop lag (one timer per process,
not two).

Counting is one clock read and an increment per order; the rate is taken over the last
complete quarter-second slot and the current one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

SLOT_SECONDS = 0.25


class ForegroundLoad:
    __slots__ = ("_count", "_previous", "_slot")

    def __init__(self) -> None:
        self._slot = 0
        self._count = 0
        self._previous = 0

    def note(self, now: float | None = None) -> None:
        """One more (an order placed) (``now``: ``time.monotonic()``, for tests)."""
        slot = int((time.monotonic() if now is None else now) / SLOT_SECONDS)
        if slot != self._slot:
            self._previous = self._count if slot == self._slot + 1 else 0
            self._slot, self._count = slot, 0
        self._count += 1

    def rate(self, now: float | None = None) -> float:
        """Events per second over the previous slot and the elapsed part of this one."""
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


class InFlight:
    """HTTP requests in the process now: counted by the request middleware."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class LoopSaturation:
    """Whether the event loop is saturated: a probe sleeps ``PROBE_SECONDS`` and smooths how
    late it woke (a busy loop runs everything queued before the timer: a long computation, a
    blocking call, a full GC) and how many requests were in the process (``in_flight``).
    ``listeners`` get every raw lateness sample (the monitor's lag).

    Why both: a closed-loop load keeps the loop busy without making a 50 ms timer much later
    (its lateness averaged 3.0 ms, against 0.4 ms at 1,000 requests/s open loop), so a line
    low enough to see it (1.5 ms) also read the open loop's short stalls as saturation, and
    the worker's batches then ran beside the admissions (P99 55-77 ms against 14-16 ms). What
    tells the two apart is the queue: ~100 requests in the process all the time under 100
    closed-loop connections, a handful at 1,000/s open loop."""

    PROBE_SECONDS = 0.05
    SMOOTHING = 0.2  # weight of the newest sample
    SATURATED_LATE_SECONDS = 0.005
    SATURATED_IN_FLIGHT = 48  # requests, smoothed over the probe's samples

    def __init__(self) -> None:
        self.late = 0.0  # smoothed seconds
        self.queued = 0.0  # smoothed requests in flight
        self.in_flight = InFlight()  # counted by the request middleware (app.py wires it)
        self.listeners: list[Callable[[float], None]] = []

    @property
    def saturated(self) -> bool:
        return self.late >= self.SATURATED_LATE_SECONDS or self.queued >= self.SATURATED_IN_FLIGHT

    def observe(self, late: float) -> None:
        self.late += self.SMOOTHING * (max(0.0, late) - self.late)
        self.queued += self.SMOOTHING * (self.in_flight.count - self.queued)

    async def probe_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.PROBE_SECONDS
            await asyncio.sleep(self.PROBE_SECONDS)
            late = max(0.0, loop.time() - expected)
            self.observe(late)
            for listener in self.listeners:
                listener(late)


class YieldToBursts:
    """Background work's side: ``await wait()`` before taking more work returns at once when
    the load is below ``above_rate`` per second, else when it falls below, or once
    ``max_seconds`` have passed since this burst made it wait (from then on it no longer
    waits, until the burst ends: a sustained load gets the worker beside it, as without
    yielding)."""

    POLL_SECONDS = 0.05

    def __init__(
        self,
        load: ForegroundLoad,
        *,
        above_rate: float,
        max_seconds: float,
        gentle_concurrency: int = 1,
        rest_ratio: float = 1.0,
        loop: LoopSaturation | None = None,
    ) -> None:
        self._load = load
        self._above = above_rate
        self._max = max_seconds
        self._gentle = gentle_concurrency
        self._rest_ratio = rest_ratio
        self.loop = loop or LoopSaturation()  # its probe is run by its owner (the Runtime)
        self._since: float | None = None  # when the current burst started holding work back
        self.waited_seconds = 0.0  # total, for metrics and tests

    def concurrency(self, full: int) -> int:
        """How many batches the worker may run at once now."""
        return full if self.loop.saturated else min(full, self._gentle)

    async def rest(self, busy_seconds: float) -> None:
        """After a batch that took ``busy_seconds``: leave the machine to the requests for
        ``rest_ratio`` times as long, unless they already queue (then resting only delays
        the confirmations)."""
        if self._rest_ratio > 0 and not self.loop.saturated:
            await asyncio.sleep(busy_seconds * self._rest_ratio)

    async def wait(self) -> None:
        while self._load.rate() > self._above and not self.loop.saturated:
            now = time.monotonic()
            if self._since is None:
                self._since = now
            if now - self._since >= self._max:
                return
            await asyncio.sleep(self.POLL_SECONDS)
            self.waited_seconds += time.monotonic() - now
        self._since = None
