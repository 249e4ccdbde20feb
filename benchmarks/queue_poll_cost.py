"""What the embedded queue's poll (``jobs.repository.due_jobs``) costs with the worker's
in-flight ids excluded: 10,000 due jobs in a scratch SQLite file, polled for 100 with 0,
100 and 1,600 ids excluded (a flash sale's in-flight set, 16 batches of 100).

    python benchmarks/queue_poll_cost.py [--polls 50]

The excluded rows are the oldest and still queued, the worst case: in a run most in-flight
rows are already claimed (``processing``) and the queued branch never walks them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from peakshop.db import metadata
from peakshop.jobs import repository
from peakshop.jobs.models import jobs

JOBS = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        engine = sa.create_engine(f"sqlite:///{Path(scratch) / 'jobs.db'}")
        metadata.create_all(engine, tables=[jobs])
        now, stamp = time.time(), datetime.now(UTC)
        rows = [
            {
                "id": f"job_{number:08d}",
                "name": "orders.process",
                "payload": "{}",
                "status": "queued",
                "attempts": 0,
                "max_attempts": 5,
                "available_at": now - 10 + number * 1e-4,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for number in range(JOBS)
        ]
        with engine.begin() as conn:
            conn.execute(jobs.insert(), rows)
        with engine.connect() as conn:
            for excluded in (0, 100, 1_600):
                exclude = {f"job_{number:08d}" for number in range(excluded)}
                for _ in range(3):  # warm the statement cache and the pages
                    repository.due_jobs(conn, now=time.time(), limit=100, exclude=exclude)
                started = time.perf_counter()
                for _ in range(args.polls):
                    repository.due_jobs(conn, now=time.time(), limit=100, exclude=exclude)
                per_poll = (time.perf_counter() - started) / args.polls * 1000
                print(f"{excluded:>5} ids excluded: {per_poll:.2f} ms per poll of 100")
        engine.dispose()


if __name__ == "__main__":
    main()
