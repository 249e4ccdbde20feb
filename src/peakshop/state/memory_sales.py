"""Flash-sale admission in the process (embedded mode: this process is the only one).

One ``admit`` runs without an await, so under asyncio it is atomic: no other request can
interleave between the check and the take. The system of record then takes the same units
with a conditional UPDATE, and the job row goes into the same transaction: the job message
is not enqueued here (``enqueued`` is False)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from peakshop.state.ports import Admission, PreparedOrder, SaleSnapshot


@dataclass
class _Sale:
    remaining: int
    buyers: dict[str, int] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)
    expires_at: float = 0.0


class MemorySaleCounters:
    def __init__(self) -> None:
        self._sales: dict[int, _Sale] = {}

    async def admit(
        self,
        *,
        sale_id: int,
        user_id: str,
        quantity: int,
        per_user_limit: int,
        idempotency_key: str,
        prepare: Callable[[], PreparedOrder],
    ) -> Admission:
        sale = self._sales.get(sale_id)
        if sale is None:
            return Admission(outcome="not_loaded")
        prior = sale.idempotency.get(idempotency_key)
        if prior is not None:
            return Admission(outcome="replay", record=prior)
        if sale.remaining < quantity:
            return Admission(outcome="sold_out")
        held = sale.buyers.get(user_id, 0)
        if held + quantity > per_user_limit:
            return Admission(outcome="user_limit_reached")
        record = prepare().record  # no await before the take: still one atomic step
        sale.remaining -= quantity
        sale.buyers[user_id] = held + quantity
        sale.idempotency[idempotency_key] = record
        return Admission(outcome="admitted", record=record, enqueued=False)

    async def take(self, *, sale_id: int, user_id: str, quantity: int, per_user_limit: int) -> str:
        sale = self._sales.get(sale_id)
        if sale is None:
            return "not_loaded"
        if sale.remaining < quantity:
            return "sold_out"
        held = sale.buyers.get(user_id, 0)
        if held + quantity > per_user_limit:
            return "user_limit_reached"
        sale.remaining -= quantity
        sale.buyers[user_id] = held + quantity
        return "taken"

    async def release(self, *, sale_id: int, user_id: str, quantity: int) -> None:
        sale = self._sales.get(sale_id)
        if sale is None:
            return  # not held: the next load takes the system of record's numbers
        sale.remaining += quantity
        sale.buyers[user_id] = max(0, sale.buyers.get(user_id, 0) - quantity)

    async def load(self, snapshot: SaleSnapshot, *, replace: bool) -> bool:
        self._forget_expired()
        if not replace and snapshot.sale_id in self._sales:
            return False
        self._sales[snapshot.sale_id] = _Sale(
            remaining=snapshot.remaining,
            buyers=dict(snapshot.buyers),
            idempotency=dict(snapshot.idempotency),
            expires_at=snapshot.expires_at,
        )
        return True

    async def remaining(self, sale_id: int) -> int | None:
        sale = self._sales.get(sale_id)
        return None if sale is None else sale.remaining

    def _forget_expired(self) -> None:
        now = time.time()
        for sale_id in [i for i, sale in self._sales.items() if sale.expires_at < now]:
            del self._sales[sale_id]
