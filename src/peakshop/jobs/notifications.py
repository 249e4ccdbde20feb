"""Order notifications: when orders are confirmed, a ``notifications.order_confirmed`` job
emails each buyer a plain-text confirmation (order id, items, total) and sends an SMS.

One job per confirmation, not per order: the job is written in the confirmation's own
transaction (``stage_order_confirmed``, called by ``orders.lifecycle``) and lists the orders
it confirmed (one, or a worker's batch of up to a hundred). A confirmation that rolls back has
no notification and a committed one always has exactly one job: an order is confirmed once,
and the job's id is derived from its orders' ids. Per order jobs were half the queue's work in
a flash sale (a row written, claimed and finished per order, most of them for buyers with
nothing to send), for work that is one read and one SMTP session per batch anyway. Users the
shop does not know (bench and flash-sale buyers are often not in ``users``) are skipped with a
log line: nothing to send.

Idempotency: each order's notification has its own id (derived from the order id); every send
is recorded in ``notifications_sent`` (notification, channel) and a redelivered job sends only
what is not recorded. SMTP itself cannot be made exactly-once: a worker that dies after the
server accepted the message and before the record commits sends it again when the job is
redelivered (at least once). The Message-ID is the notification's id, so a mail system that
deduplicates on it drops such a second copy.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from peakshop.catalog.models import products
from peakshop.config import Settings
from peakshop.coupons.models import users
from peakshop.db import Record, upsert_insert
from peakshop.jobs.models import notifications_sent
from peakshop.jobs.retry import RetryPolicy
from peakshop.jobs.senders import Mailer, SmsSender, build_mailer, build_sms_sender
from peakshop.jobs.worker import JobContext, JobType
from peakshop.kit import sqlite_driver
from peakshop.kit.clock import utcnow
from peakshop.kit.money import format_cents
from peakshop.kit.sqlite_driver import IN_JSON, json_list
from peakshop.orders import repository as order_repository

if TYPE_CHECKING:
    from peakshop.jobs.service import Outbox

log = structlog.get_logger(__name__)

ORDER_CONFIRMED = "notifications.order_confirmed"
EMAIL, SMS = "email", "sms"
MAX_RETRY_DELAY = 900.0  # seconds: an SMTP relay down for a while is waited out, not hammered
SKIPPED_IDS_LOGGED = 20  # order ids named in a "notifications_skipped" line (with the count)
# Orders read and gone through at a time: a batch of 100 jobs names up to 10,000 orders (a
# flash sale's), and all at once they held the event loop for tens of milliseconds.
FACTS_CHUNK = 500


def _digest(text: str) -> str:
    return "ntf_" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def notification_id_for(order_id: str) -> str:
    """An order's notification: the key of its sends and its emails' Message-ID."""
    return _digest(order_id)


def job_id_for(order_ids: Sequence[str]) -> str:
    """The job of one confirmation, whoever stages it and however often. An order is
    confirmed in one committed transaction only, so no two jobs share an order."""
    return _digest("\n".join(sorted(order_ids)))


def orders_of(payload: dict[str, Any]) -> list[str]:
    """The orders a job notifies (jobs written before notifications were batched name one)."""
    ids = payload.get("order_ids")
    return list(ids) if ids is not None else [payload["order_id"]]


def stage_order_confirmed(
    conn: sa.Connection, outbox: Outbox, order_ids: Sequence[str], *, now: datetime
) -> None:
    """Write the notification job of orders just confirmed together, in the confirmation's
    transaction; the caller publishes the outbox after the commit."""
    if not order_ids:
        return
    outbox.stage(
        conn,
        ORDER_CONFIRMED,
        [{"order_ids": list(order_ids)}],
        subjects=[order_ids[0] if len(order_ids) == 1 else None],
        job_ids=[job_id_for(order_ids)],
        now=now,
    )


@dataclass(frozen=True, kw_only=True)
class Facts:
    orders: dict[str, Record]
    items: dict[str, list[Record]]
    names: dict[int, str]
    emails: dict[str, str]
    sent: set[tuple[str, str]]  # (notification id, channel)


def _lookup(conn: sa.Connection, key: Any, value: Any, ids: Sequence[Any]) -> list[Any]:
    """(key, value) of the rows whose ``key`` is one of ``ids``."""
    if not ids:
        return []
    if sqlite_driver.usable(conn):  # kit/sqlite_driver.py says why
        sql = f"SELECT {key.name}, {value.name} FROM {key.table.name} WHERE {key.name} {IN_JSON}"
        return list(sqlite_driver.fetch(conn, sql, (json_list(ids),)))
    return list(conn.execute(sa.select(key, value).where(key.in_(list(ids)))).all())


def _facts(conn: sa.Connection, order_ids: list[str]) -> Facts:
    """What the notifications of these orders need. Items, product names and earlier sends
    are read only for confirmed orders of buyers with an email address: a flash sale's
    buyers are often unknown to the shop, and had their items read for nothing."""
    orders = order_repository.get_orders(conn, order_ids)
    user_ids = sorted({order["user_id"] for order in orders.values()})
    emails = dict(_lookup(conn, users.c.id, users.c.email, user_ids))
    notified = [
        order_id
        for order_id, order in orders.items()
        if order["status"] == "confirmed" and order["user_id"] in emails
    ]
    items = order_repository.items_of(conn, notified) if notified else {}
    product_ids = sorted({item["product_id"] for rows in items.values() for item in rows})
    sent = _lookup(
        conn,
        notifications_sent.c.notification_id,
        notifications_sent.c.channel,
        [notification_id_for(order_id) for order_id in notified],
    )
    return Facts(
        orders=orders,
        items=items,
        names=dict(_lookup(conn, products.c.id, products.c.name, product_ids)),
        emails=emails,
        sent={(notification_id, channel) for notification_id, channel in sent},
    )


def _record_sent(conn: sa.Connection, records: list[dict[str, Any]]) -> None:
    conn.execute(upsert_insert(conn, notifications_sent).on_conflict_do_nothing(), records)


def compose_email(
    settings: Settings,
    *,
    notification_id: str,
    order: Record,
    items: list[Record],
    names: dict[int, str],
    recipient: str,
) -> EmailMessage:
    lines = [
        "Hello,",
        "",
        f"your order {order['id']} is confirmed.",
        "",
        "Items:",
    ]
    for item in items:
        name = names.get(item["product_id"], f"product {item['product_id']}")
        line_total = item["unit_price_cents"] * item["quantity"]
        lines.append(
            f"  {item['quantity']} x {name} at {format_cents(item['unit_price_cents'])}"
            f" = {format_cents(line_total)}"
        )
    lines += ["", f"Subtotal: {format_cents(order['subtotal_cents'])}"]
    if order["discount_cents"]:
        coupon = f" (coupon {order['coupon_code']})" if order["coupon_code"] else ""
        lines.append(f"Discount: -{format_cents(order['discount_cents'])}{coupon}")
    lines += [f"Total: {format_cents(order['total_cents'])}", "", "Thank you for your order."]
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = recipient
    message["Subject"] = f"Your order {order['id']} is confirmed"
    message["Date"] = format_datetime(utcnow())
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "peakshop"
    message["Message-ID"] = f"<{notification_id}@{domain}>"  # the same for a redelivered job
    message.set_content("\n".join(lines) + "\n")
    return message


def sms_text(order: Record) -> str:
    return f"Your order {order['id']} is confirmed. Total {format_cents(order['total_cents'])}."


class Notifier:
    """The job's handlers, with the configured mailer and SMS sender."""

    def __init__(self, settings: Settings, *, mailer: Mailer, sms: SmsSender) -> None:
        self._settings = settings
        self._mailer = mailer
        self._sms = sms

    async def handle(self, context: JobContext, payload: dict[str, Any]) -> None:
        [outcome] = await self.handle_batch([context], [payload])
        if outcome is not None:
            raise outcome

    async def handle_batch(
        self, contexts: list[JobContext], payloads: list[dict[str, Any]]
    ) -> list[Exception | None]:
        """A read per ``FACTS_CHUNK`` orders, one SMTP session, the SMSs at once, one write
        recording what was sent. A job fails if any of its sends failed; its retry sends only
        those."""
        runtime = contexts[0].runtime
        # (index of the job, order id) for every order of every job in the batch
        orders = [(index, o) for index, payload in enumerate(payloads) for o in orders_of(payload)]
        emails: list[tuple[int, str, str, EmailMessage]] = []  # job, order, recipient, mail
        texts: list[tuple[int, str, str, str]] = []  # job, order, user, text
        skipped: dict[str, list[str]] = {}  # reason -> order ids
        for start in range(0, len(orders), FACTS_CHUNK):
            chunk = orders[start : start + FACTS_CHUNK]
            facts = await runtime.db.run_read(partial(_facts, order_ids=[o for _, o in chunk]))
            self._compose(facts, chunk, emails=emails, texts=texts, skipped=skipped)
        for reason, skipped_ids in skipped.items():
            # One line per batch and reason, not per order: a flash sale's thousands of
            # orders a second would otherwise spend more on logging than on sending.
            log.info(
                "notifications_skipped",
                reason=reason,
                count=len(skipped_ids),
                order_ids=skipped_ids[:SKIPPED_IDS_LOGGED],
            )
        mailed, texted = await asyncio.gather(
            self._send_emails([message for *_, message in emails]),
            asyncio.gather(
                *(self._sms.send(user_id=user_id, text=text) for *_, user_id, text in texts),
                return_exceptions=True,
            ),
        )
        outcomes: list[Exception | None] = [None] * len(contexts)
        records: list[dict[str, Any]] = []
        now = utcnow()
        sends = [(index, order_id, EMAIL, recipient) for index, order_id, recipient, _ in emails]
        sends += [(index, order_id, SMS, user_id) for index, order_id, user_id, _ in texts]
        for (index, order_id, channel, recipient), result in zip(
            sends, [*mailed, *texted], strict=True
        ):
            if isinstance(result, Exception):
                outcomes[index] = result
                log.warning(
                    "notification_send_failed",
                    job=contexts[index].message.id,
                    order_id=order_id,
                    channel=channel,
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                records.append(
                    {
                        "notification_id": notification_id_for(order_id),
                        "channel": channel,
                        "order_id": order_id,
                        "recipient": recipient,
                        "sent_at": now,
                    }
                )
        if records:
            await runtime.db.run_write(partial(_record_sent, records=records), background=True)
        return outcomes

    def _compose(
        self,
        facts: Facts,
        chunk: list[tuple[int, str]],
        *,
        emails: list[tuple[int, str, str, EmailMessage]],
        texts: list[tuple[int, str, str, str]],
        skipped: dict[str, list[str]],
    ) -> None:
        """The sends of a chunk's orders ((job index, order id)) not sent before."""
        for index, order_id in chunk:
            order = facts.orders.get(order_id)
            if order is None or order["status"] != "confirmed":
                skipped.setdefault("order", []).append(order_id)
                continue
            recipient = facts.emails.get(order["user_id"])
            if recipient is None:
                skipped.setdefault("unknown_user", []).append(order_id)
                continue
            notification_id = notification_id_for(order_id)
            if (notification_id, EMAIL) not in facts.sent:
                message = compose_email(
                    self._settings,
                    notification_id=notification_id,
                    order=order,
                    items=facts.items.get(order_id, []),
                    names=facts.names,
                    recipient=recipient,
                )
                emails.append((index, order_id, recipient, message))
            if (notification_id, SMS) not in facts.sent:
                texts.append((index, order_id, order["user_id"], sms_text(order)))

    async def _send_emails(self, messages: list[EmailMessage]) -> list[Exception | None]:
        return await self._mailer.send_many(messages) if messages else []


async def give_up(context: JobContext, payload: dict[str, Any], error: str) -> None:
    """Out of attempts: the order stays as it is (confirmed); the job is a dead letter that an
    admin can retry once the mail relay is back."""
    log.error("notification_not_sent", order_ids=orders_of(payload), error=error)


def job_types(settings: Settings) -> list[JobType]:
    notifier = Notifier(settings, mailer=build_mailer(settings), sms=build_sms_sender(settings))
    return [
        JobType(
            name=ORDER_CONFIRMED,
            handle=notifier.handle,
            handle_batch=notifier.handle_batch,
            on_dead=give_up,
            retry=RetryPolicy(
                max_attempts=settings.notification_job_max_attempts,
                base_delay=settings.notification_job_retry_base_delay,
                max_delay=MAX_RETRY_DELAY,
            ),
        )
    ]
