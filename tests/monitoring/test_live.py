"""Live events over a real WebSocket to real `peakshop serve` processes: refused without the
admin token, the events of a flash sale and of regular orders in order, metrics updates every
second, alerts, a slow client dropped while another keeps receiving, events crossing
processes over Redis, and /metrics adding up the processes of `peakshop serve --workers 2`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis
from prometheus_client.multiprocess import MultiProcessCollector

from peakshop.config import Settings
from peakshop.monitoring.live import CHANNEL
from tests.conftest import ADMIN, SERVICE, SERVICE_TOKEN, make_settings
from tests.coupons.support import metric
from tests.fixtures.factories import flash_sale_payload, idempotency_key, product_payload
from tests.fixtures.fleet import process_env
from tests.fixtures.processes import ServerProcess, spawn_server
from tests.monitoring.support import (
    SNAPSHOT_KEYS,
    Events,
    closed_by_server,
    epoch,
    silent_client,
    ws_url,
)

pytestmark = pytest.mark.slow


def base_settings(
    database_url: str, redis_url: str | None, tmp_path: Path, **extra: Any
) -> Settings:
    return make_settings(
        database_url,
        redis_url,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
        **extra,
    )


@pytest.fixture
def embedded(sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    # Every request is over the P99 threshold, and one second makes an alert.
    settings = base_settings(sqlite_url, None, tmp_path, alert_p99_ms=0.0001, alert_for_seconds=1)
    with spawn_server(process_env(settings), log_dir=tmp_path) as server:
        yield server


def alert_states(seen: list[dict[str, Any]]) -> list[str]:
    """The system-alert states, from the first firing one on."""
    states = [e["data"]["state"] for e in seen if e["type"] == "system-alert"]
    return states[states.index("firing") :] if "firing" in states else []


async def connect(
    session: aiohttp.ClientSession, url: str, *, headers: dict[str, str] | None = None
) -> Events:
    return Events(await session.ws_connect(url, headers=headers, heartbeat=None))


async def post(client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


async def test_without_the_admin_token_the_socket_is_closed_before_any_event(
    embedded: ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        refused = [
            (ws_url(embedded.url, token=None), None),
            (ws_url(embedded.url, token="wrong-token"), None),
            (ws_url(embedded.url, token=SERVICE_TOKEN), None),
            (ws_url(embedded.url, token=None), {"Authorization": "Bearer wrong-token"}),
            (ws_url(embedded.url, token=None), SERVICE),
        ]
        for url, headers in refused:
            async with session.ws_connect(url, headers=headers) as ws:
                message = await ws.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.CLOSE, (url, headers, message)
                assert message.data == 4401
        # The Authorization header works as well as ?token= for clients that can set it.
        events = await connect(session, ws_url(embedded.url, token=None), headers=ADMIN)
        await events.until(lambda seen: any(e["type"] == "metrics-update" for e in seen))
        await events.close()


async def test_events_of_a_flash_sale_and_a_regular_order(embedded: ServerProcess) -> None:
    async with (
        httpx.AsyncClient(base_url=embedded.url, timeout=10) as client,
        aiohttp.ClientSession() as session,
    ):
        product = await post(client, "/api/v1/inventory", product_payload(stock=50), ADMIN)
        sale = await post(
            client,
            "/api/v1/flash-sales",
            flash_sale_payload(product["id"], quantity=10, per_user_limit=2),
            ADMIN,
        )
        events = await connect(session, ws_url(embedded.url))
        await events.until(lambda seen: any(e["type"] == "metrics-update" for e in seen))

        flash_orders = []
        for user in ("ann", "bob", "cid"):
            answer = await post(
                client,
                f"/api/v1/flash-sales/{sale['id']}/orders",
                {"user_id": user, "quantity": 1},
                {**SERVICE, **idempotency_key()},
            )
            flash_orders.append(answer["order_id"])
        regular = await post(
            client,
            "/api/v1/orders",
            {"user_id": "dee", "items": [{"product_id": product["id"], "quantity": 2}]},
            {**SERVICE, **idempotency_key()},
        )
        orders = [*flash_orders, regular["order_id"]]

        def settled(seen: list[dict[str, Any]]) -> bool:
            confirmed = {
                e["data"]["order_id"]
                for e in seen
                if e["type"] == "order-update" and e["data"]["status"] == "confirmed"
            }
            sold = [
                e["data"]["sold"]
                for e in seen
                if e["type"] == "inventory-update" and e["data"]["sale_id"] == sale["id"]
            ]
            final = {"sale_id": sale["id"], "remaining": 7, "reserved": 0, "sold": 3}
            return (
                confirmed >= set(orders)
                and 3 in sold
                and "resolved" in alert_states(seen)[1:]
                and any(e["type"] == "metrics-update" and final in e["data"]["sales"] for e in seen)
            )

        seen = await events.until(settled, within=20)
        await events.close()

    for event in seen:
        assert set(event) == {"type", "at", "data"}
        assert event["at"].endswith("Z") and epoch(event["at"]) > 0
    updates = [e["data"] for e in seen if e["type"] == "order-update"]
    for order_id in orders:
        statuses = [u["status"] for u in updates if u["order_id"] == order_id]
        assert statuses == ["pending", "confirmed"], (order_id, statuses)
    for update in updates:
        assert set(update) == {"order_id", "status", "kind", "sale_id"}
        if update["order_id"] == regular["order_id"]:
            assert (update["kind"], update["sale_id"]) == ("regular", None)
        else:
            assert (update["kind"], update["sale_id"]) == ("flash_sale", sale["id"])

    stock = [e["data"] for e in seen if e["type"] == "inventory-update"]
    assert all(set(s) == {"sale_id", "remaining", "reserved", "sold"} for s in stock)
    assert all(s["remaining"] + s["reserved"] + s["sold"] == 10 for s in stock)
    assert stock[-1] == {"sale_id": sale["id"], "remaining": 7, "reserved": 0, "sold": 3}
    assert len(stock) <= 10  # coalesced: at most ten a second, and this took seconds

    metrics_updates = [e for e in seen if e["type"] == "metrics-update"]
    assert all(set(e["data"]) == SNAPSHOT_KEYS for e in metrics_updates)
    assert {e["data"]["pid"] for e in metrics_updates} == {metrics_updates[0]["data"]["pid"]}
    stamps = [epoch(e["at"]) for e in metrics_updates]
    assert all(0.5 < b - a < 1.6 for a, b in itertools.pairwise(stamps)), stamps
    assert any(
        {"sale_id": sale["id"], "remaining": 7, "reserved": 0, "sold": 3} in e["data"]["sales"]
        for e in metrics_updates
    )

    # The alert may have fired and resolved before the client connected (the start-up
    # requests); from its first firing seen, it resolves.
    alerts = [e["data"] for e in seen if e["type"] == "system-alert"]
    first = [a["state"] for a in alerts].index("firing")
    assert [(a["name"], a["state"]) for a in alerts][first : first + 2] == [
        ("high_latency_p99", "firing"),
        ("high_latency_p99", "resolved"),
    ]
    firing = alerts[first]
    assert set(firing) == {"name", "severity", "state", "message", "value", "threshold", "pid"}
    assert firing["severity"] == "warning" and firing["threshold"] == 0.0001
    assert firing["value"] > firing["threshold"]


# --- scaled mode -------------------------------------------------------------------------------


@pytest.fixture
def scaled_settings(postgres_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return base_settings(
        postgres_url,
        redis_url,
        tmp_path,
        worker_in_process=True,
        ws_client_backlog=20,
        ws_send_timeout_seconds=2.0,
    )


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_client_that_never_reads_is_dropped_and_the_others_keep_receiving(
    scaled_settings: Settings, tmp_path: Path
) -> None:
    with spawn_server(process_env(scaled_settings), log_dir=tmp_path) as server:
        async with aiohttp.ClientSession() as session:
            reader = await connect(session, ws_url(server.url))
            await reader.until(lambda seen: bool(seen))
            silent = silent_client(server.url)
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                for _ in range(50):  # the two clients are subscribed
                    if metric((await client.get("/metrics")).text, "peakshop_live_clients") == 2:
                        break
                    await asyncio.sleep(0.1)
                # A flood on the process's channel, straight through Redis: 64 KiB events
                # fill the silent client's buffers and backlog within a second or two.
                flood = redis.Redis.from_url(scaled_settings.redis_url or "")
                frame = (
                    b'{"type":"flood","at":"2026-01-01T00:00:00Z","data":"' + b"x" * 65_000 + b'"}'
                )
                dropped = 0.0
                deadline = time.monotonic() + 30
                try:
                    while dropped < 1 and time.monotonic() < deadline:
                        for _ in range(10):
                            flood.publish(CHANNEL, frame)
                        await asyncio.sleep(0.1)
                        text = (await client.get("/metrics")).text
                        dropped = sum(
                            metric(text, "peakshop_live_clients_dropped_total", reason=reason)
                            for reason in ("backlog", "send_timeout")
                        )
                finally:
                    flood.close()
                assert dropped == 1, server.log()[-3000:]
                flood_ended = time.monotonic()
                # The reading client is still there, and gets the next metrics updates.
                await reader.until(
                    lambda seen: (
                        sum(
                            1
                            for e, at in zip(seen, reader.received_at, strict=True)
                            if e["type"] == "metrics-update" and at > flood_ended
                        )
                        >= 2
                    ),
                    within=10,
                )
                text = (await client.get("/metrics")).text
                assert metric(text, "peakshop_live_clients") == 1
                assert (
                    metric(text, "peakshop_live_events_dropped_total", where="client_backlog") > 0
                )
            assert closed_by_server(silent)
            silent.close()
            await reader.close()
    assert "live_client_dropped" in server.log()


@pytest.mark.postgres
@pytest.mark.redis
async def test_an_order_placed_through_one_process_reaches_a_client_of_another(
    scaled_settings: Settings, tmp_path: Path
) -> None:
    env = process_env(scaled_settings)
    with spawn_server(env, log_dir=tmp_path) as a, spawn_server(env, log_dir=tmp_path) as b:
        async with httpx.AsyncClient(timeout=10) as client:
            pid_of_b = (
                await client.get(f"{b.url}/api/v1/monitoring/metrics", headers=ADMIN)
            ).json()["data"]["pid"]
            product = await post(client, f"{a.url}/api/v1/inventory", product_payload(), ADMIN)
            sale = await post(
                client, f"{a.url}/api/v1/flash-sales", flash_sale_payload(product["id"]), ADMIN
            )
            async with aiohttp.ClientSession() as session:
                events = await connect(session, ws_url(a.url))
                # B publishes once it knows a client listens somewhere (checked every second):
                # its metrics updates reaching A's client say it does.
                await events.until(
                    lambda seen: any(
                        e["type"] == "metrics-update" and e["data"]["pid"] == pid_of_b for e in seen
                    )
                )
                order = await post(
                    client,
                    f"{b.url}/api/v1/flash-sales/{sale['id']}/orders",
                    {"user_id": "eve", "quantity": 1},
                    {**SERVICE, **idempotency_key()},
                )
                seen = await events.until(
                    lambda seen: any(
                        e["type"] == "order-update"
                        and e["data"]["order_id"] == order["order_id"]
                        and e["data"]["status"] == "confirmed"
                        for e in seen
                    )
                )
                await events.close()
    statuses = [
        e["data"]["status"]
        for e in seen
        if e["type"] == "order-update" and e["data"]["order_id"] == order["order_id"]
    ]
    assert statuses == ["pending", "confirmed"]
    assert {e["data"]["pid"] for e in seen if e["type"] == "metrics-update"} >= {pid_of_b}
    assert len({e["data"]["pid"] for e in seen if e["type"] == "metrics-update"}) == 2


@pytest.mark.postgres
@pytest.mark.redis
def test_metrics_add_up_across_the_processes_of_serve_workers_2(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = base_settings(postgres_url, redis_url, tmp_path)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**process_env(settings), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    requests = 200
    with spawn_server(env, log_dir=tmp_path, workers=2) as server:

        async def hammer() -> None:
            # A new connection per request, many at once: both processes accept some.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=10) as client:

                async def one(_: int) -> None:
                    response = await client.get(f"{server.url}/health")
                    assert response.status_code == 200

                await asyncio.gather(*(one(i) for i in range(requests)))

        asyncio.run(hammer())
        totals = set()
        pids: set[str] = set()
        for _ in range(10):  # each scrape is answered by either process: the same sums
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            totals.add(metric(text, "peakshop_http_requests_total", route="/health"))
            pids |= {
                line.split('pid="')[1].split('"')[0]
                for line in text.splitlines()
                if line.startswith("peakshop_process_resident_memory_bytes{")
            }
        per_process = {}
        for path in folder.glob("counter_*.db"):
            merged = MultiProcessCollector.merge([str(path)], accumulate=True)
            per_process[path.name] = sum(
                sample.value
                for family in merged
                for sample in family.samples
                if sample.name == "peakshop_http_requests_total"
                and sample.labels.get("route") == "/health"
            )
    assert totals == {float(requests)}
    assert sum(per_process.values()) == requests
    assert len(pids) == 2  # one RSS series per process (a pid label)
    print(f"\n/health requests per process: {sorted(per_process.values())}")
