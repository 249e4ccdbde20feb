"""One fan-out per process for the live events: each event is decoded to text once and
handed to every connected WebSocket from one place, with no task woken per client per event.

Why by hand: Litestar's channels give each subscriber its own queue and a task per
WebSocket (``Subscriber.run_in_background``); with 1,000 dashboards that is 1,000 queue
puts, 1,000 task wake-ups and 1,000 decodes per event, measured at ~30-40 us of the event
loop per client and event under granian. Channels still carry the events between processes
(one subscriber per process, live.py); this module only spreads them over the sockets.

How: a client has at most one send in flight. The server's ``send`` is called directly and
its result chained with ``add_done_callback`` (granian returns an asyncio-compatible
future, so a send costs a call and a callback, ~5 us; a server whose ``send`` is a
coroutine gets a task per send instead, as any ASGI app would). Events wait in the client's
bounded backlog until it is its turn. Disconnects are seen the same way, through a chained
``receive``.

The sends are paced: a pacer task starts them in turn over the clients that have events
waiting, a few every ``PACE_TICK_SECONDS``, so many that what is waiting goes out within
about ``spread`` seconds (``PEAKSHOP_WS_SEND_SPREAD_SECONDS``, 0.5 by default; 0 sends
everything at once). The budget follows what is waiting, so a faster stream of events is
paced the same way, never left behind, and a client with several events waiting may send
again within a tick as soon as its last send completed.

Why: with 1,000 dashboards, an event sent to all of them in one go cost 5.8-6.7 % of
validate throughput in three runs of ``benchmarks/monitoring_overhead.py`` (2026-12-07);
since the sends are paced, 0.81 %. ``benchmarks/ws_send_spread.py`` compares values of the
setting in one run: spread 0 lost 3.7 %, 0.5 s -2.4 %, higher in each of 10 rounds. Keeping
fewer sends in flight instead (a window of 32 or 4, each completion starting the next) did
not help (5.5 and 6.6 %): the sends stayed close together in time. Why the same sends cost
more close together was not found inside granian, which completes each on the one thread
that also hands the requests to Python, taking the GIL once per send. The README's
Performance section has the runs.

One watchdog sweep per process drops the clients that do not keep up:

- a single send in flight longer than ``send_timeout`` ("send_timeout");
- a backlog that overflowed and is still over half full ``send_timeout`` later ("backlog");
  a burst the client drains in time is forgiven.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from litestar.types import Message, Receive, Scope, Send

from peakshop.monitoring import metrics

# Why a client ended (ConnectedClient.ended's result).
DISCONNECTED = "disconnected"  # the client left, or its socket failed
CLOSING = "closing"  # the server shuts down
TOO_SLOW_BACKLOG = "backlog"
TOO_SLOW_SEND = "send_timeout"

PACE_TICK_SECONDS = 0.005  # the pacer starts a few sends this often
MIN_SENDS_PER_TICK = 8  # so that a handful of clients is served in one tick
YIELD_EVERY = 1_000  # events queued in a row before the fan-out lets other work run (~0.5 ms)
_SERVER_CALLS = "peakshop.server_calls"


def keep_server_calls(scope: Scope, receive: Receive, send: Send) -> None:
    """Called by the application with the server's own ``receive`` and ``send`` of a
    WebSocket, before the framework wraps them: through Litestar's wrappers (two coroutines
    per message) a send costs the event loop ~10 us instead of ~5 (measured under granian),
    and only the server's own ``send`` returns a future that callbacks can chain. Only the
    fan-out reads them."""
    scope[_SERVER_CALLS] = (receive, send)  # type: ignore[literal-required]


def server_calls(scope: Scope, receive: Receive, send: Send) -> tuple[Receive, Send]:
    """The server's own calls when the application kept them, else the ones given."""
    kept: tuple[Receive, Send] | None = scope.get(_SERVER_CALLS)  # type: ignore[assignment]
    return kept if kept is not None else (receive, send)


