"""A generic HTTP load generator: closed-loop and open-loop, one event loop per sender process.

Closed loop: ``concurrency`` workers each send the next request when the previous one has
answered; the result is a throughput. Its latencies are measured from the actual send, so a
stalled server slows the senders down and hides its queueing delay (coordinated omission):
use them for throughput, not for latency at a given load.

Open loop: request ``k`` is *scheduled* at ``start + k / rate`` whatever happened before, and
its latency is counted from that scheduled time. When the server stalls, the requests that
should have been sent meanwhile carry the stall in their latency. The sender also records
how late it dispatched each request (its lag): a sender that cannot keep up would otherwise
pass its own delay off as server latency, so a run whose lag is too high is invalid.

Request bodies are built before the run; per request the sender only picks the next one,
sends it on a keep-alive connection and reads the answer. Timings are integer nanoseconds
from ``time.monotonic_ns`` (CLOCK_MONOTONIC: one clock for every process on the machine, so
senders in several processes share one schedule).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from hdrh.histogram import HdrHistogram
from yarl import URL

Mode = Literal["closed", "open"]
# Histograms count microseconds from 1 us to 10 minutes with 3 significant digits.
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 600_000_000
HIST_DIGITS = 3
PROGRESS_INTERVAL = 0.25


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    """What one sender does. With several senders, each gets ``offset`` 0..stride-1 and the
    same ``stride``: it takes every ``stride``-th slot of the shared schedule and body list."""

    url: str
    bodies: Sequence[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    # Headers of each body (same index), e.g. an Idempotency-Key per request.
    body_headers: Sequence[Mapping[str, str]] | None = None
    # The answers that count as served (and are timed): 2xx by default; a flash sale's 409
    # (sold out) is an answer too.
    ok_statuses: frozenset[int] = frozenset(range(200, 300))
    # GET requests instead: ``bodies`` then hold each request's path and query, appended to
    # ``url`` (e.g. b"/api/v1/products?sort=price_asc").
    method: Literal["POST", "GET"] = "POST"
    mode: Mode = "closed"
    concurrency: int = 1  # closed: workers; open: most connections open at once
    requests: int | None = None  # closed loop: stop after this many (this sender's share)
    duration: float | None = None  # seconds
    rate: float | None = None  # open loop: requests per second across all senders
    timeout: float = 30.0
    offset: int = 0
    stride: int = 1
    start_at_ns: int | None = None  # monotonic_ns start shared by all senders
    # Closed loop: open every worker's keep-alive connection before the clock starts (with
    # one unmeasured request each), so that the timed requests are not charged for the
    # sender's own connection set-up (~0.3 ms of Python per connection in aiohttp, serial
    # on the sender's loop: 100 connections delay the first wave by tens of milliseconds).
    preconnect: bool = False

    def __post_init__(self) -> None:
        if not self.bodies:
            raise ValueError("no request bodies")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.mode == "closed" and self.requests is None and self.duration is None:
            raise ValueError("closed loop needs requests or duration")
        if self.mode == "open" and (not self.rate or self.rate <= 0 or not self.duration):
            raise ValueError("open loop needs a positive rate and a duration")
        if not 0 <= self.offset < self.stride:
            raise ValueError("offset must be in [0, stride)")
        if self.body_headers is not None and len(self.body_headers) != len(self.bodies):
            raise ValueError("body_headers must have one entry per body")


@dataclass(kw_only=True)
class LoadResult:
    """What senders measured; results of several senders merge into one."""

    mode: Mode
    sent: int = 0
    responses: int = 0
    ok: int = 0  # 2xx
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    started_ns: int = 0
    finished_ns: int = 0
    latency: HdrHistogram = field(default_factory=new_histogram)
    latency_sum_ns: int = 0
    latency_min_ns: int | None = None
    latency_max_ns: int | None = None
    # Open loop only: from the actual send (what the server took once it had the request) and
    # how late each send was.
    service: HdrHistogram = field(default_factory=new_histogram)
    lag: HdrHistogram = field(default_factory=new_histogram)
    lag_max_ns: int = 0
    early: int = 0  # open loop: sends that left before their time (timer granularity)
    early_max_ns: int = 0
    planned: int = 0  # open loop: requests on the schedule
    cpu_seconds: float = 0.0  # the sender processes' own CPU time
    senders: int = 1

    @property
    def duration_s(self) -> float:
        return max(self.finished_ns - self.started_ns, 1) / 1e9

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    def to_wire(self) -> dict[str, Any]:
        """A picklable form with encoded histograms, to send from a sender process."""
        wire = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        for name in _HISTOGRAMS:
            wire[name] = getattr(self, name).encode()
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> LoadResult:
        values = {name: wire[name] for name in _PLAIN_FIELDS}
        for name in _HISTOGRAMS:
            values[name] = HdrHistogram.decode(wire[name])
        return cls(**values)


_HISTOGRAMS = ("latency", "service", "lag")
_PLAIN_FIELDS = tuple(name for name in LoadResult.__dataclass_fields__ if name not in _HISTOGRAMS)


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """One result for several senders that ran at the same time: counts and histograms add
    up; the run spans from the first start to the last finish."""
    if not results:
        raise ValueError("nothing to merge")
    merged = LoadResult(mode=results[0].mode, senders=0)
    for result in results:
        merged.sent += result.sent
        merged.responses += result.responses
        merged.ok += result.ok
        merged.planned += result.planned
        merged.cpu_seconds += result.cpu_seconds
        merged.senders += result.senders
        for status, count in result.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + count
        for kind, count in result.errors.items():
            merged.errors[kind] = merged.errors.get(kind, 0) + count
        for name in _HISTOGRAMS:
            getattr(merged, name).add(getattr(result, name))
        merged.latency_sum_ns += result.latency_sum_ns
        merged.latency_min_ns = _min(merged.latency_min_ns, result.latency_min_ns)
        merged.latency_max_ns = _max(merged.latency_max_ns, result.latency_max_ns)
        merged.lag_max_ns = max(merged.lag_max_ns, result.lag_max_ns)
        merged.early += result.early
        merged.early_max_ns = max(merged.early_max_ns, result.early_max_ns)
    merged.started_ns = min(r.started_ns for r in results)
    merged.finished_ns = max(r.finished_ns for r in results)
    return merged


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


# --- the open-loop schedule ----------------------------------------------------------------


def planned_requests(*, rate: float, duration: float) -> int:
    """Slots on the shared schedule: one every 1/rate seconds in [0, duration)."""
    return math.ceil(rate * duration - 1e-9)


def schedule(
    *, start_ns: int, rate: float, duration: float, offset: int = 0, stride: int = 1
) -> Iterator[tuple[int, int]]:
    """(slot, scheduled send time in ns) of one sender's share of the schedule. Times are
    computed from the slot number, never accumulated, so they do not drift."""
    for slot in range(offset, planned_requests(rate=rate, duration=duration), stride):
        yield slot, start_ns + round(slot * 1e9 / rate)


# --- sending -------------------------------------------------------------------------------


def error_kind(exc: BaseException) -> str:
    """A short, stable name for a failed request (the report counts errors by kind)."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "payload"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"os:{exc.strerror or exc.errno}"
    return type(exc).__name__


