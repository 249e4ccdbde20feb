"""Invariant 1 when units come back: dead letters with their compensation, the payment
window, and cancellation, on SQLite, PostgreSQL with in-process hot state, and scaled mode.

- A job out of attempts is a dead letter: its order fails (processing_failed) and gives its
  units back. Retried from the dead-letter queue by an admin once payments work again (the
  app restarted with other settings on the same database), the order takes its units again
  and is confirmed, or stays failed if they are gone meanwhile; a discarded dead letter
  leaves the list and cannot be retried.
- An order still pending when its payment window closes is cancelled
  (payment_window_expired) and gives its units back, even with its payment in flight.
- Cancelling a pending or a confirmed order gives its units back; a payment that completes
  after the cancellation does not revive the order.

The stock invariants are checked at every snapshot throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from peakshop.config import Settings
from tests.conftest import ADMIN, SERVICE, make_settings
from tests.fixtures.flash import (
    Attempt,
    create_sale,
    get_json,
    new_key,
    order_path,
)
from tests.fixtures.flash_ledger import (
    Hot,
    Record,
    SaleLedger,
    assert_hot_matches,
    settled,
)
from tests.fixtures.flash_monitor import (
    InvariantMonitor,
)
from tests.fixtures.fleet import (
    in_process,
)

STEP = 15.0  # seconds a transition may take


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("scaled", id="scaled", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend_urls(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), None
    database_url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_url") if request.param == "scaled" else None
    return database_url, redis_url


def app_settings(urls: tuple[str, str | None], **overrides: Any) -> Settings:
    """The app works its queue itself (scaled mode too: one process holds the whole flow)."""
    values: dict[str, Any] = {
        "worker_in_process": True,
        "order_job_retry_base_delay": 0.01,
        "order_job_retry_max_delay": 0.02,
    }
    values.update(overrides)
    return make_settings(*urls, **values)


@contextlib.asynccontextmanager
async def watched(urls: tuple[str, str | None], sale_id: int) -> AsyncIterator[InvariantMonitor]:
    async with InvariantMonitor(urls[0], sale_id, redis_url=urls[1], releases=True) as monitor:
        yield monitor
    monitor.assert_clean()


async def buy(client: httpx.AsyncClient, sale_id: int, user_id: str) -> str:
    attempt = Attempt(user_id, 1, new_key())
    response = await client.post(order_path(sale_id), json=attempt.body, headers=attempt.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["order_id"])


async def order(client: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await get_json(client, f"/api/v1/orders/{order_id}")
    return body


async def dead_letters(client: httpx.AsyncClient, jobs: list[str]) -> set[str]:
    """Which of these jobs the dead-letter list shows (other job types may be there too)."""
    body = await get_json(client, "/api/v1/jobs/dead-letters?limit=100", admin=True)
    return {job["id"] for job in body["items"]} & set(jobs)


async def assert_hot_agrees(urls: tuple[str, str | None], ledger: SaleLedger) -> None:
    if urls[1] is not None:
        async with Hot(urls[1]) as hot:
            await assert_hot_matches(hot, ledger)


def counts(ledger: SaleLedger) -> tuple[int, int, int]:
    return ledger.snapshot["remaining"], ledger.snapshot["reserved"], ledger.snapshot["sold"]


async def test_dead_letters_give_units_back_and_a_retry_takes_them_again_if_still_there(
    backend_urls: tuple[str, str | None],
) -> None:
    database_url = backend_urls[0]
    failing = app_settings(
        backend_urls, payment_mode="simulated", payment_failure_rate=1.0, order_job_max_attempts=2
    )
    async with Record(database_url) as record:
        # 1. Payments always fail: three orders die after two attempts and give their units back.
        async with in_process(failing) as app:
            sale = await create_sale(app.client, quantity=3, per_user_limit=1)
            sale_id = sale["id"]
            async with watched(backend_urls, sale_id):
                orders = [await buy(app.client, sale_id, f"buyer_{i}") for i in range(3)]
                ledger = await settled(
                    record,
                    sale_id,
                    lambda ledger: ledger.quiet,
                    within=STEP,
                    what="three jobs dead-lettered",
                )
            jobs = [ledger.orders[o].job_id for o in orders]
            assert {ledger.jobs[j]["status"] for j in jobs} == {"dead"}
            assert {ledger.jobs[j]["attempts"] for j in jobs} == {2}
            assert {(ledger.orders[o].status, ledger.orders[o].failure_reason) for o in orders} == {
                ("failed", "processing_failed")
            }
            assert counts(ledger) == (3, 0, 0), "the dead orders' units are not back"
            assert ledger.buyers == {}
            assert await dead_letters(app.client, jobs) == set(jobs)
            await assert_hot_agrees(backend_urls, ledger)

        # 2. The app restarted with payments working, on the same database (and Redis).
        async with in_process(app_settings(backend_urls)) as app:
            client = app.client
            async with watched(backend_urls, sale_id):
                retried = await client.post(
                    f"/api/v1/jobs/dead-letters/{jobs[0]}/retry", headers=ADMIN
                )
                assert retried.status_code == 202, retried.text
                await settled(
                    record,
                    sale_id,
                    lambda ledger: ledger.orders[orders[0]].status == "confirmed" and ledger.quiet,
                    within=STEP,
                    what="the retried dead letter's order confirmed",
                )

                discarded = await client.post(
                    f"/api/v1/jobs/dead-letters/{jobs[1]}/discard", headers=ADMIN
                )
                assert discarded.status_code == 204, discarded.text
                assert await dead_letters(client, jobs) == {jobs[2]}
                again = await client.post(
                    f"/api/v1/jobs/dead-letters/{jobs[1]}/retry", headers=ADMIN
                )
                assert again.status_code == 404, again.text

                # The last dead order's unit goes to someone else before its retry.
                late = [await buy(client, sale_id, f"late_{i}") for i in range(2)]
                await settled(
                    record,
                    sale_id,
                    lambda ledger: all(ledger.orders[o].status == "confirmed" for o in late),
                    within=STEP,
                    what="the late buyers' orders confirmed",
                )
                retried = await client.post(
                    f"/api/v1/jobs/dead-letters/{jobs[2]}/retry", headers=ADMIN
                )
                assert retried.status_code == 202, retried.text
                ledger = await settled(
                    record,
                    sale_id,
                    lambda ledger: ledger.jobs[jobs[2]]["status"] in ("done", "dead"),
                    within=STEP,
                    what="the last retried dead letter processed",
                )
            assert await dead_letters(client, jobs) == set()

        ledger.assert_consistent()
        assert [ledger.orders[o].status for o in orders] == ["confirmed", "failed", "failed"]
        assert ledger.jobs[jobs[2]]["status"] == "done"
        assert counts(ledger) == (0, 0, 3)
        assert ledger.buyers == {"buyer_0": 1, "late_0": 1, "late_1": 1}
        await assert_hot_agrees(backend_urls, ledger)


async def test_an_order_unpaid_when_its_window_closes_is_cancelled_and_gives_its_unit_back(
    backend_urls: tuple[str, str | None],
) -> None:
    database_url = backend_urls[0]
    # The payment takes 2 s, the window 0.5 s: the window closes with the payment in flight.
    settings = app_settings(
        backend_urls, payment_mode="simulated", payment_delay_ms=2000, payment_window_seconds=0.5
    )
    async with Record(database_url) as record, in_process(settings) as app:
        sale = await create_sale(app.client, quantity=2, per_user_limit=1)
        sale_id = sale["id"]
        async with watched(backend_urls, sale_id):
            order_id = await buy(app.client, sale_id, "buyer_slow")
            ledger = await settled(
                record,
                sale_id,
                lambda ledger: ledger.orders[order_id].status != "pending",
                within=STEP,
                what="the unpaid order cancelled when its window closed",
            )
            assert (ledger.orders[order_id].status, ledger.orders[order_id].failure_reason) == (
                "cancelled",
                "payment_window_expired",
            )
            assert counts(ledger) == (2, 0, 0)
            # The payment completes later: the order stays cancelled, the job ends.
            ledger = await settled(
                record, sale_id, lambda ledger: ledger.quiet, within=STEP, what="the job ended"
            )
            assert ledger.orders[order_id].status == "cancelled"
            assert ledger.jobs[ledger.orders[order_id].job_id]["status"] == "done"
            assert counts(ledger) == (2, 0, 0)
            # The buyer's cap is released with the unit.
            await buy(app.client, sale_id, "buyer_slow")
        body = await order(app.client, order_id)
        assert (body["status"], body["failure_reason"]) == ("cancelled", "payment_window_expired")
        await assert_hot_agrees(backend_urls, await record.ledger(sale_id))


async def test_cancelling_a_pending_or_a_confirmed_order_gives_its_unit_back(
    backend_urls: tuple[str, str | None],
) -> None:
    database_url = backend_urls[0]
    # Payments take 1.5 s: an order is pending that long, with its payment in flight.
    settings = app_settings(backend_urls, payment_mode="simulated", payment_delay_ms=1500)
    async with Record(database_url) as record, in_process(settings) as app:
        client = app.client
        sale = await create_sale(client, quantity=3, per_user_limit=1)
        sale_id = sale["id"]
        async with watched(backend_urls, sale_id):
            pending, confirmed = await asyncio.gather(
                buy(client, sale_id, "buyer_pending"), buy(client, sale_id, "buyer_confirmed")
            )
            cancel = await client.post(f"/api/v1/orders/{pending}/cancel", headers=SERVICE)
            assert cancel.status_code == 200, cancel.text
            assert (cancel.json()["status"], cancel.json()["failure_reason"]) == (
                "cancelled",
                "cancelled_by_request",
            )
            ledger = await record.ledger(sale_id)
            assert counts(ledger) == (2, 1, 0)

            ledger = await settled(
                record,
                sale_id,
                lambda ledger: ledger.quiet,
                within=STEP,
                what="both payments completed",
            )
            # The pending order's payment completed after its cancellation: still cancelled.
            assert ledger.orders[pending].status == "cancelled"
            assert ledger.orders[confirmed].status == "confirmed"
            assert counts(ledger) == (2, 0, 1)

            cancel = await client.post(f"/api/v1/orders/{confirmed}/cancel", headers=SERVICE)
            assert cancel.status_code == 200, cancel.text
            ledger = await record.ledger(sale_id)
            assert counts(ledger) == (3, 0, 0)
            assert ledger.buyers == {}
            twice = await client.post(f"/api/v1/orders/{confirmed}/cancel", headers=SERVICE)
            assert twice.status_code == 409, twice.text
            assert twice.json()["error"]["code"] == "not_cancellable"
            # Both buyers may buy again (their caps are released).
            await buy(client, sale_id, "buyer_pending")
            await buy(client, sale_id, "buyer_confirmed")
        ledger = await settled(
            record, sale_id, lambda ledger: ledger.quiet, within=STEP, what="all processed"
        )
        ledger.assert_consistent()
        assert counts(ledger) == (1, 0, 2)
        await assert_hot_agrees(backend_urls, ledger)
