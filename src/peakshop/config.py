"""Settings from ``PEAKSHOP_*`` environment variables; the mode follows from them alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec

ENV_PREFIX = "PEAKSHOP_"
DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_SERVICE_TOKEN = "dev-service-token"
MIN_TOKEN_LENGTH = 24


class SettingsError(ValueError):
    """Raised for unknown, malformed or insecure settings; the process refuses to start."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Mode(StrEnum):
    EMBEDDED = "embedded"
    SCALED = "scaled"


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite+aiosqlite:///./peakshop.db"
    redis_url: str | None = None
    admin_token: str = DEV_ADMIN_TOKEN
    service_token: str = DEV_SERVICE_TOKEN
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON outside development, console inside it
    # Validation log: flush at this many records or after this many seconds, whichever first.
    validation_log_batch_size: int = 100
    validation_log_flush_interval: float = 5.0
    validation_log_max_buffer: int = 100_000
    validation_log_flush_attempts: int = 4
    validation_log_retry_base_delay: float = 0.2
    validation_log_dead_letter_path: str = "./var/validation-log-dead-letters.jsonl"
    # SQLite busy timeout; PostgreSQL pool size (per process).
    sqlite_busy_timeout_ms: int = 5_000
    db_pool_size: int = 10
    # Safety net for coupon index invalidation in scaled mode (pub/sub is the fast path).
    coupon_index_refresh_seconds: float = 30.0
    migrate_on_start: bool | None = None  # None: only in embedded mode

    @property
    def mode(self) -> Mode:
        return Mode.SCALED if self.redis_url else Mode.EMBEDDED

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def json_logs(self) -> bool:
        if self.log_json is not None:
            return self.log_json
        return self.env is not Environment.DEVELOPMENT

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.mode is Mode.EMBEDDED

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings strictly: unknown ``PEAKSHOP_`` variables and insecure values are errors."""
    source = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    fields = set(Settings.__struct_fields__)
    for key, value in source.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in fields:
            raise SettingsError(f"unknown setting {key}")
        raw[name] = None if value == "" and name in {"redis_url", "log_json"} else value
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from exc
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if not settings.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise SettingsError(
            "PEAKSHOP_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise SettingsError("PEAKSHOP_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    if settings.validation_log_batch_size < 1 or settings.validation_log_max_buffer < 1:
        raise SettingsError("validation log batch size and buffer must be positive")
    if settings.validation_log_flush_interval <= 0 or settings.validation_log_flush_attempts < 1:
        raise SettingsError("validation log flush interval and attempts must be positive")
    if settings.env is Environment.DEVELOPMENT:
        return
    for name, value, default in (
        ("PEAKSHOP_ADMIN_TOKEN", settings.admin_token, DEV_ADMIN_TOKEN),
        ("PEAKSHOP_SERVICE_TOKEN", settings.service_token, DEV_SERVICE_TOKEN),
    ):
        if not value or value == default or len(value) < MIN_TOKEN_LENGTH:
            raise SettingsError(
                f"{name} must be set to a secret of at least {MIN_TOKEN_LENGTH} characters "
                f"outside development (PEAKSHOP_ENV={settings.env.value})"
            )
    if settings.admin_token == settings.service_token:
        raise SettingsError("PEAKSHOP_ADMIN_TOKEN and PEAKSHOP_SERVICE_TOKEN must differ")
