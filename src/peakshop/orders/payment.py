"""Order confirmation, pluggable: immediate (the default), or a payment simulator with a
failure rate and a delay, for tests and benchmarks of the retry and dead-letter paths."""

from __future__ import annotations

import asyncio
import random
from typing import Protocol

from peakshop.config import Settings
from peakshop.orders.errors import PaymentFailed


class Confirmation(Protocol):
    async def confirm(self, *, order_id: str, total_cents: int) -> None:
        """Return when the order is paid; raise PaymentFailed for a transient failure."""


class ImmediateConfirmation:
    async def confirm(self, *, order_id: str, total_cents: int) -> None:
        return None


class SimulatedPayment:
    def __init__(self, *, failure_rate: float, delay_seconds: float, seed: int | None) -> None:
        self._failure_rate = failure_rate
        self._delay = delay_seconds
        self._random = random.Random(seed)

    async def confirm(self, *, order_id: str, total_cents: int) -> None:
        if self._delay > 0:
            await asyncio.sleep(self._delay)
        if self._random.random() < self._failure_rate:
            raise PaymentFailed(f"simulated payment failure for order {order_id}")


def build_confirmation(settings: Settings) -> Confirmation:
    if settings.payment_mode == "simulated":
        return SimulatedPayment(
            failure_rate=settings.payment_failure_rate,
            delay_seconds=settings.payment_delay_ms / 1000,
            seed=settings.payment_seed,
        )
    return ImmediateConfirmation()
