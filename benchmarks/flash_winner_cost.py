"""CPU per flash-sale winner, in-process: admission, the group commit, and the worker's
processing (claim, confirmation, its notification job), with the in-process worker on.

The application is called directly with ASGI messages by 100 concurrent callers, each
buying one unit of a sale as big as the run, on a fresh SQLite database; the run ends when
every order is confirmed. It prints the process's CPU per winner and the event loop's
(the main thread's) share of it, for comparing two checkouts on the same machine:

    python benchmarks/flash_winner_cost.py --orders 3000 --rounds 3

(run it with ``PYTHONPATH=<other checkout>/src`` for the other one). The callers' own cost
(building and reading the ASGI messages) is counted in the main thread too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from hot_paths_inprocess import SERVICE, Caller, new_sale, start_app


async def one_round(orders: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="peakshop-winners-"))
    app, stop = await start_app(folder, worker_in_process=True)
    call = Caller(app)
    service = [(b"authorization", SERVICE)]
    path = await new_sale(call, "winners", orders)
    engine = sa.create_engine(f"sqlite:///{folder / 'bench.db'}")

    def confirmed() -> int:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM orders WHERE status = 'confirmed'")
            return int(conn.execute(query).scalar_one())

    todo = iter(range(orders))

    async def caller() -> None:
        for n in todo:
            body = json.dumps({"user_id": f"buyer-{n}", "quantity": 1}).encode()
            status, answer = await call(
                "POST", path, body, [*service, (b"idempotency-key", f"w{n}".encode())]
            )
            assert status == 202, answer

    cpu, main, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(100)))
    while True:  # the worker has confirmed them all
        if await asyncio.to_thread(confirmed) >= orders:
            break
        await asyncio.sleep(0.02)
    result = {
        "cpu_us_per_winner": (time.process_time() - cpu) / orders * 1e6,
        "event_loop_us_per_winner": (time.thread_time() - main) / orders * 1e6,
        "seconds": time.perf_counter() - wall,
    }
    await stop()
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [asyncio.run(one_round(args.orders)) for _ in range(args.rounds)]
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        shown = ", ".join(f"{v:,.2f}" for v in values)
        print(f"{key}: median {statistics.median(values):,.2f} (rounds: {shown})")


if __name__ == "__main__":
    main()
