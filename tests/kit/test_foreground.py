"""The order rate background work yields to, and the bounded wait built on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from peakshop.kit.foreground import (
    SLOT_SECONDS,
    ForegroundLoad,
    InFlight,
    LoopSaturation,
    YieldToBursts,
)
from peakshop.monitoring.middleware import observe_http


def test_the_rate_counts_the_previous_slot_and_the_current_one() -> None:
    load = ForegroundLoad()
    start = 1_000 * SLOT_SECONDS  # the start of a slot
    for n in range(50):  # 50 requests in the first slot
        load.note(start + n * SLOT_SECONDS / 50)
    # Over the (empty) previous slot and the elapsed part of this one.
    assert load.rate(start + SLOT_SECONDS * 0.99) == pytest.approx(50 / (SLOT_SECONDS * 1.99))
    # Half-way through the next slot with 10 more: 60 over 1.5 slots.
    for n in range(10):
        load.note(start + SLOT_SECONDS + n * 0.001)
    assert load.rate(start + SLOT_SECONDS * 1.5) == pytest.approx(60 / (SLOT_SECONDS * 1.5))
    # A slot later the first one no longer counts; two slots of silence: nothing.
    assert load.rate(start + SLOT_SECONDS * 2.5) == pytest.approx(10 / (SLOT_SECONDS * 1.5))
    assert load.rate(start + SLOT_SECONDS * 3.5) == pytest.approx(0.0)
    # A request after a gap starts afresh (the old slot is not taken as the previous one).
    load.note(start + SLOT_SECONDS * 10)
    assert load.rate(start + SLOT_SECONDS * 10) == pytest.approx(1 / SLOT_SECONDS)


async def _busy_for(load: ForegroundLoad, seconds: float, per_second: int) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(per_second // 100):
            load.note()
        await asyncio.sleep(0.01)


async def test_background_work_waits_while_requests_are_fast_then_goes_on() -> None:
    load = ForegroundLoad()
    yielding = YieldToBursts(load, above_rate=200, max_seconds=30)
    await asyncio.wait_for(yielding.wait(), 0.1)  # idle: no wait
    burst = asyncio.create_task(_busy_for(load, 0.6, per_second=2_000))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await asyncio.wait_for(yielding.wait(), 5)
    waited = time.monotonic() - started
    await burst
    # It went on only once the burst was over (the rate falls within a slot or two after).
    assert 0.4 <= waited <= 0.5 + 3 * SLOT_SECONDS
    assert yielding.waited_seconds >= 0.4


async def test_a_burst_longer_than_the_limit_gets_the_work_beside_it() -> None:
    load = ForegroundLoad()
    yielding = YieldToBursts(load, above_rate=200, max_seconds=0.3)
    burst = asyncio.create_task(_busy_for(load, 1.5, per_second=2_000))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await asyncio.wait_for(yielding.wait(), 5)
    assert 0.25 <= time.monotonic() - started <= 0.6
    # Still the same burst: no more waiting.
    started = time.monotonic()
    await yielding.wait()
    assert time.monotonic() - started < 0.05
    await burst


async def test_a_busy_event_loop_reads_as_saturated_and_an_idle_one_does_not() -> None:
    yielding = YieldToBursts(ForegroundLoad(), above_rate=1, max_seconds=30)
    probe = asyncio.create_task(yielding.loop.probe_forever())
    try:
        await asyncio.sleep(0.3)
        assert not yielding.loop.saturated and yielding.concurrency(16) == 1
        # Callbacks that each hold the loop for 20 ms, back to back: every timer waits.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            time.sleep(0.02)  # noqa: ASYNC251 -- blocking on purpose: a busy loop
            await asyncio.sleep(0)
        assert yielding.loop.saturated and yielding.concurrency(16) == 16
        await asyncio.sleep(1.0)
        assert not yielding.loop.saturated
    finally:
        probe.cancel()


async def test_a_saturated_loop_does_not_hold_the_worker_back() -> None:
    load = ForegroundLoad()
    yielding = YieldToBursts(load, above_rate=1, max_seconds=30)
    for _ in range(100):
        load.note()
    yielding.loop.observe(0.05)
    yielding.loop.observe(0.05)
    await asyncio.wait_for(yielding.wait(), 0.1)  # busy, but nothing to gain by waiting


async def test_after_a_batch_it_rests_in_proportion_unless_the_loop_is_saturated() -> None:
    yielding = YieldToBursts(ForegroundLoad(), above_rate=1, max_seconds=30, rest_ratio=2)
    started = time.monotonic()
    await yielding.rest(0.1)
    assert 0.2 <= time.monotonic() - started < 0.35
    yielding.loop.observe(0.05)
    yielding.loop.observe(0.05)
    started = time.monotonic()
    await yielding.rest(0.1)  # requests queue: resting would only delay the confirmations
    assert time.monotonic() - started < 0.05
    off = YieldToBursts(ForegroundLoad(), above_rate=1, max_seconds=30, rest_ratio=0)
    started = time.monotonic()
    await off.rest(0.1)
    assert time.monotonic() - started < 0.05


def test_requests_queued_in_the_process_read_as_saturated_though_timers_are_on_time() -> None:
    """A closed-loop load: ~100 requests in the process, the probe's timer barely late."""
    saturation = LoopSaturation()
    saturation.in_flight.count = 100
    for _ in range(2):
        saturation.observe(0.001)
    assert not saturation.saturated  # a 0.1 s burst of samples is not a queue yet
    for _ in range(10):
        saturation.observe(0.001)
    assert saturation.saturated
    saturation.in_flight.count = 3  # an open-loop load's handful
    for _ in range(15):
        saturation.observe(0.001)
    assert not saturation.saturated


async def test_the_request_middleware_counts_the_requests_in_flight() -> None:
    in_flight = InFlight()
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        if scope["path"] == "/fails":
            raise RuntimeError("after the answer")

    app = observe_http(slow_app, stats=None, slow_seconds=60, in_flight=in_flight)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call(path: str) -> None:
        scope = {"type": "http", "method": "GET", "path": path, "headers": []}
        with contextlib.suppress(RuntimeError):
            await app(scope, receive, send)

    calls = [asyncio.create_task(call(path)) for path in ["/a", "/b", "/fails"]]
    await asyncio.sleep(0.05)
    assert in_flight.count == 3
    release.set()
    await asyncio.gather(*calls)
    assert in_flight.count == 0  # a request that raised is counted out too
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [204] * 3
