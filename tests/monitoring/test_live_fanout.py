"""The live events' fan-out against real `peakshop serve` processes: many clients of one
process get the same events once and in the same order; while a client that never reads is
dropped, the reading ones get every event of a flood once and in order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis

from peakshop.config import Settings
from peakshop.monitoring.live import CHANNEL
from tests.conftest import make_settings
from tests.coupons.support import metric
from tests.fixtures.fleet import process_env
from tests.fixtures.processes import spawn_server
from tests.monitoring.support import Events, closed_by_server, silent_client, ws_url

pytestmark = pytest.mark.slow

CLIENTS = 40


def _keys(events: Events) -> list[tuple[str, str]]:
    return [(event["type"], event["at"]) for event in events.events]


async def test_every_client_gets_the_same_events_once_and_in_order(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        sqlite_url, validation_log_dead_letter_path=str(tmp_path / "dead.jsonl")
    )
    with spawn_server(process_env(settings), log_dir=tmp_path) as server:
        async with aiohttp.ClientSession() as session:
            clients = [
                Events(await session.ws_connect(ws_url(server.url), heartbeat=None))
                for _ in range(CLIENTS)
            ]
            last = clients[-1]  # connected after all the others: it sees the fewest events
            await last.until(lambda seen: len(seen) >= 3)  # metrics updates, one a second
            wanted = _keys(last)[:3]
            for client in clients:
                await client.until(lambda _, c=client: all(k in _keys(c) for k in wanted))
                keys = _keys(client)
                start = keys.index(wanted[0])
                assert keys[start : start + 3] == wanted
                assert len(set(keys)) == len(keys)  # once
                ats = [at for kind, at in keys if kind == "metrics-update"]
                assert ats == sorted(ats)  # in order
            for client in clients:
                await client.close()
    assert "live_client_dropped" not in server.log()


@pytest.fixture
def scaled_settings(postgres_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        postgres_url,
        redis_url,
        validation_log_dead_letter_path=str(tmp_path / "dead.jsonl"),
        worker_in_process=True,
        ws_client_backlog=1000,  # the readers never fall that far behind
        ws_send_timeout_seconds=2.0,
    )


def _flood_frame(seq: int) -> bytes:
    pad = b"x" * 16_000  # fills the silent client's buffers within seconds
    return b'{"type":"flood","at":"2026-01-01T00:00:00Z","data":{"seq":%d,"pad":"%s"}}' % (
        seq,
        pad,
    )


def _seqs(events: Events) -> list[int]:
    return [e["data"]["seq"] for e in events.events if e["type"] == "flood"]


@pytest.mark.postgres
@pytest.mark.redis
async def test_readers_get_every_event_of_a_flood_in_order_while_a_silent_client_is_dropped(
    scaled_settings: Settings, tmp_path: Path
) -> None:
    with spawn_server(process_env(scaled_settings), log_dir=tmp_path) as server:
        async with aiohttp.ClientSession() as session:
            readers = [
                Events(await session.ws_connect(ws_url(server.url), heartbeat=None))
                for _ in range(5)
            ]
            for reader in readers:  # subscribed: the process's own updates came through Redis
                await reader.until(lambda seen: bool(seen))
            silent = silent_client(server.url)
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def scrape() -> Any:
                    return (await client.get("/metrics")).text

                for _ in range(50):
                    if metric(await scrape(), "peakshop_live_clients") == 6:
                        break
                    await asyncio.sleep(0.1)
                flood = redis.Redis.from_url(scaled_settings.redis_url or "")
                sent = 0
                dropped = 0.0
                deadline = time.monotonic() + 30
                try:
                    while dropped < 1 and time.monotonic() < deadline:
                        for _ in range(20):
                            flood.publish(CHANNEL, _flood_frame(sent))
                            sent += 1
                        await asyncio.sleep(0.1)
                        text = await scrape()
                        dropped = sum(
                            metric(text, "peakshop_live_clients_dropped_total", reason=reason)
                            for reason in ("backlog", "send_timeout")
                        )
                    for _ in range(20):  # and after the drop
                        flood.publish(CHANNEL, _flood_frame(sent))
                        sent += 1
                finally:
                    flood.close()
                assert dropped == 1, server.log()[-3000:]
                for reader in readers:
                    await reader.until(lambda _, r=reader: len(_seqs(r)) >= sent, within=20)
                    assert _seqs(reader) == list(range(sent))
                assert metric(await scrape(), "peakshop_live_clients") == 5
            assert closed_by_server(silent)
            silent.close()
            for reader in readers:
                await reader.close()
