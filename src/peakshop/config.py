"""Settings from ``PEAKSHOP_*`` environment variables; the mode follows from them alone."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from email.utils import parseaddr
from enum import StrEnum
from typing import Any

import limits
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
    # Page cache of the shop's SQLite write connections, MiB (SQLite's default is 2 MiB).
    sqlite_write_cache_mib: int = 64
    # Page cache of the validation log writer's child process, MiB. Its inserts land at random
    # places of the by-user index, but a miss is read back from the OS's cache: 2, 8, 16 and
    # 64 MiB cost the child the same CPU per batch at 1M rows, while 64 MiB made it a 104 MB
    # process against 45 MB at 16 (benchmarks/log_writer_cache.py).
    sqlite_log_cache_mib: int = 16
    # Page cache of the connection that reads catalog pages on the event loop's thread, MiB
    # (the process's own memory: the hot pages stay read without a system call each).
    sqlite_read_cache_mib: int = 64
    db_pool_size: int = 10
    # How long a Python thread may keep the GIL while another waits for it (CPython's default
    # is 5 ms). The event loop shares the GIL with the server's threads (SQLite writes, the
    # job queue's reads, catalog reads over their inline budget; catalog pages were all read
    # in threads when this was measured): a thread in pure Python kept the loop waiting up
    # to 5 ms (0.8 ms at 0.5). With the
    # validation log still written by a thread, one open-loop validation run at 5 ms had a
    # P99 of 8.7 ms (4.3 ms at 0.5).
    gil_switch_interval_ms: float = 0.5
    # Safety net for coupon index invalidation in scaled mode (pub/sub is the fast path).
    coupon_index_refresh_seconds: float = 30.0
    migrate_on_start: bool | None = None  # None: only in embedded mode
    # Rate limits in the `limits` notation ("100/second", "10/5 seconds"); "" turns one off.
    # Validation and placement are called by the storefront's backend from few IPs: no per-IP
    # limit by default (set one when buyers reach peakshop directly).
    rate_limit_validate_per_user: str = "100/second"
    rate_limit_validate_per_ip: str = ""
    rate_limit_orders_per_user: str = "10/second"
    rate_limit_orders_per_ip: str = ""
    # Scaled mode: validation's windows in Redis, shared by every API process (exact across
    # processes, one Redis round trip per check), or in each process (the default: validation
    # is a read served from memory, and the round trip would cost more than the read itself).
    rate_limit_validate_shared: bool = False
    # Orders: pending orders not confirmed within the payment window are cancelled.
    payment_window_seconds: float = 900.0
    # Confirmation: "immediate", or "simulated" (a failure rate and a delay, for tests and
    # benchmarks of the retry and dead-letter paths).
    payment_mode: str = "immediate"
    payment_failure_rate: float = 0.0
    payment_delay_ms: float = 0.0
    payment_seed: int | None = None
    # Jobs: the order job's attempts and backoff; the lease after which a job held by a
    # dead worker is delivered again; how overdue a job is before its message is republished.
    order_job_max_attempts: int = 5
    order_job_retry_base_delay: float = 0.5
    order_job_retry_max_delay: float = 60.0
    job_lease_seconds: float = 30.0
    job_republish_grace_seconds: float = 30.0
    # A queued message whose job row is not written yet (its API process is still at it) is
    # left to that process this long before a worker writes the row from the message.
    job_adopt_after_seconds: float = 5.0
    worker_concurrency: int = 16
    # The serving process works the queue itself: by default in embedded mode only (in scaled
    # mode `peakshop worker` processes do).
    worker_in_process: bool | None = None
    # The in-process worker yields to a burst of orders (kit/foreground.py): while they are
    # placed faster than this many per second it takes no jobs, for at most
    # worker_max_yield_seconds in a row (then it works beside them). 0 turns it off.
    worker_yield_above_order_rate: float = 200.0
    worker_max_yield_seconds: float = 30.0
    # ...and after each batch it rests this many times as long as the batch took, unless
    # requests queue in the event loop (kit/foreground.py). 0 turns it off.
    worker_rest_ratio: float = 1.0
    low_stock_threshold: int = 10
    # Notifications (jobs/notifications.py): the order confirmation email over SMTP (no host:
    # emails are logged, not sent) and the SMS sender ("log", or "package.module:factory").
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "peakshop@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool | None = None  # None: when the server offers it; true: required
    sms_sender: str = "log"
    notification_job_max_attempts: int = 8
    notification_job_retry_base_delay: float = 5.0
    # Reports (jobs/reports.py): where the files go (storage shared by every API and worker
    # host in scaled mode) and the report job's attempts.
    reports_dir: str = "./var/reports"
    report_job_max_attempts: int = 3
    report_job_retry_base_delay: float = 10.0
    # Analytics: the roll-up runs this often and redoes this many finished days each time.
    analytics_rollup_seconds: float = 60.0
    analytics_redo_days: int = 3
    # Cache (state/cache.py): entries held in each process, TTL of an entry in both levels,
    # and the longest wait on Redis (L2) before a read goes on without it.
    cache_l1_max_entries: int = 10_000
    cache_ttl_seconds: float = 60.0
    cache_l2_timeout_ms: float = 50.0
    # Monitoring (monitoring/). Off: no per-request metrics (Prometheus HTTP series, the
    # monitor's per-second counters), no monitor tick and no live events; chosen when the app
    # is built, so the hot paths carry no check of it. For measuring what monitoring costs
    # (benchmarks/monitoring_overhead.py); /health, /ready and /metrics keep working.
    monitoring_enabled: bool = True
    # Requests slower than this are logged as slow_request (also with monitoring off).
    slow_request_ms: float = 500.0
    # Alerts, evaluated each second by each server process's monitor: firing after
    # alert_for_seconds consecutive seconds over the threshold, resolved after as many under.
    alert_error_rate: float = 0.05  # share of 5xx answers in a second
    alert_p99_ms: float = 1_000.0
    alert_queue_depth: int = 10_000
    alert_dead_letters_per_minute: int = 10  # growth of the dead letters over the last minute
    alert_rss_mb: float = 1_024.0
    alert_for_seconds: int = 3
    # Memory monitor: RSS (and the traced Python heap with memory_tracemalloc) sampled every
    # memory_sample_seconds; a leak is suspected when the least-squares trend over the window
    # climbs faster than the slope, fits well (R²) and RSS is past memory_leak_min_rss_mb.
    memory_sample_seconds: float = 10.0
    memory_window_seconds: float = 600.0
    memory_leak_slope_mb_per_minute: float = 1.0
    memory_leak_min_r2: float = 0.8
    memory_leak_min_rss_mb: float = 256.0
    memory_tracemalloc: bool = False
    # Live events (WebSocket /ws/monitoring): events waiting for one client before it is
    # dropped as too slow, and the longest a single send may take.
    ws_client_backlog: int = 1_000
    ws_send_timeout_seconds: float = 5.0
    # Sends to the WebSocket clients are spread over about this long (monitoring/fanout.py;
    # 0: all at once).
    ws_send_spread_seconds: float = 0.5
    # Order updates sent per process and second at most (0: no limit).
    live_order_events_per_second: int = 200
    # GET /api/v1/monitoring/benchmark: the newest JSON report in this folder.
    bench_results_dir: str = "./benchmarks/results"

    @property
    def mode(self) -> Mode:
        return Mode.SCALED if self.redis_url else Mode.EMBEDDED

    @property
    def works_queue_in_process(self) -> bool:
        if self.worker_in_process is not None:
            return self.worker_in_process
        return self.mode is Mode.EMBEDDED

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
        raw[name] = None if value == "" and name in NULLABLE_WHEN_EMPTY else value
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
    caches = (
        settings.sqlite_write_cache_mib,
        settings.sqlite_read_cache_mib,
        settings.sqlite_log_cache_mib,
    )
    if min(caches) < 0:
        raise SettingsError("PEAKSHOP_SQLITE_WRITE_, _READ_ and _LOG_CACHE_MIB must be >= 0")
    if not 0 < settings.gil_switch_interval_ms <= 100:
        raise SettingsError("PEAKSHOP_GIL_SWITCH_INTERVAL_MS must be in (0, 100]")
    _check_rate_limits(settings)
    _check_orders(settings)
    _check_background_jobs(settings)
    _check_cache(settings)
    _check_monitoring(settings)
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


# Settings an empty variable unsets.
NULLABLE_WHEN_EMPTY = {
    "redis_url",
    "log_json",
    "smtp_host",
    "smtp_user",
    "smtp_password",
    "smtp_starttls",
}

RATE_LIMIT_FIELDS = (
    "rate_limit_validate_per_user",
    "rate_limit_validate_per_ip",
    "rate_limit_orders_per_user",
    "rate_limit_orders_per_ip",
)


def _check_rate_limits(settings: Settings) -> None:
    for name in RATE_LIMIT_FIELDS:
        value = getattr(settings, name).strip()
        if not value:
            continue
        variable = ENV_PREFIX + name.upper()
        try:
            items = limits.parse_many(value)
        except ValueError as exc:
            raise SettingsError(
                f"{variable}={value!r} is not a rate limit such as '100/second' or "
                f"'10/5 seconds' ({exc}); use '' to turn it off"
            ) from exc
        # parse_many accepts "1/second;5/minute"; one limit per setting keeps the cost of a
        # check at one storage round trip per scope.
        if len(items) != 1:
            raise SettingsError(f"{variable}={value!r}: give one limit, such as '100/second'")
        if items[0].amount < 1:
            raise SettingsError(f"{variable}={value!r}: the amount must be at least 1")


def _check_orders(settings: Settings) -> None:
    if settings.payment_mode not in ("immediate", "simulated"):
        raise SettingsError("PEAKSHOP_PAYMENT_MODE must be 'immediate' or 'simulated'")
    if not 0.0 <= settings.payment_failure_rate <= 1.0:
        raise SettingsError("PEAKSHOP_PAYMENT_FAILURE_RATE must be between 0 and 1")
    if settings.payment_delay_ms < 0 or settings.payment_window_seconds <= 0:
        raise SettingsError("payment delay must be >= 0 and the payment window > 0")
    if settings.order_job_max_attempts < 1 or settings.worker_concurrency < 1:
        raise SettingsError("order job attempts and worker concurrency must be at least 1")
    if settings.worker_yield_above_order_rate < 0 or settings.worker_max_yield_seconds < 0:
        raise SettingsError("worker yield threshold and time must not be negative")
    if settings.worker_rest_ratio < 0:
        raise SettingsError("PEAKSHOP_WORKER_REST_RATIO must not be negative")
    if min(settings.job_lease_seconds, settings.job_republish_grace_seconds) <= 0 or (
        settings.job_adopt_after_seconds < 0
    ):
        raise SettingsError("job lease and republish grace must be positive")
    if settings.order_job_retry_base_delay < 0 or settings.order_job_retry_max_delay < 0:
        raise SettingsError("job retry delays must not be negative")


def _check_cache(settings: Settings) -> None:
    if settings.cache_l1_max_entries < 1:
        raise SettingsError("PEAKSHOP_CACHE_L1_MAX_ENTRIES must be at least 1")
    if settings.cache_ttl_seconds <= 0:
        raise SettingsError("PEAKSHOP_CACHE_TTL_SECONDS must be positive")
    if not 0 < settings.cache_l2_timeout_ms <= 5_000:
        raise SettingsError("PEAKSHOP_CACHE_L2_TIMEOUT_MS must be above 0 and at most 5000")


def _check_monitoring(settings: Settings) -> None:
    positive = (
        "slow_request_ms",
        "alert_p99_ms",
        "alert_rss_mb",
        "memory_sample_seconds",
        "memory_window_seconds",
        "ws_send_timeout_seconds",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be positive")
    if not 0 <= settings.alert_error_rate <= 1:
        raise SettingsError("PEAKSHOP_ALERT_ERROR_RATE must be between 0 and 1 (a share)")
    if settings.alert_queue_depth < 0 or settings.alert_dead_letters_per_minute < 0:
        raise SettingsError("alert thresholds on the queue must not be negative")
    if not 1 <= settings.alert_for_seconds <= 3_600:
        raise SettingsError("PEAKSHOP_ALERT_FOR_SECONDS must be between 1 and 3600")
    if settings.memory_window_seconds < 3 * settings.memory_sample_seconds:
        raise SettingsError(
            "PEAKSHOP_MEMORY_WINDOW_SECONDS must hold at least 3 samples "
            "(3 x PEAKSHOP_MEMORY_SAMPLE_SECONDS)"
        )
    if settings.memory_leak_slope_mb_per_minute < 0 or settings.memory_leak_min_rss_mb < 0:
        raise SettingsError("memory leak thresholds must not be negative")
    if not 0 <= settings.memory_leak_min_r2 <= 1:
        raise SettingsError("PEAKSHOP_MEMORY_LEAK_MIN_R2 must be between 0 and 1")
    if not 1 <= settings.ws_client_backlog <= 1_000_000:
        raise SettingsError("PEAKSHOP_WS_CLIENT_BACKLOG must be between 1 and 1000000")
    if not 0 <= settings.ws_send_spread_seconds <= 10:
        raise SettingsError("PEAKSHOP_WS_SEND_SPREAD_SECONDS must be between 0 and 10")
    if settings.live_order_events_per_second < 0:
        raise SettingsError("PEAKSHOP_LIVE_ORDER_EVENTS_PER_SECOND must not be negative")


_SMS_SENDER = re.compile(r"^(log|[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*)$")


def _check_background_jobs(settings: Settings) -> None:
    if not 1 <= settings.smtp_port <= 65535:
        raise SettingsError("PEAKSHOP_SMTP_PORT must be between 1 and 65535")
    if "@" not in parseaddr(settings.smtp_from)[1]:
        raise SettingsError("PEAKSHOP_SMTP_FROM must be an email address")
    if (settings.smtp_user is None) != (settings.smtp_password is None):
        raise SettingsError("set both PEAKSHOP_SMTP_USER and PEAKSHOP_SMTP_PASSWORD, or neither")
    if (
        settings.smtp_user is not None
        and settings.smtp_starttls is not True
        and settings.env is not Environment.DEVELOPMENT
    ):
        raise SettingsError(
            "PEAKSHOP_SMTP_USER needs PEAKSHOP_SMTP_STARTTLS=true outside development "
            "(the password would otherwise be sent in clear)"
        )
    if not _SMS_SENDER.match(settings.sms_sender):
        raise SettingsError("PEAKSHOP_SMS_SENDER must be 'log' or 'package.module:factory'")
    if min(settings.notification_job_max_attempts, settings.report_job_max_attempts) < 1:
        raise SettingsError("notification and report job attempts must be at least 1")
    if min(settings.notification_job_retry_base_delay, settings.report_job_retry_base_delay) < 0:
        raise SettingsError("notification and report job retry delays must not be negative")
    if not settings.reports_dir.strip():
        raise SettingsError("PEAKSHOP_REPORTS_DIR must not be empty")
