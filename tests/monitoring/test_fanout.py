"""The live events' fan-out on its own (fake server sockets whose sends complete when the
test says), and LiveEvents' one channels subscriber per process, on both backends: every
client gets every event once and in order, a client that stops reading is dropped while the
others keep receiving, a burst drained in time is forgiven, shutdown ends every client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from litestar.types import Message

from peakshop.config import Settings, load_settings
from peakshop.monitoring import metrics
from peakshop.monitoring.fanout import (
    CLOSING,
    DISCONNECTED,
    PACE_TICK_SECONDS,
    TOO_SLOW_BACKLOG,
    TOO_SLOW_SEND,
    YIELD_EVERY,
    FanOut,
)
from peakshop.monitoring.live import CHANNEL, LiveEvents
from tests.conftest import make_settings

SPREAD = load_settings(environ={}).ws_send_spread_seconds  # the default pace


class FakeSocket:
    """The server side of one WebSocket: ``send`` and ``receive`` return futures, as granian
    does; with ``reading=False`` no send completes until the test completes it."""

    def __init__(self, *, reading: bool = True) -> None:
        self.reading = reading
        self.texts: list[str] = []  # what the server was asked to send, in order
        self.pending: list[asyncio.Future[None]] = []
        self.receiving: asyncio.Future[Any] | None = None

    def send(self, message: Message) -> asyncio.Future[None]:
        self.texts.append(message["text"])  # type: ignore[typeddict-item]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.reading:  # completed later, from the loop, like a server's write
            asyncio.get_running_loop().call_soon(_complete, future)
        else:
            self.pending.append(future)
        return future

    def receive(self) -> asyncio.Future[Any]:
        self.receiving = asyncio.get_running_loop().create_future()
        return self.receiving

    def complete_one(self) -> None:
        _complete(self.pending.pop(0))

    def leave(self) -> None:
        assert self.receiving is not None
        self.receiving.set_result({"type": "websocket.disconnect", "code": 1000})


def _complete(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def settle(condition: Callable[[], bool] = lambda: False, rounds: int = 200) -> None:
    """Let the loop run the send callbacks (until ``condition``, or ``rounds`` turns)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Until ``condition``: the pacer sends a few every tick (5 ms)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.001)


def _all_have(sockets: list[FakeSocket], count: int) -> bool:
    return all(len(s.texts) == count for s in sockets)


def frames(start: int, count: int) -> list[bytes]:
    return [b'{"type":"test","data":%d}' % i for i in range(start, start + count)]


def texts(start: int, count: int) -> list[str]:
    return [frame.decode() for frame in frames(start, count)]


async def test_every_client_gets_every_event_once_and_in_order() -> None:
    fanout = FanOut(backlog=1000, send_timeout=5.0, spread=SPREAD)
    sockets = [FakeSocket() for _ in range(YIELD_EVERY + 7)]  # deliveries that yield
    for socket in sockets:
        fanout.connect(socket.receive, socket.send)
    for frame in frames(0, 50):
        await fanout.deliver(frame)
    await wait_for(lambda: all(len(s.texts) == 50 for s in sockets))
    for socket in sockets:
        assert socket.texts == texts(0, 50)
    assert not any(client.ended.done() for client in fanout.clients)


async def test_the_sends_of_an_event_are_spread_over_about_the_spread() -> None:
    fanout = FanOut(backlog=10, send_timeout=5.0, spread=0.1)
    sockets = [FakeSocket() for _ in range(200)]
    for socket in sockets:
        fanout.connect(socket.receive, socket.send)
    started = time.monotonic()
    await fanout.deliver(b'{"type":"test","data":0}')

    def delivered() -> int:
        return sum(len(s.texts) for s in sockets)

    assert delivered() == 0  # the pacer sends, not deliver()
    await asyncio.sleep(0)
    # The first tick: 200 waiting x 5 ms / 100 ms.
    assert delivered() == math.ceil(200 * PACE_TICK_SECONDS / 0.1) == 10
    await wait_for(lambda: delivered() == 200)
    assert time.monotonic() - started >= 19 * PACE_TICK_SECONDS * 0.9  # 20 ticks, not one
    assert all(s.texts == texts(0, 1) for s in sockets)


