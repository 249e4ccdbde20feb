"""Strict settings: unknown PEAKSHOP_* variables and insecure or malformed values refuse to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from peakshop.config import (
    DEV_ADMIN_TOKEN,
    DEV_SERVICE_TOKEN,
    MIN_TOKEN_LENGTH,
    Environment,
    Mode,
    Settings,
    SettingsError,
    load_settings,
)

ADMIN_SECRET = "a" * MIN_TOKEN_LENGTH
SERVICE_SECRET = "s" * MIN_TOKEN_LENGTH


def production(**env: str) -> dict[str, str]:
    return {
        "PEAKSHOP_ENV": "production",
        "PEAKSHOP_ADMIN_TOKEN": ADMIN_SECRET,
        "PEAKSHOP_SERVICE_TOKEN": SERVICE_SECRET,
        **env,
    }


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.env is Environment.DEVELOPMENT
    assert settings.database_url == "sqlite+aiosqlite:///./peakshop.db"
    assert settings.redis_url is None
    assert settings.mode is Mode.EMBEDDED
    assert settings.is_sqlite
    assert (settings.admin_token, settings.service_token) == (DEV_ADMIN_TOKEN, DEV_SERVICE_TOKEN)
    assert settings.validation_log_batch_size == 100
    assert settings.validation_log_flush_interval == 5.0
    assert settings.validation_log_max_buffer > settings.validation_log_batch_size
    assert settings.validation_log_flush_attempts >= 2
    assert settings.should_migrate_on_start  # embedded mode migrates on start
    assert settings.json_logs is False  # readable logs in development
    assert settings == Settings()


def test_values_are_read_and_converted_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "PEAKSHOP_DATABASE_URL": "postgresql+asyncpg://u:p@db:5432/shop",
            "PEAKSHOP_VALIDATION_LOG_BATCH_SIZE": "250",
            "PEAKSHOP_VALIDATION_LOG_FLUSH_INTERVAL": "0.5",
            "PEAKSHOP_LOG_JSON": "true",
            "PEAKSHOP_MIGRATE_ON_START": "false",
            "UNRELATED": "ignored",
            "peakshop_lowercase_is_not_ours": "ignored",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/shop"
    assert not settings.is_sqlite
    assert settings.validation_log_batch_size == 250
    assert settings.validation_log_flush_interval == 0.5
    assert settings.json_logs is True
    assert settings.should_migrate_on_start is False


def test_unknown_peakshop_variable_is_refused() -> None:
    with pytest.raises(SettingsError, match="PEAKSHOP_DATABASE_URI"):
        load_settings(environ={"PEAKSHOP_DATABASE_URI": "sqlite+aiosqlite:///x.db"})
    with pytest.raises(SettingsError, match="PEAKSHOP_BOGUS"):
        load_settings(environ={"PEAKSHOP_BOGUS": ""})


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, Mode.EMBEDDED),
        ({"PEAKSHOP_REDIS_URL": ""}, Mode.EMBEDDED),  # empty means unset
        ({"PEAKSHOP_REDIS_URL": "redis://localhost:6379/0"}, Mode.SCALED),
        ({"PEAKSHOP_REDIS_URL": "rediss://cache.internal:6380/1"}, Mode.SCALED),
        ({"PEAKSHOP_REDIS_URL": "unix:///run/redis.sock"}, Mode.SCALED),
    ],
)
def test_mode_follows_from_the_redis_url(env: dict[str, str], mode: Mode) -> None:
    settings = load_settings(environ=env)
    assert settings.mode is mode
    # Scaled mode does not migrate on start by default (one `peakshop db upgrade` for all).
    assert settings.should_migrate_on_start is (mode is Mode.EMBEDDED)


@pytest.mark.parametrize("env", ["production", "test"])
def test_outside_development_good_tokens_start(env: str) -> None:
    settings = load_settings(environ=production(PEAKSHOP_ENV=env))
    assert settings.env.value == env
    assert settings.json_logs is True


@pytest.mark.parametrize("env", ["production", "test"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PEAKSHOP_ADMIN_TOKEN", ""),
        ("PEAKSHOP_SERVICE_TOKEN", ""),
        ("PEAKSHOP_ADMIN_TOKEN", DEV_ADMIN_TOKEN),
        ("PEAKSHOP_SERVICE_TOKEN", DEV_SERVICE_TOKEN),
        ("PEAKSHOP_ADMIN_TOKEN", "x" * (MIN_TOKEN_LENGTH - 1)),
        ("PEAKSHOP_SERVICE_TOKEN", "y" * (MIN_TOKEN_LENGTH - 1)),
    ],
)
def test_outside_development_weak_tokens_are_refused(env: str, variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ=production(PEAKSHOP_ENV=env, **{variable: value}))


def test_outside_development_missing_tokens_are_refused() -> None:
    with pytest.raises(SettingsError, match="PEAKSHOP_ADMIN_TOKEN"):
        load_settings(environ={"PEAKSHOP_ENV": "production"})


def test_outside_development_the_same_token_for_both_is_refused() -> None:
    with pytest.raises(SettingsError, match="must differ"):
        load_settings(environ=production(PEAKSHOP_SERVICE_TOKEN=ADMIN_SECRET))


def test_development_accepts_the_default_tokens() -> None:
    settings = load_settings(environ={"PEAKSHOP_ENV": "development"})
    assert settings.admin_token == DEV_ADMIN_TOKEN


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/shop",
        "sqlite:///./peakshop.db",  # the blocking driver
        "postgresql://u:p@localhost/shop",  # the blocking driver
        "postgres+asyncpg://u:p@localhost/shop",
        "",
        "peakshop.db",
    ],
)
def test_bad_database_url_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="PEAKSHOP_DATABASE_URL"):
        load_settings(environ={"PEAKSHOP_DATABASE_URL": url})


@pytest.mark.parametrize("url", ["http://localhost:6379", "localhost:6379", "memcached://x"])
def test_bad_redis_url_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="PEAKSHOP_REDIS_URL"):
        load_settings(environ={"PEAKSHOP_REDIS_URL": url})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PEAKSHOP_ENV", "staging"),
        ("PEAKSHOP_VALIDATION_LOG_BATCH_SIZE", "lots"),
        ("PEAKSHOP_VALIDATION_LOG_BATCH_SIZE", "0"),
        ("PEAKSHOP_VALIDATION_LOG_MAX_BUFFER", "0"),
        ("PEAKSHOP_VALIDATION_LOG_FLUSH_INTERVAL", "0"),
        ("PEAKSHOP_VALIDATION_LOG_FLUSH_INTERVAL", "-1"),
        ("PEAKSHOP_VALIDATION_LOG_FLUSH_ATTEMPTS", "0"),
        ("PEAKSHOP_LOG_JSON", "perhaps"),
        ("PEAKSHOP_DB_POOL_SIZE", "ten"),
        ("PEAKSHOP_SQLITE_LOG_CACHE_MIB", "-1"),
        ("PEAKSHOP_SQLITE_WRITE_CACHE_MIB", "-1"),
    ],
)
def test_malformed_values_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError):
        load_settings(environ={variable: value})


def test_rate_limit_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.rate_limit_validate_per_user == "100/second"
    assert settings.rate_limit_validate_per_ip == ""  # off: few storefront backends call it
    assert settings.rate_limit_orders_per_user == "10/second"
    assert settings.rate_limit_orders_per_ip == ""


def test_rate_limits_are_read_from_the_environment_and_empty_turns_one_off() -> None:
    settings = load_settings(
        environ={
            "PEAKSHOP_RATE_LIMIT_VALIDATE_PER_USER": "",
            "PEAKSHOP_RATE_LIMIT_VALIDATE_PER_IP": "500 per second",
            "PEAKSHOP_RATE_LIMIT_ORDERS_PER_USER": "20/5 seconds",
            "PEAKSHOP_RATE_LIMIT_ORDERS_PER_IP": "100/minute",
        }
    )
    assert settings.rate_limit_validate_per_user == ""
    assert settings.rate_limit_validate_per_ip == "500 per second"
    assert settings.rate_limit_orders_per_user == "20/5 seconds"
    assert settings.rate_limit_orders_per_ip == "100/minute"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PEAKSHOP_RATE_LIMIT_VALIDATE_PER_USER", "100", "is not a rate limit"),
        ("PEAKSHOP_RATE_LIMIT_VALIDATE_PER_IP", "100/sec", "is not a rate limit"),
        ("PEAKSHOP_RATE_LIMIT_ORDERS_PER_USER", "ten/second", "is not a rate limit"),
        ("PEAKSHOP_RATE_LIMIT_ORDERS_PER_IP", "5/100 milliseconds", "is not a rate limit"),
        ("PEAKSHOP_RATE_LIMIT_ORDERS_PER_USER", "0/second", "at least 1"),
        ("PEAKSHOP_RATE_LIMIT_ORDERS_PER_USER", "10/second; 100/minute", "give one limit"),
        ("PEAKSHOP_RATE_LIMIT_VALIDATE_PER_USER", "off", "is not a rate limit"),
    ],
)
def test_malformed_rate_limits_are_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=variable) as raised:
        load_settings(environ={variable: value})
    assert message in str(raised.value)
    with pytest.raises(SettingsError, match=variable):  # overrides are checked alike
        load_settings(environ={}, **{variable.removeprefix("PEAKSHOP_").lower(): value})


def test_overrides_are_checked_like_the_environment() -> None:
    with pytest.raises(SettingsError, match="PEAKSHOP_ADMIN_TOKEN"):
        load_settings(environ={}, env="production", service_token=SERVICE_SECRET)
    settings = load_settings(environ={}, validation_log_batch_size=7)
    assert settings.validation_log_batch_size == 7


def test_the_cli_refuses_to_start_with_bad_settings(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PEAKSHOP_")}
    database = f"sqlite+aiosqlite:///{tmp_path / 'never.db'}"
    for extra, expected in (
        ({"PEAKSHOP_DATABSE_URL": database}, "PEAKSHOP_DATABSE_URL"),
        ({"PEAKSHOP_DATABASE_URL": database, "PEAKSHOP_ENV": "production"}, "PEAKSHOP_ADMIN_TOKEN"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "peakshop", "db", "upgrade"],
            env={**base, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result
        assert "configuration error" in result.stderr
        assert expected in result.stderr
    assert not (tmp_path / "never.db").exists()
    assert not (tmp_path / "peakshop.db").exists()


def test_a_negative_worker_rest_is_refused() -> None:
    with pytest.raises(SettingsError, match="PEAKSHOP_WORKER_REST_RATIO"):
        load_settings(environ={"PEAKSHOP_WORKER_REST_RATIO": "-1"})
    assert load_settings(environ={"PEAKSHOP_WORKER_REST_RATIO": "0"}).worker_rest_ratio == 0


def test_the_live_events_spread_is_checked() -> None:
    for bad in ("-0.1", "11"):
        with pytest.raises(SettingsError, match="PEAKSHOP_WS_SEND_SPREAD_SECONDS"):
            load_settings(environ={"PEAKSHOP_WS_SEND_SPREAD_SECONDS": bad})
    assert (
        load_settings(environ={"PEAKSHOP_WS_SEND_SPREAD_SECONDS": "0"}).ws_send_spread_seconds == 0
    )
    assert load_settings(environ={}).ws_send_spread_seconds == 0.5