class _Sender:
    def __init__(self, spec: LoadSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        self.url = URL(spec.url)  # parsed once, not per request
        # GET: every path parsed once before the run, not per request.
        self.urls = (
            [URL(spec.url + body.decode()) for body in spec.bodies] if spec.method == "GET" else []
        )
        self.latencies: list[int] = []
        self.services: list[int] = []
        self.lags: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.sent = 0

    async def post(self, index: int) -> bool:
        """Send body ``index`` and read the answer; True for an expected status (2xx by
        default). Failures (other statuses, errors by kind) are counted, and only successes
        are timed: a fast 401 or 503 must not pass for a fast answer."""
        self.sent += 1
        try:
            async with self._request(index) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            kind = error_kind(exc)
            self.errors[kind] = self.errors.get(kind, 0) + 1
            return False
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status in self.spec.ok_statuses

    def _request(self, index: int) -> Any:
        """Body (or path) ``index`` with its headers, not yet sent."""
        spec = self.spec
        headers = None if spec.body_headers is None else spec.body_headers[index]
        if self.urls:
            return self.session.get(self.urls[index], headers=headers)
        return self.session.post(self.url, data=spec.bodies[index], headers=headers)

    async def preconnect(self) -> None:
        """One unmeasured request per worker, all at once: the connector then holds one open
        connection per worker (its limit is the concurrency), reused by the timed loop."""
        count = len(self.spec.bodies)

        async def warm(index: int) -> None:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                async with self._request(index % count) as response:
                    await response.read()

        await asyncio.gather(*(warm(i) for i in range(self.spec.concurrency)))

    async def closed_loop(self) -> None:
        spec = self.spec
        count, stride, offset = len(spec.bodies), spec.stride, spec.offset
        limit = spec.requests
        deadline = None if spec.duration is None else time.monotonic_ns() + int(spec.duration * 1e9)
        numbers = itertools.count()
        latencies = self.latencies
        clock = time.monotonic_ns

        async def worker() -> None:
            for number in numbers:
                if limit is not None and number >= limit:
                    return
                sent_at = clock()
                if deadline is not None and sent_at >= deadline:
                    return
                if await self.post((offset + number * stride) % count):
                    latencies.append(clock() - sent_at)

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))

    async def open_loop(self, start_ns: int) -> int:
        spec = self.spec
        assert spec.rate is not None and spec.duration is not None
        count = len(spec.bodies)
        clock = time.monotonic_ns
        in_flight: set[asyncio.Task[None]] = set()

        async def send(scheduled_ns: int, index: int) -> None:
            started = clock()
            self.lags.append(started - scheduled_ns)
            if await self.post(index):
                done = clock()
                # From the schedule; from the actual send if that was earlier (see below), so
                # that the timer's granularity can never shorten a latency.
                self.latencies.append(done - min(scheduled_ns, started))
                self.services.append(done - started)

        planned = 0
        for slot, scheduled_ns in schedule(
            start_ns=start_ns,
            rate=spec.rate,
            duration=spec.duration,
            offset=spec.offset,
            stride=spec.stride,
        ):
            planned += 1
            await _sleep_until(scheduled_ns)
            task = asyncio.create_task(send(scheduled_ns, slot % count))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
        return planned

    def result(self, *, planned: int, started_ns: int, finished_ns: int) -> LoadResult:
        early = [-lag for lag in self.lags if lag < 0]
        result = LoadResult(
            mode=self.spec.mode,
            sent=self.sent,
            responses=sum(self.statuses.values()),
            ok=sum(n for status, n in self.statuses.items() if status in self.spec.ok_statuses),
            statuses=dict(self.statuses),
            errors=dict(self.errors),
            started_ns=started_ns,
            finished_ns=finished_ns,
            planned=planned,
        )
        _record(result.latency, self.latencies)
        _record(result.service, self.services)
        _record(result.lag, [max(lag, 0) for lag in self.lags])
        if self.latencies:
            result.latency_sum_ns = sum(self.latencies)
            result.latency_min_ns = min(self.latencies)
            result.latency_max_ns = max(self.latencies)
        result.lag_max_ns = max(self.lags, default=0)
        result.early = len(early)
        result.early_max_ns = max(early, default=0)
        return result


