"""The queue port: how a job's message travels from whoever enqueued it to a worker.

A job is always a row of the ``jobs`` table first (status, attempts, payload: the system of
record); the queue only carries its message. Two implementations, chosen by configuration:

- ``SqlJobQueue`` (embedded): the table is the queue; workers claim due rows.
- ``RedisJobQueue`` (scaled): a Redis stream with a consumer group; acks, redelivery of the
  messages of a dead consumer, delayed retries.

Why not a task-queue library: admission must enqueue inside the same Lua script or SQLite
transaction that takes the stock, so the message format and storage have to be ours; no
maintained library offers a durable SQLite broker; and taskiq-redis's stream broker (the
obvious candidate, read at 1.2.4) only reclaims a dead consumer's messages after new ones
arrive and needs a separate scheduler process for delayed retries.
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class JobMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What travels on the queue: enough to recreate the job row if it is missing (scaled
    mode: the message can reach a worker before the API's own write of the row)."""

    id: str
    name: str
    payload: str  # JSON
    max_attempts: int
    subject: str | None = None
    # Epoch when it was enqueued: a worker that gets a message before its job row was
    # committed leaves it to its writer for a while instead of racing it.
    enqueued_at: float = 0.0


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    message: JobMessage
    receipt: str  # the queue's handle for ack and retry (stream entry id, or the job id)


class JobQueue(Protocol):
    # Messages younger than this are held back a moment before a worker starts them: a
    # queue that can deliver a message before its job row is committed (the Redis stream,
    # fed by the admission script) lets the writer commit first instead of racing it.
    settle_seconds: float

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, message: JobMessage) -> None:
        """Make a committed job row's message deliverable (again)."""

    async def publish_many(self, messages: list[JobMessage]) -> None:
        """``publish`` for a batch, in one round trip."""

    async def receive(self, *, consumer: str, count: int, wait: float) -> list[Delivery]:
        """Up to ``count`` deliveries, waiting up to ``wait`` seconds for the first. Includes
        the messages of consumers that died holding them (idle past the lease)."""

    async def ack(self, delivery: Delivery) -> None: ...

    async def ack_many(self, deliveries: list[Delivery]) -> None:
        """``ack`` for a batch, in one round trip."""

    async def retry_later(self, delivery: Delivery, *, at: float) -> None:
        """Deliver again at epoch ``at`` (the row says 'failed' until then)."""

    async def retry_many(self, deliveries: list[Delivery], *, at: float) -> None:
        """``retry_later`` for a batch, in one round trip."""

    async def depth(self) -> int:
        """Messages waiting to be processed (not counting delayed retries)."""
