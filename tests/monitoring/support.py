"""Helpers of the monitoring tests: the monitor's history over HTTP, live events over a real
WebSocket, a client that never reads."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.coupons.support import Client

SNAPSHOT_KEYS = {
    "pid",
    "requests_per_second",
    "error_rate",
    "latency_ms",
    "queue",
    "validation_log_queue",
    "cache_hit_rate",
    "rss_bytes",
    "event_loop_lag_ms",
    "sales",
    "alerts_active",
    "client_error_rate",
}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def samples_after(
    client: Client, after: float, count: int, within: float = 10.0
) -> list[Any]:
    """At least ``count`` history samples taken after epoch ``after`` (oldest first)."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get("/api/v1/monitoring/history?minutes=1", headers=ADMIN)
        assert response.status_code == 200, response.text
        samples = [s for s in response.json()["snapshots"] if epoch(s["at"]) > after]
        if len(samples) >= count:
            return samples
        assert time.monotonic() < deadline, f"{len(samples)} samples after {within}s"
        await asyncio.sleep(0.1)


def ws_url(base: str, path: str = "/ws/monitoring", token: str | None = ADMIN_TOKEN) -> str:
    url = base.replace("http://", "ws://") + path
    return url if token is None else f"{url}?token={token}"


class Events:
    """A live-events client that keeps reading, with what it received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.received_at: list[float] = []
        self.closed_with: int | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(message.data))
                self.received_at.append(time.monotonic())
        self.closed_with = self.ws.close_code

    async def until(
        self, condition: Callable[[list[dict[str, Any]]], bool], within: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while not condition(self.events):
            if time.monotonic() > deadline:
                kinds = [event["type"] for event in self.events]
                raise AssertionError(f"not seen within {within}s; got {kinds}")
            if self._task.done():
                raise AssertionError(f"connection closed ({self.closed_with})")
            await asyncio.sleep(0.05)
        return self.events

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == event_type]

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()


def silent_client(base: str, token: str = ADMIN_TOKEN) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: a tiny receive
    buffer, so that the server's sends to it block as soon as the kernel buffers are full."""
    address = urlparse(base)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.hostname or "127.0.0.1", address.port or 80))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/monitoring?token={token} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = sock.recv(256)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def closed_by_server(sock: socket.socket, within: float = 10.0) -> bool:
    """Drain what the server had sent until it closed the connection."""
    sock.settimeout(1.0)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False
