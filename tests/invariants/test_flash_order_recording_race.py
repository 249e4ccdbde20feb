"""Scaled mode: the API process and a worker both record an admitted flash-sale order.

The admission script XADDs the order's job message before the API writes the order row, so
a worker can take the message while the API is still writing. Whichever records second must
recognise the order as the same one (same order id), not as another order holding the same
Idempotency-Key: it must neither give the units back to the hot store nor leave the order
unprocessed, and the API must not answer its first request as a replay.

Three interleavings, each forced by holding one side at the exact step while the code under
test runs unchanged:

- the worker looks for the order (not there yet), the API records it, then the worker
  records it: it finds the API's row;
- the worker records the order first, then the API records it: it finds the worker's row;
- the worker tries to claim the order's job (no row yet), the API commits the order and its
  job row, then the worker goes on with its claim: the job must still run (not be acked as
  "not startable" with its message deleted).

White-box seams (if they move, these tests error at setup or time out on a step): the
worker runs jobs in tasks named ``JOB_TASK_NAME`` and looks for orders with
``orders.repository.get_order``/``get_orders``; both sides record with
``orders.recording.record_flash_orders``; a worker claims jobs with
``jobs.repository._claim``. These are synchronous statements run through
``Database.run_write``/``run_sync``, which on PostgreSQL run in SQLAlchemy's greenlet: a
hook holds them there with ``await_only``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.util import await_only

from peakshop.jobs import repository as jobs_repository
from peakshop.jobs.worker import JOB_TASK_NAME
from peakshop.orders import recording
from peakshop.orders import repository as orders_repository
from tests.conftest import make_settings
from tests.fixtures.flash import (
    Attempt,
    create_sale,
    new_key,
    order_path,
)
from tests.fixtures.flash_ledger import (
    Hot,
    Record,
    assert_hot_matches,
    settled,
)
from tests.fixtures.fleet import (
    InProcess,
    in_process,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

STEP = 10.0  # seconds any one step may take before the test gives up on it


def from_worker() -> bool:
    """Whether the caller runs in the worker (not in the API's placement)."""
    task = asyncio.current_task()
    return task is not None and task.get_name() == JOB_TASK_NAME


@dataclass
class Scaled:
    app: InProcess
    record: Record
    hot: Hot


@pytest.fixture
async def scaled(postgres_url: str, redis_url: str) -> AsyncIterator[Scaled]:
    """The app in scaled mode, not working the queue until the test starts a worker."""
    settings = make_settings(postgres_url, redis_url, worker_in_process=False)
    async with in_process(settings) as app, Record(postgres_url) as record, Hot(redis_url) as hot:
        yield Scaled(app, record, hot)


def when_the_worker_looks(
    monkeypatch: pytest.MonkeyPatch, hook: Callable[[bool], Awaitable[None]]
) -> None:
    """Call ``hook(found)`` each time the worker looks for orders, with what it found."""
    real_one, real_many = orders_repository.get_order, orders_repository.get_orders

    def get_order(conn: Any, order_id: str) -> Any:
        row = real_one(conn, order_id)
        if from_worker():
            await_only(hook(row is not None))
        return row

    def get_orders(conn: Any, order_ids: Any) -> Any:
        rows = real_many(conn, order_ids)
        if from_worker():
            await_only(hook(bool(rows)))
        return rows

    monkeypatch.setattr(orders_repository, "get_order", get_order)
    monkeypatch.setattr(orders_repository, "get_orders", get_orders)


def before_the_api_records(
    monkeypatch: pytest.MonkeyPatch, wait: Callable[[], Awaitable[None]]
) -> None:
    """Hold the API's recording of admitted orders until ``wait()`` returns."""
    real = recording.record_flash_orders

    def record_flash_orders(conn: Any, batch: Any) -> Any:
        if not from_worker():
            await_only(asyncio.wait_for(wait(), STEP))
        return real(conn, batch)

    monkeypatch.setattr(recording, "record_flash_orders", record_flash_orders)


async def place(scaled: Scaled, sale_id: int, attempt: Attempt) -> Any:
    response = await asyncio.wait_for(
        scaled.app.client.post(order_path(sale_id), json=attempt.body, headers=attempt.headers),
        STEP,
    )
    assert response.status_code == 202, response.text
    return response


async def test_an_order_the_api_records_while_the_worker_looks_for_it_is_confirmed(
    scaled: Scaled, monkeypatch: pytest.MonkeyPatch
) -> None:
    sale = await create_sale(scaled.app.client, quantity=5, per_user_limit=1)
    worker_looked, api_answered = asyncio.Event(), asyncio.Event()

    async def hold_the_worker(found: bool) -> None:
        if not found and not worker_looked.is_set():  # not recorded yet: the API records now
            worker_looked.set()
            await asyncio.wait_for(api_answered.wait(), STEP)

    when_the_worker_looks(monkeypatch, hold_the_worker)
    before_the_api_records(monkeypatch, worker_looked.wait)
    scaled.app.runtime.start_worker()

    response = await place(scaled, sale["id"], Attempt("buyer_race", 1, new_key()))
    api_answered.set()
    order_id = response.json()["order_id"]
    assert worker_looked.is_set()

    ledger = await settled(
        scaled.record,
        sale["id"],
        lambda ledger: ledger.quiet,
        within=STEP,
        what=f"order {order_id}, recorded by the API while the worker looked for it, processed",
    )
    assert ledger.orders[order_id].status == "confirmed", (
        f"the worker, finding the order recorded by the API, left it {ledger.summary()}"
    )
    assert (ledger.snapshot["sold"], ledger.snapshot["remaining"]) == (1, 4)
    await assert_hot_matches(scaled.hot, ledger)


async def test_an_order_the_worker_records_first_is_answered_as_new_and_keeps_its_units(
    scaled: Scaled, monkeypatch: pytest.MonkeyPatch
) -> None:
    sale = await create_sale(scaled.app.client, quantity=5, per_user_limit=1)
    sale_id = sale["id"]

    async def the_worker_recorded_it() -> None:
        await settled(
            scaled.record,
            sale_id,
            lambda ledger: bool(ledger.orders),
            within=STEP,
            what="the worker recorded the order from its message",
        )

    before_the_api_records(monkeypatch, the_worker_recorded_it)
    scaled.app.runtime.start_worker()

    attempt = Attempt("buyer_race", 1, new_key())
    response = await place(scaled, sale_id, attempt)
    order_id = response.json()["order_id"]
    ledger = await settled(
        scaled.record, sale_id, lambda ledger: ledger.quiet, within=STEP, what="processed"
    )
    assert list(ledger.orders) == [order_id]
    assert ledger.orders[order_id].status == "confirmed"
    # The buyer (cap 1) holds their unit: a second order under a new key is refused by the
    # hot store for that reason, and never reaches the record.
    second = Attempt(attempt.user_id, 1, new_key())
    again = await scaled.app.client.post(
        order_path(sale_id), json=second.body, headers=second.headers
    )
    assert (again.status_code, again.json().get("reason")) == (409, "user_limit_reached"), (
        "the API, finding the order it admitted already recorded by the worker, gave its "
        f"unit back to Redis; the buyer's next order got {again.status_code} {again.text}"
    )
    ledger = await scaled.record.ledger(sale_id)
    assert list(ledger.orders) == [order_id]
    await assert_hot_matches(scaled.hot, ledger)
    assert response.headers.get("idempotent-replay") is None, (
        "the first request for a key was answered as a replay"
    )


async def test_a_job_row_committed_while_the_worker_claims_it_still_runs(
    scaled: Scaled, monkeypatch: pytest.MonkeyPatch
) -> None:
    sale = await create_sale(scaled.app.client, quantity=5, per_user_limit=1)
    claimed_nothing, api_answered = asyncio.Event(), asyncio.Event()
    real_claim = jobs_repository._claim

    def claim(conn: Any, ids: Any, **kwargs: Any) -> Any:
        claimed = real_claim(conn, ids, **kwargs)
        if not claimed and not claimed_nothing.is_set():  # no row yet: the API commits now
            claimed_nothing.set()
            await_only(asyncio.wait_for(api_answered.wait(), STEP))
        return claimed

    monkeypatch.setattr(jobs_repository, "_claim", claim)
    before_the_api_records(monkeypatch, claimed_nothing.wait)
    scaled.app.runtime.start_worker()

    response = await place(scaled, sale["id"], Attempt("buyer_race", 1, new_key()))
    api_answered.set()
    order_id = response.json()["order_id"]
    assert claimed_nothing.is_set()

    # The republish sweep would bring a dropped message back only after its grace period
    # (30 s by default): the order must be confirmed well before that.
    ledger = await settled(
        scaled.record,
        sale["id"],
        lambda ledger: ledger.orders[order_id].status != "pending",
        within=STEP,
        what=(
            f"order {order_id}: its job, whose row the API committed while the worker was "
            "claiming it, processed (not acked as 'not startable', its message deleted)"
        ),
        hot=scaled.hot,
    )
    assert ledger.orders[order_id].status == "confirmed"
    await assert_hot_matches(scaled.hot, ledger)
