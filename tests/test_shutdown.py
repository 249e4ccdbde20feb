"""Shutdown always finishes: a step that hangs or fails is logged by name and the steps after
it still run (the validation log flushed, the database closed)."""

from __future__ import annotations

import asyncio
import time

import pytest

from peakshop import runtime as runtime_module
from peakshop.config import Settings
from peakshop.runtime import Runtime, stop_step


async def _deaf_to_cancellation(released: asyncio.Event) -> None:
    """A task that swallows its cancellation (as a library bug can make one do) until
    ``released``."""
    while not released.is_set():
        try:
            await released.wait()
        except asyncio.CancelledError:
            continue


async def test_a_step_that_ignores_its_cancellation_is_left_behind_in_time() -> None:
    released = asyncio.Event()
    deaf = asyncio.create_task(_deaf_to_cancellation(released))

    async def wait_for_the_deaf_task() -> None:
        await deaf

    try:
        started = time.monotonic()
        assert await stop_step("deaf", wait_for_the_deaf_task, seconds=0.2) is False
        assert time.monotonic() - started < 2.0
        assert not deaf.done()
    finally:
        released.set()
        await deaf


async def test_a_failing_step_is_reported_and_a_good_one_passes() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def works() -> None:
        await asyncio.sleep(0)

    assert await stop_step("fails", fails, seconds=1.0) is False
    assert await stop_step("works", works, seconds=1.0) is True


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_shop_stops_past_a_hung_step_and_still_closes_its_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "STOP_STEP_SECONDS", 0.5)
    runtime = Runtime(settings)
    await runtime.start()
    hung = asyncio.Event()

    async def monitor_that_never_stops() -> None:
        hung.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime.monitor, "stop", monitor_that_never_stops)
    started = time.monotonic()
    await runtime.stop()
    assert hung.is_set()
    assert time.monotonic() - started < 10.0
    # Only the hung step did not finish: the ones after it ran, the database's last.
    assert runtime.unfinished_stop_steps == ["monitor"]
    assert runtime.validation_log.stats().pending == 0
