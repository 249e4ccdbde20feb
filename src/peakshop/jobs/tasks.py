"""The jobs domain's own sweep: publish again the messages that may have been lost."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from peakshop.jobs import repository
from peakshop.jobs.worker import Sweep
from peakshop.monitoring import metrics

if TYPE_CHECKING:
    from peakshop.runtime import Runtime

REPUBLISH_BATCH = 500


async def republish_lost(runtime: Runtime) -> None:
    """Jobs overdue past the grace period get their message again (a Redis flush, an API
    process killed between its commit and its publish). Harmless when nothing was lost:
    ``start_jobs`` runs one attempt at a time and skips finished jobs."""
    async with runtime.db.read() as conn:
        rows = await repository.lost_messages(
            conn,
            now=time.time(),
            grace=runtime.settings.job_republish_grace_seconds,
            limit=REPUBLISH_BATCH,
        )
        dead = await repository.count_dead_letters(conn)
    for row in rows:
        await runtime.queue.publish(repository.message_of(row))
    metrics.DEAD_LETTERS.set(dead)
    metrics.QUEUE_DEPTH.set(await runtime.queue.depth())


SWEEPS = [Sweep(name="republish-lost-jobs", every=5.0, run=republish_lost)]
