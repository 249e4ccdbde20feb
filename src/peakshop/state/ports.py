"""The interfaces the domains use for hot shared state, and the factory that picks them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from peakshop.config import Settings

MessageHandler = Callable[[str], Awaitable[None]]
ResyncHandler = Callable[[], Awaitable[None]]


class UsageCounters(Protocol):
    """Coupon usage as the hot path reads it: global uses and per-user uses, without a query.

    The system of record stays authoritative (redemption is decided there); these counters
    are updated after each committed redemption and rebuilt from the database by ``load``.
    """

    async def get(self, coupon_id: int, user_id: str) -> tuple[int, int]: ...

    async def record(self, coupon_id: int, user_id: str) -> None: ...

    async def load(
        self, *, totals: dict[int, int], per_user: Iterable[tuple[int, str, int]]
    ) -> None: ...

    async def is_loaded(self) -> bool: ...


class Broadcast(Protocol):
    """Fire-and-forget messages to every process (including this one)."""

    async def publish(self, channel: str, message: str) -> None: ...

    def subscribe(
        self, channel: str, handler: MessageHandler, *, on_resync: ResyncHandler | None = None
    ) -> None:
        """``on_resync`` runs after a (re)connection, when messages may have been missed."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class HotState(Protocol):
    @property
    def counters(self) -> UsageCounters: ...

    @property
    def broadcast(self) -> Broadcast: ...

    async def start(self) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def build_state(settings: Settings) -> HotState:
    if settings.redis_url:
        from peakshop.state.redis import RedisState

        return RedisState(settings.redis_url)
    from peakshop.state.memory import MemoryState

    return MemoryState()
