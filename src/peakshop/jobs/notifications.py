"""Order notifications: when an order is confirmed, a ``notifications.order_confirmed`` job
emails the buyer a plain-text confirmation (order id, items, total) and sends an SMS.

The job is written in the confirmation's own transaction (``stage_order_confirmed``, called by
``orders.lifecycle``) and published after its commit, so a confirmation that rolls back has no
notification and a committed one always has exactly one job (its id is derived from the order
id). Users the shop does not know (bench and flash-sale buyers are often not in ``users``) are
skipped with a log line: nothing to send, the job is done.

Idempotency: every send is recorded in ``notifications_sent`` (job, channel) and a redelivered
job sends only what is not recorded. SMTP itself cannot be made exactly-once: a worker that dies
after the server accepted the message and before the record commits sends it again when the job
is redelivered (at least once). The Message-ID is derived from the job, so a mail system that
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
from sqlalchemy.engine import RowMapping

from peakshop.catalog.models import products
from peakshop.config import Settings
from peakshop.coupons.models import users
from peakshop.db import upsert_insert
from peakshop.jobs.models import notifications_sent
from peakshop.jobs.retry import RetryPolicy
from peakshop.jobs.senders import Mailer, SmsSender, build_mailer, build_sms_sender
from peakshop.jobs.worker import JobContext, JobType
from peakshop.kit.clock import utcnow
from peakshop.kit.money import format_cents
from peakshop.orders import repository as order_repository

if TYPE_CHECKING:
    from peakshop.jobs.service import Outbox

log = structlog.get_logger(__name__)

ORDER_CONFIRMED = "notifications.order_confirmed"
EMAIL, SMS = "email", "sms"
MAX_RETRY_DELAY = 900.0  # seconds: an SMTP relay down for a while is waited out, not hammered
SKIPPED_IDS_LOGGED = 20  # order ids named in a "notifications_skipped" line (with the count)


def job_id_for(order_id: str) -> str:
    """One notification job per order, whoever stages it and however often."""
    return "ntf_" + hashlib.blake2b(order_id.encode(), digest_size=12).hexdigest()


def stage_order_confirmed(
    conn: sa.Connection, outbox: Outbox, order_ids: Sequence[str], *, now: datetime
) -> None:
    """Write the notification jobs of orders just confirmed, in the confirmation's
    transaction; the caller publishes the outbox after the commit."""
    outbox.stage(
        conn,
        ORDER_CONFIRMED,
        [{"order_id": order_id} for order_id in order_ids],
        subjects=list(order_ids),
        job_ids=[job_id_for(order_id) for order_id in order_ids],
        now=now,
    )


@dataclass(frozen=True, kw_only=True)
class Facts:
    orders: dict[str, RowMapping]
    items: dict[str, list[RowMapping]]
    names: dict[int, str]
    emails: dict[str, str]
    sent: set[tuple[str, str]]  # (job id, channel)


def _pairs(conn: sa.Connection, key: Any, value: Any, ids: Sequence[Any]) -> dict[Any, Any]:
    if not ids:
        return {}
    rows = conn.execute(sa.select(key, value).where(key.in_(list(ids))))
    return {k: v for k, v in rows}


def _facts(conn: sa.Connection, job_ids: list[str], order_ids: list[str]) -> Facts:
    orders = order_repository.get_orders(conn, order_ids)
    items = order_repository.items_of(conn, list(orders))
    product_ids = sorted({item["product_id"] for rows in items.values() for item in rows})
    user_ids = sorted({order["user_id"] for order in orders.values()})
    sent_rows = conn.execute(
        sa.select(notifications_sent.c.job_id, notifications_sent.c.channel).where(
            notifications_sent.c.job_id.in_(job_ids)
        )
    )
    return Facts(
        orders=orders,
        items=items,
        names=_pairs(conn, products.c.id, products.c.name, product_ids),
        emails=_pairs(conn, users.c.id, users.c.email, user_ids),
        sent={(job_id, channel) for job_id, channel in sent_rows},
    )


def _record_sent(conn: sa.Connection, records: list[dict[str, Any]]) -> None:
    conn.execute(upsert_insert(conn, notifications_sent).on_conflict_do_nothing(), records)


def compose_email(
    settings: Settings,
    *,
    job_id: str,
    order: RowMapping,
    items: list[RowMapping],
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
    message["Message-ID"] = f"<{job_id}@{domain}>"  # the same for a redelivered job
    message.set_content("\n".join(lines) + "\n")
    return message


def sms_text(order: RowMapping) -> str:
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
        """One read for the batch, one SMTP session, the SMSs at once, one write recording
        what was sent. A job fails if any of its sends failed; its retry sends only those."""
        runtime = contexts[0].runtime
        job_ids = [context.message.id for context in contexts]
        order_ids = [payload["order_id"] for payload in payloads]
        facts = await runtime.db.run_read(partial(_facts, job_ids=job_ids, order_ids=order_ids))
        emails: list[tuple[int, str, EmailMessage]] = []
        texts: list[tuple[int, str, str]] = []
        skipped: dict[str, list[str]] = {}  # reason -> order ids
        for index, (job_id, order_id) in enumerate(zip(job_ids, order_ids, strict=True)):
            order = facts.orders.get(order_id)
            if order is None or order["status"] != "confirmed":
                skipped.setdefault("order", []).append(order_id)
                continue
            recipient = facts.emails.get(order["user_id"])
            if recipient is None:
                skipped.setdefault("unknown_user", []).append(order_id)
                continue
            if (job_id, EMAIL) not in facts.sent:
                message = compose_email(
                    self._settings,
                    job_id=job_id,
                    order=order,
                    items=facts.items.get(order_id, []),
                    names=facts.names,
                    recipient=recipient,
                )
                emails.append((index, recipient, message))
            if (job_id, SMS) not in facts.sent:
                texts.append((index, order["user_id"], sms_text(order)))
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
            self._send_emails([message for _, _, message in emails]),
            asyncio.gather(
                *(self._sms.send(user_id=user_id, text=text) for _, user_id, text in texts),
                return_exceptions=True,
            ),
        )
        outcomes: list[Exception | None] = [None] * len(contexts)
        records: list[dict[str, Any]] = []
        now = utcnow()
        sends = [(index, EMAIL, recipient) for index, recipient, _ in emails]
        sends += [(index, SMS, user_id) for index, user_id, _ in texts]
        for (index, channel, recipient), result in zip(sends, [*mailed, *texted], strict=True):
            if isinstance(result, Exception):
                outcomes[index] = result
                log.warning("notification_send_failed", job=job_ids[index], channel=channel)
            elif isinstance(result, BaseException):
                raise result
            else:
                records.append(
                    {
                        "job_id": job_ids[index],
                        "channel": channel,
                        "order_id": order_ids[index],
                        "recipient": recipient,
                        "sent_at": now,
                    }
                )
        if records:
            await runtime.db.run_write(partial(_record_sent, records=records), background=True)
        return outcomes

    async def _send_emails(self, messages: list[EmailMessage]) -> list[Exception | None]:
        return await self._mailer.send_many(messages) if messages else []


async def give_up(context: JobContext, payload: dict[str, Any], error: str) -> None:
    """Out of attempts: the order stays as it is (confirmed); the job is a dead letter that an
    admin can retry once the mail relay is back."""
    log.error("notification_not_sent", order_id=payload["order_id"], error=error)


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
