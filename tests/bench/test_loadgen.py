"""The load generator: open-loop schedule math, latency from the schedule, lag detection,
histogram merging across sender processes. Against a small aiohttp server in its own process."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from hdrh.histogram import HdrHistogram

from peakshop.bench import loadgen, report, senders
from peakshop.bench.loadgen import LoadResult, LoadSpec
from peakshop.bench.runner import judge
from tests.fixtures.servers import free_port

BODY = b'{"code":"SAVE10-ABCDEF","user_id":"user_0000001","order_total":"10.00"}'


@dataclass
class StubServer:
    """An HTTP server in its own process (so that its stall cannot take the sender's GIL); it
    can stall, i.e. block its event loop, once. Configured and inspected over HTTP."""

    url: str

    def _control(self, path: str, payload: dict[str, object] | None = None) -> object:
        data = None if payload is None else json.dumps(payload).encode()
        base = self.url.rsplit("/api/", 1)[0]
        with urllib.request.urlopen(f"{base}/_stub/{path}", data=data, timeout=10) as response:
            return json.loads(response.read())

    def configure(
        self, *, stall_after: int = -1, stall_seconds: float = 0.0, status: int = 200
    ) -> None:
        self._control(
            "configure",
            {"stall_after": stall_after, "stall_seconds": stall_seconds, "status": status},
        )

    def bodies(self) -> list[bytes]:
        seen = self._control("bodies")
        assert isinstance(seen, list)
        return [body.encode() for body in seen]

    def peers(self) -> list[int]:
        """The client port of each request, in arrival order (one port per connection)."""
        seen = self._control("peers")
        assert isinstance(seen, list)
        return [int(port) for port in seen]


def _serve_stub(port: int) -> None:
    config: dict[str, Any] = {"stall_after": -1, "stall_seconds": 0.0, "status": 200}
    bodies: list[str] = []
    peers: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        bodies.append((await request.read()).decode())
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[1])
        if len(bodies) == config["stall_after"]:
            time.sleep(config["stall_seconds"])  # noqa: ASYNC251 - deliberately blocks: a stalled server
        return web.json_response({"valid": True}, status=config["status"])

    async def configure(request: web.Request) -> web.Response:
        config.update(await request.json())
        return web.json_response(config)

    async def seen(_: web.Request) -> web.Response:
        return web.json_response(bodies)

    async def seen_peers(_: web.Request) -> web.Response:
        return web.json_response(peers)

    app = web.Application()
    app.router.add_post("/api/v1/coupons/validate", handle)
    app.router.add_post("/_stub/configure", configure)
    app.router.add_get("/_stub/bodies", seen)
    app.router.add_get("/_stub/peers", seen_peers)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve_stub, args=(port,))
    process.start()
    server = StubServer(url=f"http://127.0.0.1:{port}/api/v1/coupons/validate")
    deadline = time.monotonic() + 20
    while True:
        try:
            server.bodies()
            break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                process.kill()
                raise
            time.sleep(0.05)
    yield server
    process.terminate()
    process.join(10)


# --- schedule math -------------------------------------------------------------------------


def test_planned_requests_counts_slots_in_the_half_open_window() -> None:
    assert loadgen.planned_requests(rate=1000, duration=1.0) == 1000
    assert loadgen.planned_requests(rate=1000, duration=0.0105) == 11  # 0 .. 10 ms
    assert loadgen.planned_requests(rate=3, duration=1.0) == 3
    assert loadgen.planned_requests(rate=0.5, duration=3.0) == 2  # at 0 s and 2 s


def test_schedule_is_computed_from_the_slot_not_accumulated() -> None:
    times = list(loadgen.schedule(start_ns=5_000, rate=3, duration=1000))
    assert len(times) == 3000
    # 1/3 s is not exact in ns: accumulating would drift, computing per slot does not.
    assert times[2999] == (2999, 5_000 + round(2999 * 1e9 / 3))
    assert times[:3] == [(0, 5_000), (1, 5_000 + 333_333_333), (2, 5_000 + 666_666_667)]


def test_senders_interleave_on_one_schedule() -> None:
    whole = list(loadgen.schedule(start_ns=0, rate=1000, duration=0.1))
    parts = [
        list(loadgen.schedule(start_ns=0, rate=1000, duration=0.1, offset=i, stride=3))
        for i in range(3)
    ]
    assert sorted(item for part in parts for item in part) == whole
    assert [slot for slot, _ in parts[1][:3]] == [1, 4, 7]
    assert parts[1][1][1] == 4_000_000  # slot 4 at 4 ms


def test_shares_split_connections_and_requests() -> None:
    spec = LoadSpec(url="http://x/", bodies=[BODY], concurrency=10, requests=1001)
    shares = senders.shares(spec, 3)
    assert [s.concurrency for s in shares] == [4, 3, 3]
    assert [s.requests for s in shares] == [334, 334, 333]
    assert [(s.offset, s.stride) for s in shares] == [(0, 3), (1, 3), (2, 3)]


# --- latency from the schedule, lag ---------------------------------------------------------


async def test_open_loop_counts_a_stall_from_the_scheduled_send_time(stub: StubServer) -> None:
    # 200 req/s for 1 s; the server blocks for 0.5 s on request 40 (scheduled at 0.2 s).
    stub.configure(stall_after=40, stall_seconds=0.5)
    spec = LoadSpec(
        url=stub.url, bodies=[BODY], mode="open", rate=200, duration=1.0, concurrency=256
    )
    result = await loadgen.run(spec)
    assert result.planned == result.sent == result.ok == 200
    # The requests scheduled during the stall waited for it: about half of a second for the
    # first ones, less for the later ones; 100 requests were scheduled within the stall.
    assert result.latency_max_ns is not None and result.latency_max_ns >= 450_000_000
    assert result.latency.get_value_at_percentile(70) >= 150_000  # us
    # The sender itself kept to its schedule: its lag stays an order of magnitude below the
    # stall (a shared CI machine adds a few ms of scheduling noise, so not a tighter bound).
    assert result.lag.get_value_at_percentile(99) < 50_000


async def test_closed_loop_measures_from_the_actual_send(stub: StubServer) -> None:
    # The same stall in closed loop delays only the requests in flight: coordinated omission,
    # the reason why latency at a given load is measured in open loop.
    stub.configure(stall_after=40, stall_seconds=0.5)
    spec = LoadSpec(url=stub.url, bodies=[BODY], mode="closed", requests=200, concurrency=4)
    result = await loadgen.run(spec)
    assert result.ok == 200
    assert result.latency_max_ns is not None and result.latency_max_ns >= 450_000_000
    assert result.latency.get_value_at_percentile(95) < 100_000


async def test_a_sender_that_falls_behind_is_flagged_invalid(stub: StubServer) -> None:
    async def hog() -> None:  # the sender's own loop is blocked 20 ms out of every 30
        while True:
            time.sleep(0.02)  # noqa: ASYNC251 - the point: a blocked sender loop
            await asyncio.sleep(0.01)

    spec = LoadSpec(
        url=stub.url, bodies=[BODY], mode="open", rate=500, duration=0.6, concurrency=64
    )
    task = asyncio.create_task(hog())
    try:
        result = await loadgen.run(spec)
    finally:
        task.cancel()
    summary = report.summarize(result, name="slow", server="stub", concurrency=64, rate=500)
    judge(summary, max_lag_ms=5.0)
    assert summary["lag_ms"]["p99"] > 5.0
    assert summary["valid"] is False
    assert "sender could not keep up" in summary["invalid_reason"]


async def test_a_sender_on_schedule_is_valid(stub: StubServer) -> None:
    spec = LoadSpec(
        url=stub.url, bodies=[BODY], mode="open", rate=200, duration=0.5, concurrency=64
    )
    summary = report.summarize(await loadgen.run(spec), name="ok", server="stub", rate=200)
    # 50 ms: a shared CI machine's scheduling noise reached 6 ms at P99 of 100 sends.
    judge(summary, max_lag_ms=50.0)
    assert summary["valid"] is True
    assert summary["planned"] == summary["total"] == summary["succeeded"] == 100


async def test_failed_answers_are_counted_not_timed_and_invalidate_the_run(
    stub: StubServer,
) -> None:
    stub.configure(status=401)  # e.g. a wrong token: fast answers that must not look like service
    spec = LoadSpec(url=stub.url, bodies=[BODY], requests=20, concurrency=2)
    result = await loadgen.run(spec)
    assert (result.sent, result.responses, result.ok) == (20, 20, 0)
    assert result.statuses == {401: 20}
    assert result.latency.get_total_count() == 0
    summary = report.summarize(result, name="401", server="stub", concurrency=2)
    judge(summary, max_lag_ms=5.0)
    assert summary["throughput_rps"] == 0 and summary["non_2xx"] == {"401": 20}
    assert summary["valid"] is False and "20 of 20 requests failed" in summary["invalid_reason"]


async def test_errors_are_counted_by_kind() -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-listens"
    spec = LoadSpec(url=url, bodies=[BODY], requests=5, concurrency=1)
    result = await loadgen.run(spec)
    assert result.sent == 5 and result.ok == 0
    assert result.errors == {"connect": 5}


# --- merging across processes ----------------------------------------------------------------


def _result(latencies_us: list[int], *, started: int, finished: int) -> LoadResult:
    result = LoadResult(mode="closed", started_ns=started, finished_ns=finished)
    for value in latencies_us:
        result.latency.record_value(value)
    result.sent = result.ok = result.responses = len(latencies_us)
    result.statuses = {200: len(latencies_us)}
    result.latency_sum_ns = sum(latencies_us) * 1000
    result.latency_min_ns = min(latencies_us) * 1000
    result.latency_max_ns = max(latencies_us) * 1000
    return result


def test_merge_adds_encoded_histograms_exactly() -> None:
    a = _result(list(range(100, 1100)), started=10, finished=500)
    b = _result(list(range(5000, 6000)), started=20, finished=900)
    merged = loadgen.merge([LoadResult.from_wire(a.to_wire()), LoadResult.from_wire(b.to_wire())])
    union = HdrHistogram(1, loadgen.HIST_HIGHEST_US, 3)
    for value in [*range(100, 1100), *range(5000, 6000)]:
        union.record_value(value)
    assert merged.latency.get_total_count() == 2000
    for percentile in (50, 90, 99, 99.9):
        assert merged.latency.get_value_at_percentile(percentile) == (
            union.get_value_at_percentile(percentile)
        )
    assert (merged.started_ns, merged.finished_ns) == (10, 900)
    assert (merged.latency_min_ns, merged.latency_max_ns) == (100_000, 5_999_000)
    assert merged.statuses == {200: 2000} and merged.senders == 2


def test_two_sender_processes_split_and_merge(stub: StubServer) -> None:
    bodies = [b'{"n":%d}' % n for n in range(10)]
    spec = LoadSpec(url=stub.url, bodies=bodies, mode="closed", requests=301, concurrency=6)
    result = senders.run(spec, procs=2)
    assert result.senders == 2
    assert result.sent == result.ok == result.latency.get_total_count() == 301
    assert sorted(set(stub.bodies())) == sorted(bodies)  # both strides of the body list


def test_preconnect_opens_every_connection_before_the_clock(stub: StubServer) -> None:
    spec = LoadSpec(
        url=stub.url, bodies=[BODY], mode="closed", requests=300, concurrency=8, preconnect=True
    )
    result = senders.run(spec, procs=2)
    assert result.sent == result.ok == result.latency.get_total_count() == 300  # timed only
    peers = stub.peers()
    assert len(peers) == 308  # one unmeasured request per connection first
    warm = set(peers[:8])
    assert len(warm) == 8  # each worker's connection opened before the shared start...
    assert set(peers[8:]) == warm  # ...and the timed requests reused them, opening none


def test_two_sender_processes_share_one_open_loop_schedule(stub: StubServer) -> None:
    spec = LoadSpec(
        url=stub.url, bodies=[BODY], mode="open", rate=400, duration=0.5, concurrency=32
    )
    result = senders.run(spec, procs=2)
    assert result.senders == 2
    assert result.planned == result.sent == result.ok == 200
    assert result.lag.get_total_count() == 200


async def test_sends_wait_for_their_time_within_the_timer_granularity() -> None:
    # Event-loop timers count whole milliseconds: a send may leave less than 1 ms early
    # (its latency then runs from the actual send), never more, and not much late.
    errors = []
    for delay_us in (300, 700, 1_300, 2_600, 5_000) * 10:
        deadline = time.monotonic_ns() + delay_us * 1000
        await loadgen._sleep_until(deadline)
        errors.append(time.monotonic_ns() - deadline)
    assert min(errors) > -1_000_000
    assert sorted(errors)[len(errors) // 2] < 2_000_000
