"""Where notifications leave peakshop: email over SMTP (or into the log when no SMTP host is
set) and SMS through a pluggable sender.

Another SMS sender is plugged with ``PEAKSHOP_SMS_SENDER=package.module:factory``: the factory
gets the settings and returns an object with the ``SmsSender`` method. peakshop stores no phone
numbers, so a sender gets the user id and looks the number up where it lives (the SMS
gateway's contact list, the storefront's user service).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import structlog

from peakshop.config import Settings

log = structlog.get_logger(__name__)

SMTP_TIMEOUT_SECONDS = 30.0


class Mailer(Protocol):
    async def send_many(self, messages: Sequence[EmailMessage]) -> list[Exception | None]:
        """Send each message; one outcome per message (None: accepted by the server)."""


class SmtpMailer:
    """One SMTP session per batch, the messages sent one after the other: a batch of 100
    confirmations is one connection (and one login), not 100."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host
        self._settings = settings

    async def send_many(self, messages: Sequence[EmailMessage]) -> list[Exception | None]:
        settings = self._settings
        outcomes: list[Exception | None] = []
        try:
            smtp = aiosmtplib.SMTP(
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_user,  # logs in on connect when set
                password=settings.smtp_password,
                start_tls=settings.smtp_starttls,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
            async with smtp:
                for message in messages:
                    try:
                        await smtp.send_message(message)
                    except aiosmtplib.SMTPServerDisconnected:
                        raise
                    except aiosmtplib.SMTPException as exc:  # this message only (a refusal)
                        outcomes.append(exc)
                    else:
                        outcomes.append(None)
        except (OSError, aiosmtplib.SMTPException) as exc:
            # The session failed: every message not answered yet failed with it.
            outcomes += [exc] * (len(messages) - len(outcomes))
        return outcomes


class LogMailer:
    """No SMTP host configured (development, tests of other domains): the email goes into the
    log, and counts as sent."""

    async def send_many(self, messages: Sequence[EmailMessage]) -> list[Exception | None]:
        for message in messages:
            log.info(
                "email_logged",
                to=message["To"],
                subject=message["Subject"],
                body=message.get_content(),
            )
        return [None] * len(messages)


def build_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else LogMailer()


class SmsSender(Protocol):
    async def send(self, *, user_id: str, text: str) -> None:
        """Send ``text`` to the user's phone; raise if it was not accepted (the job retries)."""


class LoggingSmsSender:
    """The built-in sender: writes the SMS into the log."""

    async def send(self, *, user_id: str, text: str) -> None:
        log.info("sms_logged", user_id=user_id, text=text)


def build_sms_sender(settings: Settings) -> SmsSender:
    """``log``, or ``package.module:factory`` called with the settings (checked at start, so
    a typo stops the process instead of failing every notification)."""
    if settings.sms_sender == "log":
        return LoggingSmsSender()
    module_name, _, attribute = settings.sms_sender.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    sender: SmsSender = factory(settings)
    if not callable(getattr(sender, "send", None)):
        raise TypeError(f"PEAKSHOP_SMS_SENDER={settings.sms_sender}: the object has no send()")
    return sender
