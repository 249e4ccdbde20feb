"""One sender of a profile run: its share of the stream, sent open loop, measured raw.

Per request the sender only sleeps until the scheduled time, starts a task, and, when the
answer is in, appends one tuple to a list; every ``flush_interval`` the list goes to the
orchestrating process (``orchestrate.py``), which builds the histograms. So the sender's
event loop does as little as possible between sends, and the numbers are aggregated once,
exactly, for every sender together.

A record is ``(scheduled ns, lag ns, latency ns, done ns, code, endpoint, phase)``: times in
ns from the run's start; the lag is how late the send left (negative: early, by less than
the timer's 1 ms granularity); the latency runs from the scheduled time (or from the actual
send when that was earlier); ``code`` is the HTTP status, or the error's kind (a string).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from peakshop.bench.loadgen import _sleep_until, error_kind
from peakshop.bench.profiles import Profile
from peakshop.bench.workload import SESSION_TOKEN, Workload, stream

Record = tuple[int, int, int, int, int | str, int, int]
FLUSH_INTERVAL = 0.5


@dataclass(frozen=True, kw_only=True)
class DriverSpec:
    base_url: str
    workload: Workload
    profile: Profile
    seed: int
    run_id: str
    connections: int = 256  # this sender's most connections open at once
    timeout: float = 30.0
    offset: int = 0
    stride: int = 1
    flush_interval: float = FLUSH_INTERVAL


@dataclass(kw_only=True)
class DriverSummary:
    planned: list[int]  # requests this sender scheduled, per phase
    stopped_at_ns: int | None = None  # when the orchestrator stopped the run early
    cpu_seconds: float = 0.0
    started_ns: int = 0
    finished_ns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _Driver:
    def __init__(
        self, spec: DriverSpec, session: aiohttp.ClientSession, sink: Callable[[list[Record]], None]
    ) -> None:
        self.spec = spec
        self.session = session
        self.sink = sink
        workload = spec.workload
        base = spec.base_url.rstrip("/")
        self.urls = [URL(base + request.target, encoded=True) for request in workload.requests]
        self.endpoints = workload.endpoints
        self.dynamic = [
            request.body is not None and SESSION_TOKEN in request.body
            for request in workload.requests
        ]
        self.records: list[Record] = []
        self.keys = 0
        self.tag = spec.run_id.encode()

    def flush(self) -> None:
        if self.records:
            records, self.records = self.records, []
            self.sink(records)

    async def flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.spec.flush_interval)
            self.flush()

    async def send(
        self, start_ns: int, offset_ns: int, phase: int, index: int, session: int
    ) -> None:
        clock = time.monotonic_ns
        scheduled = start_ns + offset_ns
        started = clock()
        request = self.spec.workload.requests[index]
        endpoint = self.endpoints[request.endpoint]
        headers: Any = endpoint.headers
        if endpoint.idempotency_key:
            self.keys += 1
            key = f"{self.spec.run_id}-{self.spec.offset}-{self.keys}"
            headers = {**endpoint.headers, "Idempotency-Key": key}
        body = request.body
        if body is not None and self.dynamic[index]:
            body = body.replace(SESSION_TOKEN, b"%s-%d" % (self.tag, session))
        code: int | str
        try:
            async with self.session.request(
                endpoint.method, self.urls[index], data=body, headers=headers
            ) as response:
                await response.read()
                code = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            code = error_kind(exc)
        done = clock()
        self.records.append(
            (
                offset_ns,
                started - scheduled,
                done - min(scheduled, started),
                done - start_ns,
                code,
                request.endpoint,
                phase,
            )
        )

    async def run(self, start_ns: int, stop_at: Callable[[], int]) -> DriverSummary:
        """Send this sender's share from ``start_ns`` (monotonic ns) on. ``stop_at`` gives
        the offset (ns) past which nothing more is sent, or 0 to go on to the end."""
        spec = self.spec
        summary = DriverSummary(planned=[0] * len(spec.profile.phases), started_ns=start_ns)
        in_flight: set[asyncio.Task[None]] = set()
        for offset_ns, phase, index, session in stream(
            spec.workload, spec.profile, seed=spec.seed, offset=spec.offset, stride=spec.stride
        ):
            stop = stop_at()
            if stop and offset_ns >= stop:
                summary.stopped_at_ns = stop
                break
            await _sleep_until(start_ns + offset_ns)
            summary.planned[phase] += 1
            task = asyncio.create_task(self.send(start_ns, offset_ns, phase, index, session))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
        summary.finished_ns = time.monotonic_ns()
        return summary


async def drive(
    spec: DriverSpec,
    *,
    start_ns: int,
    sink: Callable[[list[Record]], None],
    stop_at: Callable[[], int] = lambda: 0,
) -> DriverSummary:
    """Run one sender in the current event loop; records go to ``sink`` in batches."""
    connector = aiohttp.TCPConnector(
        limit=spec.connections, limit_per_host=spec.connections, ttl_dns_cache=None
    )
    cpu_before = time.process_time()
    async with aiohttp.ClientSession(
        connector=connector,
        headers={"Content-Type": "application/json"},
        skip_auto_headers=("User-Agent",),
        timeout=aiohttp.ClientTimeout(total=spec.timeout),
        raise_for_status=False,
    ) as session:
        driver = _Driver(spec, session, sink)
        ticker = asyncio.create_task(driver.flush_every())
        try:
            summary = await driver.run(start_ns, stop_at)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            driver.flush()
    summary.cpu_seconds = time.process_time() - cpu_before
    return summary
