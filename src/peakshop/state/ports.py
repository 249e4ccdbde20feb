"""The interfaces the domains use for hot shared state, and the factory that picks them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import msgspec

from peakshop.config import Settings
from peakshop.db import Database
from peakshop.jobs.queue import JobMessage, JobQueue

MessageHandler = Callable[[str], Awaitable[None]]
ResyncHandler = Callable[[], Awaitable[None]]


class UsageCounters(Protocol):
    """Coupon usage as the hot path reads it: global uses and per-user uses, without a query.

    The system of record stays authoritative (redemption is decided there); these counters
    are updated after each committed redemption and rebuilt from the database by ``load``.
    """

    async def get(self, coupon_id: int, user_id: str) -> tuple[int, int]: ...

    async def record(self, coupon_id: int, user_id: str) -> None: ...

    async def release(self, coupon_id: int, user_id: str) -> None:
        """Undo one ``record`` (the redemption was released with its order)."""

    async def load(
        self, *, totals: dict[int, int], per_user: Iterable[tuple[int, str, int]]
    ) -> None: ...

    async def is_loaded(self) -> bool: ...


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """The hot store's answer to a flash-sale order attempt.

    ``outcome``: admitted, replay (the idempotency key is known: ``record`` is the first
    admission's), sold_out, user_limit_reached, or not_loaded (the hot store does not hold
    this sale: load it from the system of record and ask again). ``enqueued`` says whether
    the order's job message was enqueued in the same atomic step.
    """

    outcome: str
    record: str | None = None
    enqueued: bool = False


class PreparedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """What an admitted attempt leaves in the hot store: ``record``, kept under its
    idempotency key (see orders.repository.admission_record), and ``message``, the order's
    job (enqueued in the same atomic step where the store can). ``admit`` asks for it through
    ``prepare()`` only when it needs it: the store in the process only for a winner, so a
    refused buyer costs no ids, hash or message."""

    record: str
    message: JobMessage


class SaleSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A sale's hot state as the system of record has it."""

    sale_id: int
    remaining: int
    buyers: list[tuple[str, int]]  # (user, units held)
    idempotency: dict[str, str]  # key -> record of the admitted order
    expires_at: float  # epoch: the hot keys may go after this (the sale ended a day before)


class SaleCounters(Protocol):
    """Flash-sale admission: one atomic step checks the idempotency key, the stock and the
    per-user cap, takes the units and (where the store can) enqueues the order's job."""

    async def admit(
        self,
        *,
        sale_id: int,
        user_id: str,
        quantity: int,
        per_user_limit: int,
        idempotency_key: str,
        prepare: Callable[[], PreparedOrder],
    ) -> Admission: ...

    async def take(self, *, sale_id: int, user_id: str, quantity: int, per_user_limit: int) -> str:
        """Take units again for an order that already exists (a dead letter retried): the
        checks of ``admit`` without the idempotency key and the enqueue. Returns the outcome
        (taken, sold_out, user_limit_reached, not_loaded)."""

    async def release(self, *, sale_id: int, user_id: str, quantity: int) -> None:
        """Give units back (a cancelled or failed order), after the system of record did."""

    async def load(self, snapshot: SaleSnapshot, *, replace: bool) -> bool:
        """Set a sale's hot state; with ``replace=False`` only if the store lacks it.
        True if it was written."""

    async def remaining(self, sale_id: int) -> int | None:
        """Units left in the hot store, None if it does not hold the sale."""


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

    @property
    def sales(self) -> SaleCounters: ...

    @property
    def queue(self) -> JobQueue: ...

    async def start(self) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def build_state(settings: Settings, db: Database) -> HotState:
    if settings.redis_url:
        from peakshop.state.redis import RedisState

        return RedisState(settings.redis_url, lease_seconds=settings.job_lease_seconds)
    from peakshop.state.memory import MemoryState

    return MemoryState(db)
