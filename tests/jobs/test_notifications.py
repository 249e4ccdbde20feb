"""Order confirmation notifications, delivered to a real SMTP server (aiosmtpd in the test
process): content, the batch path, unknown users, idempotent redelivery, dead letters."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from peakshop.app import create_app
from peakshop.config import Settings
from peakshop.jobs.models import jobs
from peakshop.jobs.notifications import ORDER_CONFIRMED, notification_id_for, orders_of
from tests.conftest import ADMIN, shop_settings
from tests.coupons.support import create_coupon, eventually
from tests.fixtures.factories import time_window_coupon
from tests.jobs.support import (
    SMS_SENT,
    Inbox,
    add_users,
    execute,
    fetch,
    job_settles,
    mail_settings,
    redeliver_job,
    smtp_server,
)
from tests.orders.support import buy, create_product, create_sale, get, order_settles, place


def mailing_shop(settings: Settings, inbox: Inbox, **overrides: Any) -> AsyncTestClient[Any]:
    values = {
        **mail_settings(inbox),
        "sms_sender": "tests.jobs.support:recording_sms",
        "notification_job_retry_base_delay": 0.01,
        **overrides,
    }
    return AsyncTestClient(app=create_app(shop_settings(settings, **values)))


async def notification_jobs(settings: Settings) -> dict[str, list[str]]:
    """Every notification job: its id -> the orders it notifies."""
    rows = await fetch(settings, "SELECT id, payload FROM jobs WHERE name = :n", n=ORDER_CONFIRMED)
    return {row["id"]: orders_of(json.loads(row["payload"])) for row in rows}


async def notification_job_of(settings: Settings, order_id: str) -> str:
    """The id of the one job that notifies the order (written once the order is confirmed)."""

    async def found() -> str | None:
        ids = [i for i, orders in (await notification_jobs(settings)).items() if order_id in orders]
        assert len(ids) <= 1, f"order {order_id} is in {len(ids)} notification jobs"
        return ids[0] if ids else None

    return await eventually(found, within=10)


async def sent_rows(settings: Settings, order_id: str) -> set[tuple[str, str]]:
    rows = await fetch(
        settings,
        "SELECT channel, recipient FROM notifications_sent WHERE order_id = :o",
        o=order_id,
    )
    return {(row["channel"], row["recipient"]) for row in rows}


async def test_a_confirmed_order_is_emailed_to_its_buyer(settings: Settings) -> None:
    SMS_SENT.clear()
    await add_users(settings, {"ada": "ada@example.test"})
    async with smtp_server() as inbox, mailing_shop(settings, inbox) as shop:
        coupon = await create_coupon(shop, time_window_coupon(discount_value="10"))
        lamp = await create_product(shop, name="Desk lamp", price="12.50", stock=10)
        cable = await create_product(shop, name="USB cable", price="3.00", stock=10)
        answer = await place(shop, "ada", [(lamp["id"], 2), (cable["id"], 1)], coupon["code"])
        assert answer.status_code == 202, answer.text
        order_id = answer.json()["order_id"]
        order = await order_settles(shop, order_id)
        assert (order["status"], order["total"]) == ("confirmed", "25.20")

        job = await job_settles(shop, await notification_job_of(settings, order_id))
        assert (job["status"], job["name"], job["subject"]) == (
            "done",
            "notifications.order_confirmed",
            order_id,  # a job of one order names it
        )
        [mail] = inbox.received
        assert mail.mail_from == "orders@peakshop.test"
        assert mail.rcpt_tos == ["ada@example.test"]
        assert mail.message["To"] == "ada@example.test"
        assert mail.message["Subject"] == f"Your order {order_id} is confirmed"
        assert mail.message["Message-ID"] == f"<{notification_id_for(order_id)}@peakshop.test>"
        body = mail.message.get_content().replace("\r\n", "\n")  # CRLF on the wire
        assert f"your order {order_id} is confirmed" in body
        assert "  2 x Desk lamp at 12.50 = 25.00\n" in body
        assert "  1 x USB cable at 3.00 = 3.00\n" in body
        assert f"Discount: -2.80 (coupon {coupon['code']})" in body
        assert "Total: 25.20\n" in body
        assert [("ada", f"Your order {order_id} is confirmed. Total 25.20.")] == SMS_SENT
        assert await sent_rows(settings, order_id) == {
            ("email", "ada@example.test"),
            ("sms", "ada"),
        }


async def test_a_batch_of_confirmations_mails_each_known_buyer_once(settings: Settings) -> None:
    known = {f"buyer_{i}": f"buyer{i}@example.test" for i in range(6)}
    await add_users(settings, known)
    async with smtp_server() as inbox, mailing_shop(settings, inbox) as shop:
        sale = await create_sale(shop, quantity=20, per_user_limit=1)
        buyers = [*known, *(f"stranger_{i}" for i in range(6))]  # strangers: not in users
        order_ids = []
        for user_id in buyers:
            response = await buy(shop, sale["id"], user_id)
            assert response.status_code == 202, response.text
            order_ids.append(response.json()["order_id"])
        for order_id in order_ids:
            assert (await order_settles(shop, order_id))["status"] == "confirmed"
        job_ids = {await notification_job_of(settings, o) for o in order_ids}
        jobs_done = [await job_settles(shop, job_id) for job_id in job_ids]
        assert {job["status"] for job in jobs_done} == {"done"}  # strangers: skipped, done
        assert sorted(r for mail in inbox.received for r in mail.rcpt_tos) == sorted(known.values())
        for user_id, order_id in zip(buyers, order_ids, strict=True):
            expected = {("email", known[user_id]), ("sms", user_id)} if user_id in known else set()
            assert await sent_rows(settings, order_id) == expected
        notified = [o for orders in (await notification_jobs(settings)).values() for o in orders]
        assert sorted(notified) == sorted(order_ids)  # each confirmed order in one job


async def test_orders_confirmed_together_share_one_job(settings: Settings) -> None:
    """Orders placed while no worker runs are confirmed in one batch when one starts: one
    notification job lists them all, and still mails each known buyer once."""
    known = {f"pat_{i}": f"pat{i}@example.test" for i in range(4)}
    await add_users(settings, known)
    buyers = [*known, "stranger_a", "stranger_b"]
    async with smtp_server() as inbox:
        async with mailing_shop(settings, inbox, worker_in_process=False) as shop:
            sale = await create_sale(shop, quantity=10, per_user_limit=1)
            order_ids = []
            for user_id in buyers:
                response = await buy(shop, sale["id"], user_id)
                assert response.status_code == 202, response.text
                order_ids.append(response.json()["order_id"])
        assert await notification_jobs(settings) == {}  # nothing confirmed yet
        async with mailing_shop(settings, inbox) as shop:
            for order_id in order_ids:
                assert (await order_settles(shop, order_id))["status"] == "confirmed"
            [(job_id, orders)] = (await eventually(lambda: notification_jobs(settings))).items()
            assert sorted(orders) == sorted(order_ids)
            job = await job_settles(shop, job_id)
            assert (job["status"], job["subject"]) == ("done", None)
            recipients = sorted(r for mail in inbox.received for r in mail.rcpt_tos)
            assert recipients == sorted(known.values())
            message_ids = {mail.message["Message-ID"] for mail in inbox.received}
            assert message_ids == {
                f"<{notification_id_for(o)}@peakshop.test>" for o in order_ids[: len(known)]
            }


async def test_a_redelivered_job_sends_only_what_it_has_not_sent(settings: Settings) -> None:
    SMS_SENT.clear()
    await add_users(settings, {"bob": "bob@example.test"})
    async with smtp_server() as inbox, mailing_shop(settings, inbox) as shop:
        product = await create_product(shop, stock=5)
        order_id = (await place(shop, "bob", [(product["id"], 1)])).json()["order_id"]
        job_id = await notification_job_of(settings, order_id)
        assert (await job_settles(shop, job_id))["attempts"] == 1
        assert len(inbox.received) == 1 and len(SMS_SENT) == 1

        async def redeliver() -> dict[str, Any]:
            # What a worker killed after its sends and before it finished the job leaves.
            await execute(
                settings,
                sa.update(jobs)
                .where(jobs.c.id == job_id)
                .values(status="processing", locked_until=0.0, finished_at=None),
            )
            await redeliver_job(settings, job_id)

            async def again() -> dict[str, Any] | None:
                job = await get(shop, f"/api/v1/orders/jobs/{job_id}")
                return job if job["status"] == "done" else None

            return await eventually(again, within=10)

        assert (await redeliver())["attempts"] == 2
        assert len(inbox.received) == 1, "the email was sent twice"
        assert len(SMS_SENT) == 1, "the SMS was sent twice"

        # The SMS was not recorded (the worker died between the two): only the SMS goes again.
        await execute(
            settings,
            sa.text(
                "DELETE FROM notifications_sent WHERE notification_id = :n AND channel = 'sms'"
            ),
            {"n": notification_id_for(order_id)},
        )
        assert (await redeliver())["attempts"] == 3
        assert len(inbox.received) == 1
        assert len(SMS_SENT) == 2
        assert await sent_rows(settings, order_id) == {
            ("email", "bob@example.test"),
            ("sms", "bob"),
        }


async def test_the_confirmation_of_a_retried_dead_letter_is_notified(settings: Settings) -> None:
    """The single-order path (``lifecycle.confirm``): a dead order job retried by an admin."""
    await add_users(settings, {"cy": "cy@example.test"})
    async with smtp_server() as inbox:
        failing = {"payment_mode": "simulated", "payment_failure_rate": 1.0}
        async with mailing_shop(settings, inbox, order_job_max_attempts=1, **failing) as shop:
            product = await create_product(shop, stock=5)
            answer = (await place(shop, "cy", [(product["id"], 1)])).json()
            assert (await order_settles(shop, answer["order_id"]))["status"] == "failed"
        assert inbox.received == []
        async with mailing_shop(settings, inbox) as shop:
            retried = await shop.post(
                f"/api/v1/jobs/dead-letters/{answer['job_id']}/retry", headers=ADMIN
            )
            assert retried.status_code == 202, retried.text

            async def confirmed() -> bool:
                order = await get(shop, f"/api/v1/orders/{answer['order_id']}")
                return bool(order["status"] == "confirmed")

            assert await eventually(confirmed, within=10)
            job_id = await notification_job_of(settings, answer["order_id"])
            assert (await job_settles(shop, job_id))["status"] == "done"
            assert [mail.rcpt_tos for mail in inbox.received] == [["cy@example.test"]]


async def test_a_user_the_shop_does_not_know_gets_nothing(settings: Settings) -> None:
    async with smtp_server() as inbox, mailing_shop(settings, inbox) as shop:
        product = await create_product(shop, stock=5)
        order_id = (await place(shop, "ghost", [(product["id"], 1)])).json()["order_id"]
        assert (await order_settles(shop, order_id))["status"] == "confirmed"
        job = await job_settles(shop, await notification_job_of(settings, order_id))
        assert (job["status"], job["attempts"], job["last_error"]) == ("done", 1, None)
        assert inbox.received == []
        assert await sent_rows(settings, order_id) == set()


async def test_a_refused_email_is_retried_then_dead_lettered_leaving_the_order_alone(
    settings: Settings,
) -> None:
    await add_users(settings, {"dee": "dee@example.test"})
    async with smtp_server() as inbox:
        inbox.refuse = "554 5.7.1 Message rejected"
        async with mailing_shop(settings, inbox, notification_job_max_attempts=3) as shop:
            product = await create_product(shop, stock=5)
            order_id = (await place(shop, "dee", [(product["id"], 2)])).json()["order_id"]
            job_id = await notification_job_of(settings, order_id)
            job = await job_settles(shop, job_id)
            assert (job["status"], job["attempts"]) == ("dead", 3)
            assert "Message rejected" in job["last_error"]
            assert inbox.refused == 3
            order = await get(shop, f"/api/v1/orders/{order_id}")
            assert order["status"] == "confirmed"  # the order is left alone
            stock = await get(shop, f"/api/v1/inventory/{product['id']}")
            assert (stock["current_stock"], stock["sold"]) == (3, 2)
            letters = await get(shop, "/api/v1/jobs/dead-letters", admin=True)
            assert job_id in [letter["id"] for letter in letters["items"]]
            assert await sent_rows(settings, order_id) == {("sms", "dee")}  # the SMS went

            # The relay takes mail again: a retried dead letter sends the email (only).
            inbox.refuse = None
            retried = await shop.post(f"/api/v1/jobs/dead-letters/{job_id}/retry", headers=ADMIN)
            assert retried.status_code == 202, retried.text
            assert (await job_settles(shop, job_id))["status"] == "done"
            assert [mail.rcpt_tos for mail in inbox.received] == [["dee@example.test"]]


async def test_without_an_smtp_host_emails_are_logged_and_count_as_sent(
    settings: Settings,
) -> None:
    await add_users(settings, {"eve": "eve@example.test"})
    async with AsyncTestClient(app=create_app(shop_settings(settings))) as shop:
        product = await create_product(shop, stock=5)
        order_id = (await place(shop, "eve", [(product["id"], 1)])).json()["order_id"]
        job_id = await notification_job_of(settings, order_id)
        assert (await job_settles(shop, job_id))["status"] == "done"
        assert await sent_rows(settings, order_id) == {
            ("email", "eve@example.test"),
            ("sms", "eve"),
        }