def _as_future(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    if asyncio.isfuture(awaitable):
        return awaitable
    return asyncio.ensure_future(awaitable)


def _failed(future: asyncio.Future[Any]) -> bool:
    # exception() also marks it retrieved: asyncio would log a failed send otherwise.
    return future.cancelled() or future.exception() is not None


class ConnectedClient:
    """One WebSocket of the fan-out: a send in flight at most, a bounded backlog of events
    waiting for their turn, and ``ended``, resolved with the reason the connection is over."""

    __slots__ = (
        "_backlog",
        "_fanout",
        "_in_flight",
        "_limit",
        "_overflowed_at",
        "_receive",
        "_receiving",
        "_send",
        "_sent_at",
        "ended",
        "waiting",
    )

    def __init__(self, fanout: FanOut, receive: Receive, send: Send, *, backlog: int) -> None:
        self._fanout = fanout
        self._receive = receive
        self._send: Callable[[Message], Awaitable[None]] = send
        self._limit = backlog
        self._backlog: deque[Message] = deque()
        self._in_flight: asyncio.Future[Any] | None = None
        self._sent_at = 0.0
        self._overflowed_at: float | None = None
        self._receiving: asyncio.Future[Any] | None = None
        self.waiting = False  # in the fan-out's queue of clients waiting for a send
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._listen()

    # --- sending --------------------------------------------------------------------------

    def offer(self, message: Message) -> None:
        """Queue an event for this client; the fan-out sends it when it is the client's turn."""
        if self.ended.done():
            return
        if len(self._backlog) >= self._limit:  # not delivered to this client
            metrics.LIVE_DROPPED_BACKLOG.inc()
            if self._overflowed_at is None:
                self._overflowed_at = time.monotonic()
            return
        self._backlog.append(message)
        self._fanout.pending += 1
        if self._in_flight is None and not self.waiting:
            self._fanout.wait_for_turn(self)

    @property
    def ready(self) -> bool:
        """It has an event to send and nothing in flight."""
        return bool(self._backlog) and self._in_flight is None and not self.ended.done()

    def send_next(self) -> None:
        """Start sending the oldest waiting event (the client ends if the server refuses
        it: the socket is gone)."""
        self._fanout.pending -= 1
        try:
            future = _as_future(self._send(self._backlog.popleft()))
        except Exception:
            self.end(DISCONNECTED)
            return
        self._in_flight = future
        self._sent_at = time.monotonic()
        future.add_done_callback(self._on_sent)

    def _on_sent(self, future: asyncio.Future[Any]) -> None:
        self._in_flight = None
        if _failed(future):
            self.end(DISCONNECTED)
        self._fanout.sent(self)

    # --- receiving (only to see the client leave: what it sends is ignored) ---------------

    def _listen(self) -> None:
        try:
            self._receiving = _as_future(self._receive())
        except Exception:
            self.end(DISCONNECTED)
            return
        self._receiving.add_done_callback(self._on_received)

    def _on_received(self, future: asyncio.Future[Any]) -> None:
        self._receiving = None
        if _failed(future) or future.result()["type"] == "websocket.disconnect":
            self.end(DISCONNECTED)
        elif not self.ended.done():
            self._listen()

    # --- ending ---------------------------------------------------------------------------

    def lagging(self, now: float, send_timeout: float) -> str | None:
        """Why the client is to be dropped now, if it is."""
        if self._overflowed_at is not None and now - self._overflowed_at >= send_timeout:
            if len(self._backlog) > self._limit // 2:
                return TOO_SLOW_BACKLOG
            self._overflowed_at = None  # it caught up: forgiven
        if self._in_flight is not None and now - self._sent_at > send_timeout:
            return TOO_SLOW_SEND
        return None

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    def release(self) -> None:
        """Cancel what is in flight: the server holds the socket's reader and writer for a
        pending receive and send, and closing the socket waits for both."""
        self.end(DISCONNECTED)
        self._fanout.pending -= len(self._backlog)
        self._backlog.clear()
        for future in (self._in_flight, self._receiving):
            if future is not None:
                future.cancel()


class FanOut:
    """The clients of this process, and the one place that sends them the events."""

    def __init__(self, *, backlog: int, send_timeout: float, spread: float) -> None:
        self.clients: set[ConnectedClient] = set()
        self._backlog = backlog
        self._send_timeout = send_timeout
        self._spread = spread
        self._turns: deque[ConnectedClient] = deque()  # clients with events waiting, in turn
        self.pending = 0  # events waiting in the clients' backlogs
        self._pacer: asyncio.Task[None] | None = None
        self._allowance = 0  # sends the pacer still allows before its next tick
        self.closing = False

    def connect(self, receive: Receive, send: Send) -> ConnectedClient:
        client = ConnectedClient(self, receive, send, backlog=self._backlog)
        if self.closing:
            client.end(CLOSING)
        self.clients.add(client)
        return client

    def disconnect(self, client: ConnectedClient) -> None:
        client.release()
        self.clients.discard(client)

    async def deliver(self, frame: bytes) -> None:
        """One event to every client, in the order the events come. The message is shared:
        nothing downstream changes it."""
        # Text only (no "bytes": None): ASGI allows it, and the server has one key less to read.
        message = cast(
            "Message", {"type": "websocket.send", "text": frame.decode("utf-8", "replace")}
        )
        for index, client in enumerate(tuple(self.clients), 1):
            client.offer(message)
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._send_waiting()

    # --- pacing ---------------------------------------------------------------------------

    def wait_for_turn(self, client: ConnectedClient) -> None:
        client.waiting = True
        self._turns.append(client)

    def sent(self, client: ConnectedClient) -> None:
        """A client's send completed: it waits for another turn if it has more to send."""
        if client.ready and not client.waiting:
            self.wait_for_turn(client)
            self._send_waiting()

    def _send_waiting(self) -> None:
        if not self._turns:
            return
        if self._spread <= 0:
            self._send_turns(len(self._turns))
            return
        if self._allowance:  # a client whose send completed may go again within the tick
            self._allowance -= self._send_turns(self._allowance)
        if self._turns and (self._pacer is None or self._pacer.done()):
            self._pacer = asyncio.create_task(self._pace(), name="live-fanout-pacer")

    async def _pace(self) -> None:
        # The budget per tick only grows while anything waits: what is waiting when it comes
        # goes out evenly over ~spread (a budget recomputed each tick would thin out the tail).
        # It stops after a tick in which nothing was sent.
        budget = MIN_SENDS_PER_TICK
        try:
            while True:
                budget = max(budget, math.ceil(self.pending * PACE_TICK_SECONDS / self._spread))
                self._allowance = budget - self._send_turns(budget)
                await asyncio.sleep(PACE_TICK_SECONDS)
                if not self._turns and self._allowance == budget:
                    return
        finally:
            self._allowance = 0

    def _send_turns(self, count: int) -> int:
        """Up to ``count`` sends, one per client, in turn; returns how many were started."""
        started = 0
        while started < count and self._turns:
            client = self._turns.popleft()
            client.waiting = False
            if client.ready:
                client.send_next()
                started += 1
        return started

    def sweep(self) -> list[tuple[ConnectedClient, str]]:
        """Drop the clients that do not keep up; returns them with the reason."""
        now = time.monotonic()
        dropped = []
        for client in self.clients:
            if client.ended.done():
                continue
            reason = client.lagging(now, self._send_timeout)
            if reason is not None:
                client.end(reason)
                dropped.append((client, reason))
        return dropped

    async def watch_forever(self) -> None:
        # A quarter of the timeout: a slow client goes within 1.25x the timeout, and the
        # sweep (an attribute check per client) runs at most twice a second.
        interval = min(0.5, self._send_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def close_all(self) -> None:
        self.closing = True
        for client in self.clients:
            client.end(CLOSING)
        if self._pacer is not None:
            self._pacer.cancel()
