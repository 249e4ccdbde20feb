"""Invariants 1 and 4 for flash sales under concurrency: hundreds of buyers at once, some
retrying their request (same Idempotency-Key) and some buying again (a new key).

- Admission never acknowledges more units than the sale has, nor more than a buyer's cap.
- Conservation (remaining + reserved + sold == quantity, the product's ledger, the orders
  table agreeing with the counts, every buyer's count agreeing with their orders) holds at
  every snapshot taken while the burst runs, not only at the end.
- Once the queue drained: every acknowledged order is confirmed, exactly once, and the
  record holds nothing else; in scaled mode Redis agrees with the record.
- The same key sent 50 times at once is one order, named by every answer.
- A Redis stall in the middle of a burst leaves no buyer with a 500.

Each runs in-process (one event loop, requests interleaving at every await) on SQLite,
PostgreSQL with in-process hot state, and scaled mode; and over real HTTP against a real
SQLite server process and a scaled cluster of two API processes and two workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from peakshop.config import Settings
from tests.conftest import SERVICE, make_settings
from tests.fixtures.flash import (
    Answer,
    Attempt,
    accepted_orders,
    assert_within_limits,
    create_sale,
    new_key,
    order_path,
    send_in_process,
    send_over_http,
    units,
)
from tests.fixtures.flash_ledger import (
    Hot,
    Record,
    assert_hot_matches,
    assert_processed,
    settled,
)
from tests.fixtures.flash_monitor import (
    InvariantMonitor,
    api_reader,
)
from tests.fixtures.fleet import (
    Fleet,
    fleet,
    in_process,
    process_env,
)
from tests.invariants.conftest import fresh_database

QUANTITY = 120
PER_USER = 2
USERS = 300
SETTLE_WITHIN = 30.0


def shop_settings(database_url: str, redis_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"order_job_retry_base_delay": 0.05, "order_job_retry_max_delay": 0.2}
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


@dataclass
class Shop:
    """Where a test sends its orders: the in-process app, or API processes over HTTP."""

    client: httpx.AsyncClient  # admin and status calls (base URL: the first API)
    urls: list[str]  # API processes for bursts; empty: in-process
    record: Record
    hot: Hot | None
    database_url: str
    redis_url: str | None

    async def burst(self, sale_id: int, attempts: Sequence[Attempt]) -> list[Answer]:
        if self.urls:
            return await send_over_http(self.urls, sale_id, attempts)
        return await send_in_process(self.client, sale_id, attempts)

    def monitor(self, sale_id: int, *, releases: bool) -> InvariantMonitor:
        api: Callable[[], Awaitable[dict[str, Any] | None]]
        api = api_reader(self.client, sale_id, lambda: self.urls or [""])
        return InvariantMonitor(
            self.database_url, sale_id, redis_url=self.redis_url, api=api, releases=releases
        )


@contextlib.asynccontextmanager
async def open_shop(
    client: httpx.AsyncClient, urls: list[str], database_url: str, redis_url: str | None
) -> AsyncIterator[Shop]:
    async with contextlib.AsyncExitStack() as stack:
        record = await stack.enter_async_context(Record(database_url))
        hot = None if redis_url is None else await stack.enter_async_context(Hot(redis_url))
        yield Shop(client, urls, record, hot, database_url, redis_url)


# --- where the orders go --------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="in-process-sqlite"),
        pytest.param("postgres", id="in-process-postgres", marks=pytest.mark.postgres),
        pytest.param(
            "scaled", id="in-process-scaled", marks=[pytest.mark.postgres, pytest.mark.redis]
        ),
    ]
)
def backend_urls(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(database URL, Redis URL) of a fresh database on the backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), None
    database_url = request.getfixturevalue("postgres_url")
    return database_url, (
        request.getfixturevalue("redis_url") if request.param == "scaled" else None
    )


@pytest.fixture
async def in_process_shop(backend_urls: tuple[str, str | None]) -> AsyncIterator[Shop]:
    """The app in this process; in scaled mode it works the queue itself too."""
    database_url, redis_url = backend_urls
    settings = shop_settings(database_url, redis_url, worker_in_process=True)
    async with (
        in_process(settings) as app,
        open_shop(app.client, [], database_url, redis_url) as shop,
    ):
        yield shop


@dataclass
class Cluster:
    database_url: str
    redis_url: str | None
    fleet: Fleet

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.fleet.procs if p.kind == "api" and p.url and p.alive()]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite-server"),
        pytest.param(
            "scaled", id="scaled-2-api-2-workers", marks=[pytest.mark.postgres, pytest.mark.redis]
        ),
    ],
)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Real processes: one embedded SQLite server (it works its queue itself), or two API
    processes that do not work the queue and two `peakshop worker` processes."""
    tmp_dir = tmp_path_factory.mktemp(f"flash-{request.param}")
    with (
        fresh_database(request.param, request, tmp_dir) as (database_url, redis_url),
        fleet(tmp_dir) as processes,
    ):
        env = process_env(shop_settings(database_url, redis_url))
        if request.param == "sqlite":
            processes.wait_ready(processes.api(env))
        else:
            api_env = {**env, "PEAKSHOP_WORKER_IN_PROCESS": "false"}
            processes.wait_ready(
                processes.api(api_env),
                processes.api(api_env),
                processes.worker(env),
                processes.worker(env),
            )
        yield Cluster(database_url, redis_url, processes)


