"""The WebSocket clients of benchmarks/monitoring_overhead.py, in a process of their own:
``count`` cheap readers of ``/ws/monitoring``, connected on entry, stopped on exit with a
report of what they received.

They are real WebSocket clients (the opening handshake, then every frame read and counted
from its header; server frames are not masked, so the payload is skipped, not decoded), all
on one selector in one thread. On a 2-core machine their CPU is taken from the server and
the load generator, so it would count as the server's cost: aiohttp clients took ~16-20 us
of CPU per event received, these ~7-8 us (1,000 clients, 10 events a second, measured
against the same server).
"""

from __future__ import annotations

import base64
import contextlib
import multiprocessing
import os
import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import psutil

CONNECT_TIMEOUT = 120.0


def _clients_main(url: str, count: int, pipe: Connection) -> None:
    """Entry point of the clients' process (multiprocessing, spawn)."""
    _hold_clients(url, count, pipe)


class _Reader:
    """One WebSocket client: the opening handshake, then every frame read and counted from
    its header (server frames are not masked; the payload is skipped, not decoded)."""

    __slots__ = ("close_code", "frames", "head", "open", "skip", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.open = False
        self.frames = 0  # text frames: the events
        self.skip = 0  # bytes of the current frame's payload still to come
        self.head = b""  # the start of a header cut by the end of a read
        self.close_code: int | None = None

    def feed(self, data: bytes) -> None:
        if self.skip:
            taken = min(self.skip, len(data))
            self.skip -= taken
            data = data[taken:]
        if self.head:
            data, self.head = self.head + data, b""
        pos, end = 0, len(data)
        while pos < end:
            if end - pos < 2:
                self.head = data[pos:]
                return
            opcode, length, size = data[pos] & 0x0F, data[pos + 1] & 0x7F, 2
            if length >= 126:
                size = 4 if length == 126 else 10
                if end - pos < size:
                    self.head = data[pos:]
                    return
                length = int.from_bytes(data[pos + 2 : pos + size], "big")
            if opcode == 0x8:  # close: its code is read whole (at most 125 bytes)
                if end - pos < size + length:
                    self.head = data[pos:]
                    return
                code = data[pos + size : pos + size + 2]
                self.close_code = int.from_bytes(code, "big") if len(code) == 2 else 1005
            elif opcode == 0x1:
                self.frames += 1
            pos += size
            if end - pos < length:
                self.skip = length - (end - pos)
                return
            pos += length


def _handshake(host: str, port: int, target: str) -> tuple[socket.socket, bytes]:
    """Connect and upgrade (blocking); returns the socket and what came after the answer."""
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"refused: {head.splitlines()[0]!r}")
        sock.setblocking(False)
        return sock, rest
    except BaseException:
        sock.close()
        raise


def _hold_clients(url: str, count: int, pipe: Connection) -> None:
    """Connect ``count`` clients, read every event until told to stop, report what came.

    One thread and one selector for all of them: a client costs a ``recv`` and a header
    parse per event, where an aiohttp client adds its reader's callbacks, a decode and a
    task wake-up."""
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    target = f"{address.path}?{address.query}" if address.query else address.path
    readers: list[_Reader] = []
    errors: dict[str, int] = {}
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    for _ in range(count):
        try:
            sock, rest = _handshake(host, port, target)
        except (OSError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        reader = _Reader(sock)
        reader.open = True
        reader.feed(rest)
        readers.append(reader)
        selector.register(sock, selectors.EVENT_READ, reader)
    open_now = sum(r.open for r in readers)
    pipe.send({"open": open_now, "errors": errors, "seconds": time.monotonic() - started})
    selector.register(pipe, selectors.EVENT_READ, None)
    close_codes: dict[str, int] = {}
    stopping = False
    while not stopping:
        for key, _ in selector.select():
            reader = key.data
            if reader is None:  # "stop", after the measured run
                pipe.recv()
                stopping = True
                continue
            try:
                data = reader.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                reader.feed(data)
                continue
            selector.unregister(reader.sock)
            reader.open = False
            code = str(reader.close_code or 1006)  # 1006: closed without a close frame
            close_codes[code] = close_codes.get(code, 0) + 1
    still_open = [r for r in readers if r.open]
    for reader in readers:
        reader.sock.close()
    pipe.send(
        {
            "open_at_end": len(still_open),
            "events_received": sum(r.frames for r in readers),
            "events_min_per_open_client": min((r.frames for r in still_open), default=0),
            "closed_by_server": close_codes,
            "connect_errors": errors,
        }
    )


class WsClients:
    """The clients' process: connected on entry, stopped on exit (with its report)."""

    def __init__(self, url: str, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=_clients_main, args=(url, count, child), name="ws-clients", daemon=True
        )
        self.count = count
        self.connected: dict[str, Any] = {}
        self.report: dict[str, Any] = {}

    def __enter__(self) -> WsClients:
        self.process.start()
        if not self._pipe.poll(CONNECT_TIMEOUT + 30):
            self._kill()
            raise RuntimeError("the WebSocket clients did not connect in time")
        self.connected = self._pipe.recv()
        return self

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._pipe.send("stop")
            if self._pipe.poll(60):
                self.report = self._pipe.recv()
        self.process.join(30)
        self._kill()

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)
