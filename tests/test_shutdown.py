"""Shutdown always finishes: a step that hangs or fails is logged by name and the steps after
it still run (the validation log flushed, the database closed)."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

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

    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        finished = await stop_step("deaf", wait_for_the_deaf_task, seconds=0.2)
    assert finished is False
    assert time.monotonic() - started < 2.0
    assert {"event": "shutdown_step_timed_out", "step": "deaf", "seconds": 0.2} in [
        {k: entry[k] for k in ("event", "step", "seconds") if k in entry} for entry in logs
    ]
    assert not deaf.done()
    released.set()
    await deaf


async def test_a_failing_step_is_reported_and_a_good_one_passes() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def works() -> None:
        await asyncio.sleep(0)

    with structlog.testing.capture_logs() as logs:
        assert await stop_step("fails", fails, seconds=1.0) is False
        assert await stop_step("works", works, seconds=1.0) is True
    assert [entry["step"] for entry in logs if entry["event"] == "shutdown_step_failed"] == [
        "fails"
    ]


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
    with structlog.testing.capture_logs() as logs:
        await runtime.stop()
    assert hung.is_set()
    assert time.monotonic() - started < 10.0
    steps = [(e["event"], e.get("step")) for e in logs if e["event"].startswith("shutdown_")]
    assert steps == [("shutdown_step_timed_out", "monitor")]
    # The steps after it ran, the database's last, each without a failure: the validation
    # log is closed (nothing pending), and the shop logged that it stopped.
    assert runtime.validation_log.stats().pending == 0
    assert [e["event"] for e in logs].count("peakshop_stopped") == 1
