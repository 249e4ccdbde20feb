"""Per-request cost of the two thin ASGI handlers, in-process (no server, no network).

The application is called directly with ASGI messages, one request after another, on a
fresh SQLite database: coupon validation (a valid coupon) and a refused flash-sale order
(sold out: the hot-store path losers take). It measures what the application adds per
request: the framework, the handler, the request id, the metrics and the monitor's per-second
counters. Run it on two checkouts to compare them (the printed lines are the medians of the
rounds, in microseconds per request):

    python benchmarks/hot_paths_inprocess.py --requests 20000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from peakshop import migrate
from peakshop.app import create_app
from peakshop.config import load_settings

ADMIN = b"Bearer bench-admin-token-0123456789abcdef"
SERVICE = b"Bearer bench-service-token-0123456789abcdef"


class Caller:
    """Calls the ASGI app with one HTTP request and collects the status and the body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
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


async def run(requests: int, rounds: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="peakshop-hotpaths-"))
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
    )
    await migrate.upgrade_async(settings)
    app = create_app(settings)
    asgi: Any = app  # called with plain dicts, not Litestar's typed ASGI events
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        asgi({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
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
    product = {"name": "bench", "price": "10.00", "stock": 10}
    status, answer = await call("POST", "/api/v1/inventory", json.dumps(product).encode(), admin)
    assert status == 201, answer
    sale = {
        "product_id": json.loads(answer)["id"],
        "price": "5.00",
        "quantity": 1,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "per_user_limit": 1,
    }
    status, answer = await call("POST", "/api/v1/flash-sales", json.dumps(sale).encode(), admin)
    assert status == 201, answer
    sale_path = f"/api/v1/flash-sales/{json.loads(answer)['id']}/orders"
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

    results: dict[str, list[float]] = {"validate": [], "flash_sale_refused": []}
    try:
        for name, once, expected in (
            ("validate", validate_once, 200),
            ("flash_sale_refused", refused_once, 409),
        ):
            for i in range(2_000):  # warm-up
                assert await once(i) == expected
            for r in range(rounds):
                started = time.perf_counter()
                for i in range(requests):
                    await once(r * requests + i)
                results[name].append((time.perf_counter() - started) / requests * 1e6)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests, args.rounds))
    for name, values in results.items():
        print(
            f"{name}: median {statistics.median(values):.2f} us/request "
            f"(min {min(values):.2f}, max {max(values):.2f}; {args.rounds} rounds of "
            f"{args.requests}), {1e6 / statistics.median(values):,.0f} req/s on one core",
            file=sys.stdout,
        )


if __name__ == "__main__":
    main()