@pytest.fixture
async def process_shop(cluster: Cluster) -> AsyncIterator[Shop]:
    async with (
        httpx.AsyncClient(base_url=cluster.urls[0], timeout=30) as client,
        open_shop(client, cluster.urls, cluster.database_url, cluster.redis_url) as shop,
    ):
        yield shop


# --- the scenarios --------------------------------------------------------------------------


def burst_plan() -> list[Attempt]:
    """300 buyers for 120 units, 1 or 2 units each (cap 2); 60 of them send their request
    twice (a retry: same key, same body), 60 others come back for one more unit (a new key)."""
    attempts = []
    for i in range(USERS):
        first = Attempt(f"buyer_{i:04d}", 2 if i % 3 == 0 else 1, new_key())
        attempts.append(first)
        if i < 60:
            attempts.append(first)
        elif i < 120:
            attempts.append(Attempt(first.user_id, 1, new_key()))
    random.Random(20261124).shuffle(attempts)
    return attempts


async def sell_out(shop: Shop) -> None:
    sale = await create_sale(shop.client, quantity=QUANTITY, per_user_limit=PER_USER)
    sale_id = sale["id"]
    async with shop.monitor(sale_id, releases=False) as monitor:
        answers = await shop.burst(sale_id, burst_plan())
        accepted = accepted_orders(answers, stable=True)
        assert_within_limits(accepted, quantity=QUANTITY, per_user_limit=PER_USER)
        assert units(accepted) > QUANTITY // 2, f"only {units(accepted)} units admitted"

        # What the burst left (a unit or two if the last buyers each wanted more): late
        # buyers of one unit take exactly that, and no more.
        left = QUANTITY - units(accepted)
        late = [Attempt(f"late_{i:04d}", 1, new_key()) for i in range(left + 5)]
        late_answers = await shop.burst(sale_id, late)
        late_accepted = accepted_orders(late_answers, stable=True)
        assert Counter((a.status, a.reason) for a in late_answers) == {
            **({(202, None): left} if left else {}),
            (409, "sold_out"): 5,
        }
        accepted |= late_accepted

        ledger = await settled(
            shop.record,
            sale_id,
            lambda ledger: ledger.quiet and ledger.snapshot["sold"] == QUANTITY,
            within=SETTLE_WITHIN,
            what="every acknowledged order confirmed",
        )
    monitor.assert_clean(min_snapshots=10)

    assert units(accepted) == QUANTITY
    assert_processed(ledger, accepted, exact=True)
    assert (ledger.snapshot["remaining"], ledger.snapshot["sold"]) == (0, QUANTITY)
    sale_now = (await shop.client.get(f"/api/v1/flash-sales/{sale_id}", headers=SERVICE)).json()
    assert (sale_now["status"], sale_now["remaining"], sale_now["reserved"], sale_now["sold"]) == (
        "sold_out",
        0,
        0,
        QUANTITY,
    )
    if shop.hot is not None:
        await assert_hot_matches(shop.hot, ledger)


