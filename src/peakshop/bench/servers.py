"""Servers under test: spawned on a free port, measured (CPU, RSS), stopped with SIGTERM.

granian runs the app in a worker process under a supervisor, so memory and CPU are read
for the whole process tree, with each process listed too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

READY_TIMEOUT = 120.0  # the first start migrates and loads the index; a 1M-user file is big
STOP_TIMEOUT = 30.0
ORPHAN_GRACE = 5.0  # for the server's children to end after it did


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server under test, spawned here (``process`` set) or already running (url only)."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    peak_rss: int = 0
    _cpu_mark: float = field(default=0.0, repr=False)

    @property
    def spawned(self) -> bool:
        return self.process is not None

    def tree(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def memory(self) -> dict[str, Any]:
        """RSS of every process of the server now, and their sum (bytes)."""
        processes = []
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                processes.append({"pid": proc.pid, "rss": proc.memory_info().rss})
        total = sum(p["rss"] for p in processes)
        self.peak_rss = max(self.peak_rss, total)
        return {"rss": total, "processes": processes}

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def mark_cpu(self) -> None:
        self._cpu_mark = self.cpu_seconds()

    def cpu_since_mark(self) -> float:
        return self.cpu_seconds() - self._cpu_mark

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        descendants = self.tree()[1:]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # A granian worker whose supervisor died before stopping it (killed at the timeout)
        # keeps serving, orphaned: its CPU and memory would go into the next measurement.
        _, alive = psutil.wait_procs(descendants, timeout=ORPHAN_GRACE)
        for orphan in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()
        psutil.wait_procs(alive, timeout=ORPHAN_GRACE)
        return self.process.returncode


def wait_ready(url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{url}/ready", timeout=2.0) as response,
        ):
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def spawn(name: str, command: list[str], *, port: int, env: dict[str, str]) -> Iterator[Server]:
    """Start ``command`` (which must listen on ``port``), wait for /ready, stop it after."""
    handle, name_of_log = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
    log_path = Path(name_of_log)
    with os.fdopen(handle, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(name=name, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        try:
            wait_ready(server.url, timeout=READY_TIMEOUT, process=process)
        except RuntimeError as exc:
            raise RuntimeError(f"{name}: {exc}\n--- log {log_path} ---\n{server.log()}") from exc
        yield server
    finally:
        code = server.stop()
    # The log only matters when something went wrong (then the error above quotes it).
    if code in (0, -signal.SIGTERM):
        log_path.unlink(missing_ok=True)


def spawn_peakshop(
    *, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Server]:
    """``peakshop serve`` against the configured database, with the current environment."""
    port = free_port()
    command = [sys.executable, "-m", "peakshop", "serve", "--host", "127.0.0.1"]
    return spawn(
        "peakshop", [*command, "--port", str(port)], port=port, env=env or dict(os.environ)
    )


def spawn_minimal(app_path: Path) -> contextlib.AbstractContextManager[Server]:
    """The minimal app of ``benchmarks/`` (``python minimal_app.py --port N``)."""
    if not app_path.is_file():
        raise FileNotFoundError(f"minimal app not found at {app_path} (see --minimal-app)")
    port = free_port()
    command = [sys.executable, str(app_path), "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ)
    # granian imports "minimal_app:app" in its worker process: the file's folder must be on
    # the path there too.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(app_path.parent), env.get("PYTHONPATH")]))
    return spawn("minimal", command, port=port, env=env)


def attach(name: str, url: str) -> Server:
    """A server that is already running: only its URL is known (no RSS, no CPU)."""
    url = url.rstrip("/")
    wait_ready(url, timeout=10.0)
    return Server(name=name, url=url)


class RssSampler:
    """Samples the spawned servers' RSS (all their processes) once a ``interval`` during a
    run: each server keeps its peak (``Server.memory``), and ``samples`` holds their sum over
    time, (epoch seconds, bytes), for a memory trend."""

    def __init__(self, servers: list[Server], *, interval: float = 1.0) -> None:
        self._servers = [s for s in servers if s.spawned]
        self._interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        total = sum(int(server.memory()["rss"]) for server in self._servers)
        self.samples.append((time.time(), total))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        if self._servers:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
