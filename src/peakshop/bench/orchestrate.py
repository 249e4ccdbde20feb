"""Sender processes of a profile run: started on one shared instant, fed back into one
Timeline, stopped early on request (the stress profile's first breach).

Each sender (``driver.drive`` in its own process and uvloop event loop) takes every
``procs``-th request or session of one schedule (offset/stride); they all start on the same
``monotonic_ns`` instant (CLOCK_MONOTONIC is machine-wide), or at a given wall-clock time
(the flash-sale-day mix has created its sale to open at a fixed moment of the run).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from peakshop.bench.driver import DriverSpec, DriverSummary, drive
from peakshop.bench.timeline import Timeline

STARTUP_TIMEOUT = 60.0
START_DELAY_NS = 200_000_000  # the shared start lies this far after the last sender is ready
TICK_INTERVAL = 0.5


@dataclass(kw_only=True)
class Outcome:
    timeline: Timeline
    senders: list[DriverSummary]
    start_ns: int  # monotonic
    start_wall: float  # epoch seconds of the same instant
    finished_ns: int
    stopped_at_s: float | None  # the run was stopped early at this offset

    @property
    def duration_s(self) -> float:
        return (self.finished_ns - self.start_ns) / 1e9

    @property
    def sender_cpu_s(self) -> float:
        return sum(s.cpu_seconds for s in self.senders)

    def planned_per_phase(self) -> list[int]:
        return [sum(column) for column in zip(*(s.planned for s in self.senders), strict=True)]


def _child(
    index: int,
    spec: DriverSpec,
    outbox: multiprocessing.Queue[tuple[str, int, Any]],
    start: Synchronized[int],
    stop: Synchronized[int],
    go: Any,
) -> None:
    try:
        import uvloop

        async def main() -> DriverSummary:
            outbox.put(("ready", index, None))
            go.wait()  # blocking is fine: nothing else runs in this loop yet

            def sink(records: list[Any]) -> None:
                outbox.put(("data", index, records))

            return await drive(spec, start_ns=start.value, sink=sink, stop_at=lambda: stop.value)

        summary = uvloop.run(main())
        outbox.put(("result", index, summary))
    except BaseException:
        outbox.put(("error", index, traceback.format_exc()))


def run(
    spec: DriverSpec,
    timeline: Timeline,
    *,
    procs: int = 1,
    start_wall: float | None = None,
    on_start: Callable[[], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    should_stop: Callable[[float], bool] | None = None,
) -> Outcome:
    """Run ``spec`` over ``procs`` sender processes, feeding ``timeline``. ``on_tick`` and
    ``should_stop`` get the seconds since the start, a few times a second; once
    ``should_stop`` says so, no request scheduled later is sent."""
    if procs < 1 or spec.connections < procs:
        raise ValueError("procs must be at least 1 and at most the connections")
    context = multiprocessing.get_context("spawn")
    outbox: multiprocessing.Queue[tuple[str, int, Any]] = context.Queue()
    start = context.Value("q", 0, lock=False)
    stop = context.Value("q", 0, lock=False)
    go = context.Event()
    shares = [
        dataclasses.replace(
            spec,
            offset=index,
            stride=procs,
            connections=spec.connections // procs + (1 if index < spec.connections % procs else 0),
        )
        for index in range(procs)
    ]
    children = [
        context.Process(
            target=_child,
            args=(index, share, outbox, start, stop, go),
            name=f"peakshop-sender-{index}",
            daemon=True,
        )
        for index, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    inbox = _Inbox(outbox, children, timeline)
    stopped_at_s: float | None = None
    try:
        inbox.wait("ready", timeout=STARTUP_TIMEOUT)
        now_ns, now_wall = time.monotonic_ns(), time.time()
        delay_ns = START_DELAY_NS
        if start_wall is not None:
            delay_ns = max(round((start_wall - now_wall) * 1e9), START_DELAY_NS)
        start.value = now_ns + delay_ns
        wall = now_wall + delay_ns / 1e9
        go.set()
        time.sleep(max(start.value - time.monotonic_ns(), 0) / 1e9)
        if on_start is not None:
            on_start()

        def tick() -> None:
            nonlocal stopped_at_s
            elapsed = (time.monotonic_ns() - start.value) / 1e9
            if on_tick is not None:
                on_tick(elapsed)
            if stopped_at_s is None and should_stop is not None and should_stop(elapsed):
                stopped_at_s = elapsed
                stop.value = max(round(elapsed * 1e9), 1)

        limit = spec.profile.duration + spec.timeout + STARTUP_TIMEOUT
        inbox.wait("result", timeout=limit, tick=tick)
        finished_ns = max(s.finished_ns for s in inbox.results())
        if on_finish is not None:
            on_finish()
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    timeline.finish()
    return Outcome(
        timeline=timeline,
        senders=inbox.results(),
        start_ns=start.value,
        start_wall=wall,
        finished_ns=finished_ns,
        stopped_at_s=stopped_at_s,
    )


class _Inbox:
    def __init__(
        self,
        outbox: multiprocessing.Queue[tuple[str, int, Any]],
        children: list[Any],
        timeline: Timeline,
    ) -> None:
        self._outbox = outbox
        self._children = children
        self._timeline = timeline
        self._received: dict[str, dict[int, Any]] = {}

    def results(self) -> list[DriverSummary]:
        received = self._received.get("result", {})
        return [received[index] for index in sorted(received)]

    def wait(
        self, expected: str, *, timeout: float, tick: Callable[[], None] | None = None
    ) -> None:
        received = self._received.setdefault(expected, {})
        deadline = time.monotonic() + timeout
        next_tick = time.monotonic()
        while len(received) < len(self._children):
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"sender processes: no {expected} after {timeout:.0f} s")
            if tick is not None and now >= next_tick:
                tick()
                next_tick = now + TICK_INTERVAL
            try:
                kind, index, payload = self._outbox.get(timeout=0.1)
            except queue.Empty:
                self._check_alive(received)
                continue
            if kind == "error":
                raise RuntimeError(f"sender process {index} failed:\n{payload}")
            if kind == "data":
                self._timeline.add(payload)
                continue
            self._received.setdefault(kind, {})[index] = payload

    def _check_alive(self, received: dict[int, Any]) -> None:
        for index, child in enumerate(self._children):
            if index not in received and child.exitcode not in (None, 0):
                raise RuntimeError(f"sender process {index} died with exit code {child.exitcode}")