async def one_key_fifty_times(shop: Shop) -> None:
    sale = await create_sale(shop.client, quantity=10, per_user_limit=1)
    sale_id = sale["id"]
    attempt = Attempt("buyer_same", 1, new_key())

    answers = await shop.burst(sale_id, [attempt] * 50)

    assert Counter(a.status for a in answers) == {202: 50}, [a.body for a in answers[:3]]
    assert len({a.order_id for a in answers}) == 1, "the answers name different orders"
    fresh = [a for a in answers if not a.replay]
    assert len(fresh) == 1, f"{len(fresh)} answers say they created the order"
    order_id = answers[0].order_id
    ledger = await settled(
        shop.record, sale_id, lambda ledger: ledger.quiet, within=SETTLE_WITHIN, what="processed"
    )
    assert list(ledger.orders) == [order_id], f"orders recorded: {list(ledger.orders)}"
    assert_processed(ledger, {order_id: attempt}, exact=True)
    assert ledger.snapshot["sold"] == 1

    # After processing: the same key still answers with the same order, another body under
    # that key is refused, and the buyer (cap 1) is refused under a new key.
    again = await shop.client.post(order_path(sale_id), json=attempt.body, headers=attempt.headers)
    assert again.status_code == 202 and again.json()["order_id"] == order_id, again.text
    assert again.headers.get("idempotent-replay") == "true"
    other_body = await shop.client.post(
        order_path(sale_id), json={**attempt.body, "quantity": 2}, headers=attempt.headers
    )
    assert other_body.status_code == 422, other_body.text
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    new = Attempt(attempt.user_id, 1, new_key())
    refused = await shop.client.post(order_path(sale_id), json=new.body, headers=new.headers)
    assert refused.status_code == 409 and refused.json()["reason"] == "user_limit_reached"
    assert (await shop.record.ledger(sale_id)).orders.keys() == {order_id}


# --- the tests ------------------------------------------------------------------------------


async def test_in_process_a_sale_sells_out_exactly_with_invariants_at_every_snapshot(
    in_process_shop: Shop,
) -> None:
    await sell_out(in_process_shop)


async def test_in_process_one_key_sent_50_times_at_once_is_one_order(
    in_process_shop: Shop,
) -> None:
    await one_key_fifty_times(in_process_shop)


@pytest.mark.slow
async def test_over_http_a_sale_sells_out_exactly_with_invariants_at_every_snapshot(
    process_shop: Shop, cluster: Cluster
) -> None:
    await sell_out(process_shop)
    assert all(p.alive() for p in cluster.fleet.procs), cluster.fleet.logs()


@pytest.mark.slow
async def test_over_http_one_key_sent_50_times_at_once_is_one_order(
    process_shop: Shop, cluster: Cluster
) -> None:
    await one_key_fifty_times(process_shop)


# Busy-waits inside Redis for ARGV[1] microseconds: every other client's command waits.
_STALL = """
local start = redis.call('TIME')
local deadline = tonumber(start[1]) * 1000000 + tonumber(start[2]) + tonumber(ARGV[1])
while true do
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) >= deadline then return 1 end
end
"""


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_redis_stall_mid_burst_leaves_no_buyer_without_an_answer(
    postgres_url: str, redis_url: str
) -> None:
    """A 1.5 s Redis stall (a slow command, a failover, a busy host) while 600 buyers are at
    the door of one API process: every one of them is admitted or refused once Redis
    answers again; none gets a 500 because more admissions wait on Redis than the process's
    Redis connection pool allows (redis-py's asyncio pool refuses past max_connections,
    100 by default, instead of waiting for a connection)."""
    settings = shop_settings(postgres_url, redis_url, worker_in_process=True)
    async with (
        in_process(settings) as app,
        open_shop(app.client, [], postgres_url, redis_url) as shop,
    ):
        sale = await create_sale(shop.client, quantity=50, per_user_limit=1)
        assert shop.hot is not None
        stall = asyncio.create_task(shop.hot.client.eval(_STALL, 0, 1_500_000))
        await asyncio.sleep(0.05)  # the stall has begun: Redis answers no one else
        answers = await shop.burst(
            sale["id"], [Attempt(f"buyer_{i:04d}", 1, new_key()) for i in range(600)]
        )
        await stall
        statuses = Counter((a.status, a.reason) for a in answers)
        assert statuses == {(202, None): 50, (409, "sold_out"): 550}, (
            f"answers during a Redis stall: {dict(statuses)}"
        )
