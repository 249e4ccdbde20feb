"""The write turn: one writer at a time, and a request that waits goes before background
work that waits (kit/write_turn.py)."""

from __future__ import annotations

import asyncio

from peakshop.kit.write_turn import WriteTurn


async def _hold(turn: WriteTurn, name: str, order: list[str], *, background: bool) -> None:
    async with turn.hold(background=background):
        order.append(name)
        await asyncio.sleep(0.01)


async def test_one_writer_at_a_time() -> None:
    turn = WriteTurn()
    holding = 0
    most = 0

    async def write(background: bool) -> None:
        nonlocal holding, most
        async with turn.hold(background=background):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(write(i % 2 == 0) for i in range(40)))
    assert most == 1


async def test_a_waiting_request_goes_before_waiting_background_work() -> None:
    turn = WriteTurn()
    order: list[str] = []
    first = asyncio.create_task(_hold(turn, "running", order, background=True))
    await asyncio.sleep(0)  # it holds the turn
    queued = [
        asyncio.create_task(_hold(turn, f"background-{i}", order, background=True))
        for i in range(3)
    ]
    await asyncio.sleep(0)  # the background writers queue first
    request = asyncio.create_task(_hold(turn, "request", order, background=False))
    await asyncio.gather(first, *queued, request)
    assert order == ["running", "request", "background-0", "background-1", "background-2"]


async def test_a_cancelled_waiter_does_not_keep_the_turn() -> None:
    turn = WriteTurn()
    order: list[str] = []
    first = asyncio.create_task(_hold(turn, "first", order, background=False))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(_hold(turn, "cancelled", order, background=False))
    after = asyncio.create_task(_hold(turn, "after", order, background=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    async with asyncio.timeout(2):
        await asyncio.gather(first, after, return_exceptions=True)
    assert order == ["first", "after"]
    async with asyncio.timeout(1):  # the turn is free again
        async with turn.hold():
            pass


async def test_a_waiter_cancelled_as_it_is_handed_the_turn_passes_it_on() -> None:
    turn = WriteTurn()
    order: list[str] = []
    tasks: dict[str, asyncio.Task[None]] = {}

    async def first() -> None:
        async with turn.hold():
            order.append("first")
            await asyncio.sleep(0.01)
        # The turn was just handed to "handed", whose task has not run yet: cancel it now.
        tasks["handed"].cancel()

    holder = asyncio.create_task(first())
    await asyncio.sleep(0)
    tasks["handed"] = asyncio.create_task(_hold(turn, "handed", order, background=False))
    later = asyncio.create_task(_hold(turn, "later", order, background=True))
    async with asyncio.timeout(2):  # a turn kept by the cancelled task would hang here
        await asyncio.gather(holder, tasks["handed"], later, return_exceptions=True)
    assert tasks["handed"].cancelled()
    assert order == ["first", "later"]
