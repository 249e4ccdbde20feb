"""Settings of notifications and reports: strict, like every other setting."""

from __future__ import annotations

import pytest

from peakshop.config import MIN_TOKEN_LENGTH, SettingsError, load_settings
from peakshop.jobs.senders import (
    LoggingSmsSender,
    LogMailer,
    SmtpMailer,
    build_mailer,
    build_sms_sender,
)
from peakshop.runtime import Runtime
from tests.jobs.support import RecordingSms


def production(**env: str) -> dict[str, str]:
    return {
        "PEAKSHOP_ENV": "production",
        "PEAKSHOP_ADMIN_TOKEN": "a" * MIN_TOKEN_LENGTH,
        "PEAKSHOP_SERVICE_TOKEN": "s" * MIN_TOKEN_LENGTH,
        **env,
    }


def test_defaults_log_emails_and_sms() -> None:
    settings = load_settings(environ={})
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (None, 25, None)
    assert settings.reports_dir == "./var/reports"
    assert isinstance(build_mailer(settings), LogMailer)
    assert isinstance(build_sms_sender(settings), LoggingSmsSender)


def test_smtp_settings_from_the_environment() -> None:
    settings = load_settings(
        environ=production(
            PEAKSHOP_SMTP_HOST="mail.example.test",
            PEAKSHOP_SMTP_PORT="587",
            PEAKSHOP_SMTP_FROM="Shop <shop@example.test>",
            PEAKSHOP_SMTP_USER="shop",
            PEAKSHOP_SMTP_PASSWORD="secret",
            PEAKSHOP_SMTP_STARTTLS="true",
            PEAKSHOP_SMS_SENDER="tests.jobs.support:recording_sms",
            PEAKSHOP_REPORTS_DIR="/srv/reports",
        )
    )
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (
        "mail.example.test",
        587,
        True,
    )
    assert isinstance(build_mailer(settings), SmtpMailer)
    assert isinstance(build_sms_sender(settings), RecordingSms)
    assert load_settings(environ={"PEAKSHOP_SMTP_HOST": ""}).smtp_host is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PEAKSHOP_SMTP_PORT": "0"}, "PEAKSHOP_SMTP_PORT"),
        ({"PEAKSHOP_SMTP_PORT": "smtp"}, "smtp_port"),
        ({"PEAKSHOP_SMTP_FROM": "the shop"}, "PEAKSHOP_SMTP_FROM"),
        ({"PEAKSHOP_SMTP_USER": "shop"}, "PEAKSHOP_SMTP_PASSWORD"),
        ({"PEAKSHOP_SMTP_STARTTLS": "maybe"}, "smtp_starttls"),
        ({"PEAKSHOP_SMS_SENDER": "twilio"}, "PEAKSHOP_SMS_SENDER"),
        ({"PEAKSHOP_SMS_SENDER": "a.b:c; rm"}, "PEAKSHOP_SMS_SENDER"),
        ({"PEAKSHOP_NOTIFICATION_JOB_MAX_ATTEMPTS": "0"}, "attempts"),
        ({"PEAKSHOP_REPORT_JOB_RETRY_BASE_DELAY": "-1"}, "delays"),
        ({"PEAKSHOP_REPORTS_DIR": " "}, "PEAKSHOP_REPORTS_DIR"),
    ],
)
def test_malformed_values_refuse_to_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


def test_smtp_credentials_need_starttls_outside_development() -> None:
    credentials = {"PEAKSHOP_SMTP_USER": "shop", "PEAKSHOP_SMTP_PASSWORD": "secret"}
    load_settings(environ=credentials)  # development: a local relay may go without TLS
    with pytest.raises(SettingsError, match="in clear"):
        load_settings(environ=production(**credentials))
    with pytest.raises(SettingsError, match="in clear"):
        load_settings(environ=production(**credentials, PEAKSHOP_SMTP_STARTTLS="false"))


def test_an_sms_sender_that_cannot_be_loaded_stops_the_start() -> None:
    with pytest.raises(ModuleNotFoundError):
        Runtime(load_settings(environ={"PEAKSHOP_SMS_SENDER": "no_such_module:factory"}))
    with pytest.raises(AttributeError):
        Runtime(load_settings(environ={"PEAKSHOP_SMS_SENDER": "tests.jobs.support:nothing"}))
