"""Per-request cost of the hot paths, in-process (no server, no network).

The application is called directly with ASGI messages, one request after another, on a
fresh SQLite database, with no in-process worker (its own database traffic would be counted
too): coupon validation (a valid coupon), a refused flash-sale order (sold out: the hot-store
path losers take), an admitted flash-sale order (a winner: its group-commit transaction) and
an uncached product list (a new price floor each time). It measures what the application adds
per request: the framework, the handler, the request id, the metrics and the monitor's
per-second counters, and for the database paths how many calls aiosqlite hands to its
thread and back per request. Run it on two checkouts to compare them (the printed lines are
the medians of the rounds):

    python benchmarks/hot_paths_inprocess.py --requests 20000 --rounds 7 --slow-requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from peakshop import migrate
from peakshop.app import create_app
from peakshop.config import load_settings

ADMIN = b"Bearer bench-admin-token-0123456789abcdef"
SERVICE = b"Bearer bench-service-token-0123456789abcdef"


Stop = Callable[[], Awaitable[None]]


class Caller:
    """Calls the ASGI app with one HTTP request and collects the status and the body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        query: bytes = b"",
    ) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


async def start_app(folder: Path, *, worker_in_process: bool) -> tuple[Any, Stop]:
    """The app on a fresh, migrated SQLite database in ``folder``, its lifespan started (no
    rate limits, quiet logs); returns it and what stops it."""
    settings = load_settings(
        environ={},
        env="production",
        database_url=f"sqlite+aiosqlite:///{folder / 'bench.db'}",
        admin_token=ADMIN.decode()[7:],
        service_token=SERVICE.decode()[7:],
        log_level="WARNING",
        validation_log_dead_letter_path=str(folder / "dead.jsonl"),
        rate_limit_validate_per_user="",
        rate_limit_orders_per_user="",
        worker_in_process=worker_in_process,
    )
    await migrate.upgrade_async(settings)
    app: Any = create_app(settings)  # called with plain dicts, not Litestar's typed events
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan

    return app, stop


async def new_sale(call: Caller, name: str, quantity: int) -> str:
    """A product with ``quantity`` units, all in a sale active now (cap 1 per buyer); the
    path its orders are placed on."""
    admin = [(b"authorization", ADMIN)]
    now = datetime.now(UTC)
    product = {"name": name, "price": "10.00", "stock": quantity}
    status, answer = await call("POST", "/api/v1/inventory", json.dumps(product).encode(), admin)
    assert status == 201, answer
    sale = {
        "product_id": json.loads(answer)["id"],
        "price": "5.00",
        "quantity": quantity,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "per_user_limit": 1,
    }
    status, answer = await call("POST", "/api/v1/flash-sales", json.dumps(sale).encode(), admin)
    assert status == 201, answer
    return f"/api/v1/flash-sales/{json.loads(answer)['id']}/orders"


async def run(requests: int, rounds: int, slow_requests: int) -> dict[str, list[float]]:
    app, stop = await start_app(
        Path(tempfile.mkdtemp(prefix="peakshop-hotpaths-")), worker_in_process=False
    )
    call = Caller(app)
    admin = [(b"authorization", ADMIN)]
    service = [(b"authorization", SERVICE)]
    now = datetime.now(UTC)
    coupon = {
        "code": "BENCH10",
        "type": "time_window",
        "discount_type": "percent",
        "discount_value": "10",
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat(),
        "per_user_limit": 1,
    }
    status, answer = await call("POST", "/api/v1/coupons", json.dumps(coupon).encode(), admin)
    assert status == 201, answer
    sale_path = await new_sale(call, "bench", 1)
    first = json.dumps({"user_id": "winner", "quantity": 1}).encode()
    status, answer = await call("POST", sale_path, first, [*service, (b"idempotency-key", b"w")])
    assert status == 202, answer

    validate_body = json.dumps(
        {"code": "BENCH10", "user_id": "user_0000042", "order_total": "49.90"}
    ).encode()
    loser_body = json.dumps({"user_id": "loser", "quantity": 1}).encode()

    async def validate_once(i: int) -> int:
        return (await call("POST", "/api/v1/coupons/validate", validate_body, service))[0]

    async def refused_once(i: int) -> int:
        key = [*service, (b"idempotency-key", f"k{i}".encode())]
        return (await call("POST", sale_path, loser_body, key))[0]

    # An admitted order each time (a sale big enough for all of them) and a list page no one
    # asked for before (a new price floor each time, on a few hundred products).
    big_path = await new_sale(call, "bench-big", 100_000)
    for n in range(300):
        listed = {"name": f"listed-{n}", "price": f"{1 + n}.00", "stock": 1}
        status, answer = await call("POST", "/api/v1/products", json.dumps(listed).encode(), admin)
        assert status == 201, answer

    async def admitted_once(i: int) -> int:
        body = json.dumps({"user_id": f"buyer-{i}", "quantity": 1}).encode()
        key = [*service, (b"idempotency-key", f"a{i}".encode())]
        return (await call("POST", big_path, body, key))[0]

    async def uncached_list_once(i: int) -> int:
        query = f"min_price={i // 100}.{i % 100:02d}&sort=price_asc&limit=20".encode()
        return (await call("GET", "/api/v1/products", b"", [], query))[0]

    paths = (
        ("validate", validate_once, 200, requests, 2_000),
        ("flash_sale_refused", refused_once, 409, requests, 2_000),
        ("flash_sale_admitted", admitted_once, 202, slow_requests, 100),
        ("list_uncached", uncached_list_once, 200, slow_requests, 100),
    )
    results: dict[str, list[float]] = {name: [] for name, *_ in paths}
    try:
        seen = 0
        for name, once, expected, count, warmup in paths:
            for _ in range(warmup):
                assert await once(seen) == expected
                seen += 1
            handoffs_before = HANDOFFS[0]
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(count):
                    assert await once(seen) == expected
                    seen += 1
                results[name].append((time.perf_counter() - started) / count * 1e6)
            handoffs[name] = (HANDOFFS[0] - handoffs_before) / (rounds * count)
    finally:
        await stop()
    return results


# Every call aiosqlite hands to its thread and back goes through Connection._execute.
HANDOFFS = [0]
handoffs: dict[str, float] = {}
_execute: Any = aiosqlite.Connection._execute


async def _counted_execute(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
    HANDOFFS[0] += 1
    return await _execute(self, fn, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--slow-requests", type=int, default=300, help="of the database paths")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    aiosqlite.Connection._execute = _counted_execute  # type: ignore[method-assign]
    results = asyncio.run(run(args.requests, args.rounds, args.slow_requests))
    for name, values in results.items():
        count = (
            args.slow_requests
            if name in ("flash_sale_admitted", "list_uncached")
            else args.requests
        )
        print(
            f"{name}: median {statistics.median(values):.2f} us/request "
            f"(min {min(values):.2f}, max {max(values):.2f}; {args.rounds} rounds of "
            f"{count}), {1e6 / statistics.median(values):,.0f} req/s on one core; "
            f"{handoffs[name]:.1f} aiosqlite hand-offs per request",
            file=sys.stdout,
        )


if __name__ == "__main__":
    main()
