"""Retry policies: exponential backoff with full jitter, per job type."""

from __future__ import annotations

import random

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int = 5
    base_delay: float = 0.5  # seconds before the 2nd attempt, doubled for each later one
    max_delay: float = 60.0

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based). Full jitter
        (uniform in [0, the exponential bound]) spreads the retries of a burst of failures
        instead of sending them back all at once."""
        bound = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(bound / 2, bound)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