async def _sleep_until(deadline_ns: int) -> None:
    """Sleep until ``deadline_ns``, or yield once if it has passed (behind schedule the sends
    already dispatched must get to run rather than pile up behind the scheduler).

    Event-loop timers count whole milliseconds and may fire up to ~1 ms early (uvloop rounds
    the delay): sleeps are rounded up, and a remainder under 1 ms is not slept again (that
    would make the send late by up to a millisecond). Such a send leaves early; it is
    counted as early and its latency runs from the actual send."""
    delay = deadline_ns - time.monotonic_ns()
    if delay <= 0:
        await asyncio.sleep(0)
        return
    while True:
        await asyncio.sleep(math.ceil(delay / 1_000_000) / 1000)
        delay = deadline_ns - time.monotonic_ns()
        if delay < 1_000_000:
            return


def _record(histogram: HdrHistogram, values_ns: list[int]) -> None:
    for value in values_ns:
        # Microseconds, rounded to the nearest; the histogram cannot hold 0 or beyond its top.
        histogram.record_value(min(max((value + 500) // 1000, 1), HIST_HIGHEST_US))


async def run(
    spec: LoadSpec,
    *,
    on_progress: Callable[[int], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    wait_for_start: Callable[[], int] | None = None,
) -> LoadResult:
    """Run one sender in the current event loop. ``on_progress`` gets the count of requests
    sent every quarter second (not per request: the sender's time goes to sending);
    ``on_finish`` is called when the last answer is in, before the results are tallied.
    ``wait_for_start`` (blocking) is called once the sender is ready, connections included,
    and returns the ``monotonic_ns`` start; without it the start is ``spec.start_at_ns``."""
    connector = aiohttp.TCPConnector(
        limit=spec.concurrency, limit_per_host=spec.concurrency, ttl_dns_cache=None
    )
    headers = {"Content-Type": "application/json", **spec.headers}
    async with aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        skip_auto_headers=("User-Agent",),
        timeout=aiohttp.ClientTimeout(total=spec.timeout),
        raise_for_status=False,
    ) as session:
        sender = _Sender(spec, session)
        if spec.preconnect and spec.mode == "closed":
            await sender.preconnect()
        cpu_before = time.process_time()  # the sender's CPU over the run alone
        start_ns = spec.start_at_ns if spec.start_at_ns is not None else time.monotonic_ns()
        if wait_for_start is not None:
            start_ns = wait_for_start()
        ticker = None
        if on_progress is not None:
            ticker = asyncio.create_task(_tick(sender, on_progress))
        if spec.mode == "open":
            planned = await sender.open_loop(start_ns)
        else:
            delay = start_ns - time.monotonic_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            start_ns = time.monotonic_ns()
            await sender.closed_loop()
            planned = sender.sent
        finished_ns = time.monotonic_ns()
        cpu_seconds = time.process_time() - cpu_before
        if on_finish is not None:
            on_finish()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            on_progress(sender.sent)  # type: ignore[misc]
    result = sender.result(planned=planned, started_ns=start_ns, finished_ns=finished_ns)
    result.cpu_seconds = cpu_seconds
    return result


async def _tick(sender: _Sender, on_progress: Callable[[int], None]) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        on_progress(sender.sent)
