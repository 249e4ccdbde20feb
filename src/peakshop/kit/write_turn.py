"""Whose turn it is to write: one writer at a time, requests before background work.

SQLite has one writer per file. Under a flash sale two kinds of writers queue for it: the
group commit of admitted orders, whose buyers wait for their answer, and the worker's
batches (claims, confirmations, notifications), which nobody waits for. A plain FIFO lock
lets a buyer queue behind several worker batches; here a request that is waiting goes
before any background writer that is waiting (a running writer is never interrupted).
Written by hand because asyncio's locks have no priority and no library offers one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class WriteTurn:
    def __init__(self) -> None:
        self._busy = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, *, background: bool = False) -> AsyncIterator[None]:
        await self._acquire(background)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, background: bool) -> None:
        if not self._busy and not self._urgent and not self._background:
            self._busy = True
            return
        turn = asyncio.get_running_loop().create_future()
        (self._background if background else self._urgent).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed the turn just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # _release may have dropped it already
                    (self._background if background else self._urgent).remove(turn)
            raise

    def _release(self) -> None:
        for waiting in (self._urgent, self._background):
            while waiting:
                turn = waiting.popleft()
                if not turn.done():
                    turn.set_result(None)  # _busy stays True: the turn passes on
                    return
        self._busy = False
