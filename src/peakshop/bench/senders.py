"""Sender processes: each runs ``loadgen.run`` in its own event loop on its share of the load.

The orchestrating process only starts them, shows progress and merges their results, so its
own work (progress bar, RSS sampling) never competes with a sender's event loop. Results
come back with encoded HdrHistograms that merge exactly. All senders start on one shared
``monotonic_ns`` instant (CLOCK_MONOTONIC is machine-wide), so in open loop they interleave
on one schedule: sender ``i`` of ``n`` takes slots ``i, i+n, i+2n, ...``.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from peakshop.bench import loadgen
from peakshop.bench.loadgen import LoadResult, LoadSpec

# Senders get this long to start (interpreter, imports, event loop) before the run.
STARTUP_TIMEOUT = 60.0
# The shared start lies this far after the last sender said it was ready.
START_DELAY_NS = 200_000_000


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def shares(spec: LoadSpec, procs: int) -> list[LoadSpec]:
    """Each sender's spec: its connections, its requests, its offset on the shared schedule."""
    if procs < 1:
        raise ValueError("procs must be at least 1")
    if spec.concurrency < procs:
        raise ValueError(f"concurrency {spec.concurrency} is below the {procs} sender processes")
    concurrency = split(spec.concurrency, procs)
    requests = split(spec.requests, procs) if spec.requests is not None else [None] * procs
    return [
        dataclasses.replace(
            spec,
            concurrency=concurrency[index],
            requests=requests[index],
            offset=index,
            stride=procs,
        )
        for index in range(procs)
    ]


def _child(
    index: int,
    spec: LoadSpec,
    results: multiprocessing.Queue[tuple[str, int, Any]],
    start: Synchronized[int],
    go: Any,
    progress: Any,
) -> None:
    try:
        import uvloop

        async def main() -> LoadResult:
            def wait_for_start() -> int:
                # Everything built so far (imports, bodies, connections) lives through the
                # run: out of the collector's sight, a full collection during the run scans
                # only what the run allocates, instead of pausing the sender for milliseconds.
                gc.collect()
                gc.freeze()
                results.put(("ready", index, None))
                # Blocking is fine here: nothing else runs in this loop before the start.
                go.wait()
                return start.value

            def report(sent: int) -> None:
                progress[index] = sent

            def finished() -> None:
                results.put(("done", index, None))

            return await loadgen.run(
                spec, on_progress=report, on_finish=finished, wait_for_start=wait_for_start
            )

        result = uvloop.run(main())
        results.put(("result", index, result.to_wire()))
    except BaseException:
        results.put(("error", index, traceback.format_exc()))


def run(
    spec: LoadSpec,
    *,
    procs: int = 1,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[], None] | None = None,
    on_finish: Callable[[], None] | None = None,
) -> LoadResult:
    """Run ``spec`` split over ``procs`` sender processes and merge what they measured.
    ``on_progress`` gets the total sent so far, a few times a second; ``on_start`` is called
    at the shared start and ``on_finish`` when every sender has its last answer, so that
    the caller can measure the machine over the run alone (not the senders' start-up)."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[str, int, Any]] = context.Queue()
    start = context.Value("q", 0, lock=False)
    go = context.Event()
    progress = context.Array("q", procs, lock=False)
    children = [
        context.Process(
            target=_child,
            args=(index, share, results, start, go, progress),
            name=f"peakshop-sender-{index}",
            daemon=True,
        )
        for index, share in enumerate(shares(spec, procs))
    ]
    for child in children:
        child.start()
    inbox = _Inbox(results, children)
    try:
        inbox.wait("ready", timeout=STARTUP_TIMEOUT)
        start.value = time.monotonic_ns() + START_DELAY_NS
        go.set()
        time.sleep(max(start.value - time.monotonic_ns(), 0) / 1e9)
        if on_start is not None:
            on_start()
        inbox.wait("done", timeout=_time_limit(spec), progress=progress, on=on_progress)
        if on_finish is not None:
            on_finish()
        wires = inbox.wait("result", timeout=STARTUP_TIMEOUT)
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    if on_progress is not None:
        on_progress(sum(progress))
    return loadgen.merge([LoadResult.from_wire(wire) for wire in wires])


def _time_limit(spec: LoadSpec) -> float | None:
    """How long to wait for the senders' results before giving up on them."""
    if spec.duration is None:
        return None  # a request count: as long as the server answers within the timeout
    return spec.duration + spec.timeout + STARTUP_TIMEOUT


class _Inbox:
    """Messages from the senders, by kind: one sender may post its result before another
    posts that it is done, so messages of a later step are kept until asked for."""

    def __init__(
        self, results: multiprocessing.Queue[tuple[str, int, Any]], children: list[Any]
    ) -> None:
        self._results = results
        self._children = children
        self._received: dict[str, dict[int, Any]] = {}

    def wait(
        self,
        expected: str,
        *,
        timeout: float | None,
        progress: Any = None,
        on: Callable[[int], None] | None = None,
    ) -> list[Any]:
        received = self._received.setdefault(expected, {})
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(received) < len(self._children):
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"sender processes: no {expected} after {timeout:.0f} s")
            try:
                kind, index, payload = self._results.get(timeout=0.25)
            except queue.Empty:
                if on is not None and progress is not None:
                    on(sum(progress))
                self._check_alive(received)
                continue
            if kind == "error":
                raise RuntimeError(f"sender process {index} failed:\n{payload}")
            self._received.setdefault(kind, {})[index] = payload
        return [received[index] for index in sorted(received)]

    def _check_alive(self, received: dict[int, Any]) -> None:
        for index, child in enumerate(self._children):
            # A sender killed from outside (OOM, signal) never reports: do not wait forever.
            if index not in received and child.exitcode not in (None, 0):
                raise RuntimeError(f"sender process {index} died with exit code {child.exitcode}")
