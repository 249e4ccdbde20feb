"""Servers under test are stopped whole: no child of theirs outlives them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from peakshop.bench import servers
from peakshop.bench.servers import Server

# A parent that exits on SIGTERM and a child that ignores it (as an orphaned server worker).
PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(child.pid, flush=True)  # after the handler: the test may signal as soon as it reads
    time.sleep(600)
    """
)


def test_stopping_a_server_ends_the_children_it_left_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "ORPHAN_GRACE", 0.5)
    process = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE)
    assert process.stdout is not None
    child = psutil.Process(int(process.stdout.readline()))
    server = Server(name="parent", url="http://127.0.0.1:9", process=process)
    started = time.monotonic()
    assert server.stop() == 0
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - started < 10