async def test_with_no_spread_every_send_starts_at_once() -> None:
    fanout = FanOut(backlog=10, send_timeout=5.0, spread=0)
    sockets = [FakeSocket() for _ in range(200)]
    for socket in sockets:
        fanout.connect(socket.receive, socket.send)
    await fanout.deliver(b'{"type":"test","data":0}')
    assert all(s.texts == texts(0, 1) for s in sockets)


async def test_a_client_with_many_events_waiting_gets_several_sends_a_tick() -> None:
    fanout = FanOut(backlog=1000, send_timeout=5.0, spread=0.05)
    socket = FakeSocket()
    fanout.connect(socket.receive, socket.send)
    started = time.monotonic()
    for frame in frames(0, 500):
        await fanout.deliver(frame)
    # One send a tick would take 500 x 5 ms = 2.5 s; the budget (50 a tick, from the 500
    # waiting) lets each completed send start the next within the tick.
    await wait_for(lambda: len(socket.texts) == 500, within=1.0)
    assert time.monotonic() - started < 1.0
    assert socket.texts == texts(0, 500)
    assert fanout.pending == 0


async def test_a_client_that_stops_reading_is_dropped_and_the_others_keep_receiving() -> None:
    fanout = FanOut(backlog=5, send_timeout=0.2, spread=SPREAD)
    fast = [FakeSocket() for _ in range(3)]
    stuck = FakeSocket(reading=False)
    clients = [fanout.connect(s.receive, s.send) for s in [*fast, stuck]]
    dropped_before = metrics.LIVE_DROPPED_BACKLOG._value.get()

    async def deliver(start: int, count: int) -> None:
        for number, frame in enumerate(frames(start, count), start + 1):
            await fanout.deliver(frame)
            await wait_for(partial(_all_have, fast, number))  # the fast ones keep up

    await deliver(0, 20)
    assert stuck.texts == texts(0, 1)  # one send in flight, five waiting, fourteen dropped
    assert metrics.LIVE_DROPPED_BACKLOG._value.get() - dropped_before == 14
    assert fanout.sweep() == []  # not for long enough yet
    await asyncio.sleep(0.25)
    assert fanout.sweep() == [(clients[-1], TOO_SLOW_BACKLOG)]
    assert await clients[-1].ended == TOO_SLOW_BACKLOG
    await deliver(20, 10)
    await wait_for(lambda: all(len(s.texts) == 30 for s in fast))
    for socket in fast:
        assert socket.texts == texts(0, 30)
    assert stuck.texts == texts(0, 1)
    fanout.disconnect(clients[-1])
    assert stuck.pending[0].cancelled()  # the server's writer is let go before the close
    assert len(fanout.clients) == 3


async def test_a_single_send_longer_than_the_timeout_drops_the_client() -> None:
    fanout = FanOut(backlog=5, send_timeout=0.2, spread=SPREAD)
    stuck = FakeSocket(reading=False)
    client = fanout.connect(stuck.receive, stuck.send)
    await fanout.deliver(b'{"type":"test"}')  # no overflow: one event, never written
    assert fanout.sweep() == []
    await asyncio.sleep(0.25)
    assert fanout.sweep() == [(client, TOO_SLOW_SEND)]


async def test_a_backlog_still_over_half_full_after_the_timeout_drops_the_client() -> None:
    fanout = FanOut(backlog=10, send_timeout=1.0, spread=SPREAD)
    slow = FakeSocket(reading=False)
    client = fanout.connect(slow.receive, slow.send)
    for frame in frames(0, 30):
        await fanout.deliver(frame)
    await settle(rounds=2)  # the pacer's first tick
    for _ in range(3):  # it reads a little: each send is quick, the backlog stays long
        slow.complete_one()
        await settle(rounds=3)
    now = time.monotonic()
    assert client.lagging(now + 0.5, 1.0) is None
    assert client.lagging(now + 1.1, 1.0) == TOO_SLOW_BACKLOG


async def test_a_burst_drained_in_time_is_forgiven() -> None:
    fanout = FanOut(backlog=10, send_timeout=1.0, spread=SPREAD)
    bursty = FakeSocket(reading=False)
    client = fanout.connect(bursty.receive, bursty.send)
    for frame in frames(0, 30):
        await fanout.deliver(frame)
    await settle(rounds=2)  # the pacer's first tick
    while bursty.pending:  # it catches up
        bursty.complete_one()
        await wait_for(lambda: bool(bursty.pending) or len(bursty.texts) == 10)
    await settle(rounds=2)  # the last completion's callback
    assert bursty.texts == texts(0, 10)  # ten waiting when it overflowed
    later = time.monotonic() + 1.1
    assert client.lagging(later, 1.0) is None
    assert client.lagging(later + 10, 1.0) is None  # forgiven, not merely postponed
    assert not client.ended.done()


async def test_a_client_that_leaves_ends_and_a_failed_send_ends_it_too() -> None:
    fanout = FanOut(backlog=10, send_timeout=1.0, spread=SPREAD)
    leaving, failing = FakeSocket(), FakeSocket(reading=False)
    first = fanout.connect(leaving.receive, leaving.send)
    second = fanout.connect(failing.receive, failing.send)
    leaving.leave()
    assert await first.ended == DISCONNECTED
    await fanout.deliver(b'{"type":"test"}')
    await settle(rounds=2)  # the pacer's first tick
    failing.pending[0].set_exception(ConnectionResetError())
    assert await second.ended == DISCONNECTED
    assert leaving.texts == []  # nothing is sent to a client that left


async def test_a_server_whose_send_is_a_coroutine_gets_the_events_in_order() -> None:
    received: list[str] = []

    async def send(message: Message) -> None:  # an ASGI server without futures (uvicorn)
        await asyncio.sleep(0)
        received.append(message["text"])  # type: ignore[typeddict-item]

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    fanout = FanOut(backlog=100, send_timeout=1.0, spread=SPREAD)
    client = fanout.connect(receive, send)  # type: ignore[arg-type]
    for frame in frames(0, 20):
        await fanout.deliver(frame)
    await wait_for(lambda: len(received) == 20)
    assert received == texts(0, 20)
    fanout.disconnect(client)
    await settle(rounds=5)


async def test_shutdown_ends_every_client_and_refuses_new_ones() -> None:
    fanout = FanOut(backlog=10, send_timeout=1.0, spread=SPREAD)
    clients = [fanout.connect(s.receive, s.send) for s in (FakeSocket(), FakeSocket())]
    fanout.close_all()
    assert [await client.ended for client in clients] == [CLOSING, CLOSING]
    late = FakeSocket()
    assert await fanout.connect(late.receive, late.send).ended == CLOSING


# --- LiveEvents: one subscriber per process, on the in-process and the Redis backend ----------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def live_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", redis_url)


async def test_events_reach_the_clients_through_one_subscription_per_process(
    live_settings: Settings,
) -> None:
    live = LiveEvents(live_settings, db=None)  # type: ignore[arg-type]  # no inventory here
    await live.start()
    try:
        sockets = [FakeSocket() for _ in range(20)]
        async with contextlib.AsyncExitStack() as stack:
            for socket in sockets:
                await stack.enter_async_context(live.connect(socket.receive, socket.send))
            assert live.listening
            assert live.local_clients == 20
            assert len(live.plugin._channels[CHANNEL]) == 1  # one, whatever the clients
            # Redis: the subscription is live once a probe comes back.
            deadline = time.monotonic() + 10
            while not sockets[0].texts:
                assert time.monotonic() < deadline, "no probe came back"
                live.publish("system-alert", {"probe": True})
                await asyncio.sleep(0.05)
            for n in range(30):
                live.publish("system-alert", {"n": n})

            def numbers(socket: FakeSocket) -> list[int]:
                data = [json.loads(text)["data"] for text in socket.texts]
                return [d["n"] for d in data if "n" in d]

            while not all(len(numbers(s)) == 30 for s in sockets):
                assert time.monotonic() < deadline, [len(numbers(s)) for s in sockets]
                await asyncio.sleep(0.01)
            assert [numbers(s) for s in sockets] == [list(range(30))] * 20
            assert all(s.texts == sockets[0].texts for s in sockets)  # probes alike
        # Without clients, no subscription (what the other processes count on Redis).
        assert live.local_clients == 0
        assert not live.plugin._channels[CHANNEL]
    finally:
        await live.stop()


async def test_at_shutdown_the_connected_clients_are_told_to_close(
    live_settings: Settings,
) -> None:
    live = LiveEvents(live_settings, db=None)  # type: ignore[arg-type]
    await live.start()
    socket = FakeSocket()
    async with live.connect(socket.receive, socket.send) as client:
        await live.stop()
        assert await client.ended == CLOSING
