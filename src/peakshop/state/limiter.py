"""Rate limits per user and per client IP, with the ``limits`` library, in both modes.

The strategy is the moving window, not the sliding-window counter. The counter estimates the
previous window's hits as evenly spread, so a burst at the end of one window and another at
the start of the next can admit more than N within one window's length. The moving window
keeps one timestamp per accepted hit and admits a hit only while fewer than N lie within the
last window: never more than N in any interval of that length, which is the promise. It costs
up to N timestamps per key (a list in memory, a Redis list read and trimmed by one Lua script),
which is small for the per-second limits configured here.

Storage follows the mode: in the process (embedded: one process sees every request) or Redis
(scaled: every API process shares the windows). In Redis the timestamps come from each API
host's clock, so hosts need synchronised clocks (NTP) for the window to be exact across them.
Validation is the exception in scaled mode, by default: its windows stay in each process
(``rate_limit_validate_shared`` puts them in Redis). A validation is a read answered from
memory in ~30 us; a Redis round trip per check cost more than the read, about a third of the
process's validation throughput (benchmarks/compare_modes.py). Its limit guards capacity, so a
window per process is enough: behind N processes a user gets at most N times the limit.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

import limits
import structlog
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from peakshop.config import Settings
from peakshop.errors import RateLimited
from peakshop.monitoring import metrics

log = structlog.get_logger(__name__)

Scope = Literal["user", "ip"]

# Rule name (what routes pass to ``check``) -> its per-user and per-IP settings.
RULES: Mapping[str, tuple[str, str]] = {
    "validate": ("rate_limit_validate_per_user", "rate_limit_validate_per_ip"),
    "orders": ("rate_limit_orders_per_user", "rate_limit_orders_per_ip"),
}
REDIS_KEY_PREFIX = "peakshop:rl"
# After a storage failure, requests pass unchecked this long before the storage is tried again,
# so that a dead Redis costs one failed round trip per second, not one per request.
FAILURE_BACKOFF_SECONDS = 1.0
# Short: a limiter that waits on a stalled Redis would stall every request it guards.
REDIS_TIMEOUT_SECONDS = 1.0

Limits = tuple[tuple[Scope, limits.RateLimitItem], ...]


class InProcessStorage(MemoryStorage):
    """limits' in-process storage, with the moving window kept by hand.

    Written here because the parent's bookkeeping costs more than the checks. Its
    ``acquire_entry`` schedules an expiry sweep that visits every key with one thread hop each
    (``asyncio.to_thread``), again as soon as the previous sweep ends: measured at ~70 us per
    check with 10,000 users in the window (benchmarks/limiter_check.py), several times a whole
    validation. Here each accepted hit queues its expiry, and a key is dropped when the queue's
    head reaches its newest hit: O(1) per hit, no thread, no task.

    A key's window is a list of hit times (floats), newest first, cut to the window at every
    hit. The parent keeps an ``Entry`` object per hit: objects the garbage collector tracks,
    which lived long enough to be promoted to its oldest generation and so triggered full
    collections, each walking every long-lived object of the process (under the validate
    suite's load ~2 a second, and with 1,000 dashboards connected 40-50 ms each). Floats are
    not tracked. Kept until the key went quiet instead of cut to the window, a user hit
    steadily held up to ``limit`` stale entries (100,000 in the process after 20 s of that
    load, the full collections growing with them).
    """

    def __init__(self) -> None:
        super().__init__(wrap_exceptions=True)
        self._hits: dict[str, list[float]] = {}
        self._expiring: deque[tuple[float, str, int]] = deque()  # (expires at, key, window)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        # No await in here: atomic on the event loop, so no lock is needed.
        if amount > limit:
            return False
        now = time.time()
        self._drop_expired(now)
        hits = self._hits.setdefault(key, [])
        if len(hits) > limit - amount and hits[limit - amount] >= now - expiry:
            return False
        hits[:0] = [now] * amount
        del hits[limit:]  # older hits can never again be inside a window of this limit
        horizon = now - expiry
        while hits[-1] < horizon:  # nor can those past the window
            hits.pop()
        self._expiring.append((now + expiry, key, expiry))
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(the oldest hit in the window, the hits in it), as the parent answers."""
        now = time.time()
        if hits := self._hits.get(key):
            inside = bisect.bisect_left(hits, -(now - expiry), key=lambda hit: -hit)
            return hits[inside - 1], inside
        return now, 0

    def held_keys(self) -> list[str]:
        return list(self._hits)

    def hits_of(self, key: str) -> list[float]:
        """The hit times kept for ``key``, newest first."""
        return list(self._hits.get(key, ()))

    async def clear(self, key: str) -> None:
        await super().clear(key)
        self._hits.pop(key, None)

    async def reset(self) -> int | None:
        held = len(self._hits)
        await super().reset()
        self._hits.clear()
        self._expiring.clear()
        return held

    def _drop_expired(self, now: float) -> None:
        expiring = self._expiring
        while expiring and expiring[0][0] <= now:
            _, key, window = expiring.popleft()
            hits = self._hits.get(key)
            if hits is not None and (not hits or hits[0] + window <= now):
                del self._hits[key]

    def __len__(self) -> int:
        """Keys held (a key is freed once its newest hit has left the window)."""
        return len(self._hits)


def rules_from_settings(settings: Settings) -> dict[str, Limits]:
    """The configured limits of each rule, the per-user one first; "" leaves a scope out."""
    rules: dict[str, Limits] = {}
    for name, (per_user, per_ip) in RULES.items():
        configured: list[tuple[Scope, limits.RateLimitItem]] = []
        fields: tuple[tuple[Scope, str], ...] = (("user", per_user), ("ip", per_ip))
        for scope, field in fields:
            value = getattr(settings, field).strip()
            if value:
                configured.append((scope, limits.parse(value)))
        rules[name] = tuple(configured)
    return rules


class RateLimiter:
    """``await limiter.check("orders", user_id=..., client_ip=...)`` raises ``RateLimited``
    when one of the rule's limits is exhausted; it returns at once when the rule has none."""

    def __init__(
        self,
        *,
        storage: Storage,
        rules: Mapping[str, Limits],
        pool: BlockingConnectionPool | None = None,
        failure_backoff: float = FAILURE_BACKOFF_SECONDS,
        local_rules: frozenset[str] = frozenset(),
    ) -> None:
        """``local_rules`` keep their windows in this process whatever ``storage`` is."""
        self.storage = storage
        shared = MovingWindowRateLimiter(storage)
        local = MovingWindowRateLimiter(InProcessStorage()) if local_rules else shared
        self._strategies = {name: local if name in local_rules else shared for name in rules}
        self._rules = dict(rules)
        self._pool = pool
        self._failure_backoff = failure_backoff
        self._skip_until = 0.0  # the shared storage failed: unchecked until then
        self._local_rules = local_rules
        # Bound once: the series exist (at 0) from the start, and a rejection skips a lookup.
        self._rejected = {
            (name, scope): metrics.RATE_LIMITED.labels(name, scope)
            for name in self._rules
            for scope in ("user", "ip")
        }
        self._errors = {name: metrics.RATE_LIMITER_ERRORS.labels(name) for name in self._rules}

    def enabled(self, rule_name: str) -> bool:
        return bool(self._rules[rule_name])

    async def check(self, rule_name: str, *, user_id: str | None, client_ip: str | None) -> None:
        # A KeyError for an unknown rule name: a typo must not switch limiting off unnoticed.
        rule = self._rules[rule_name]
        if not rule:
            return
        local = rule_name in self._local_rules
        if self._skip_until and not local and time.monotonic() < self._skip_until:
            self._errors[rule_name].inc()
            return
        strategy = self._strategies[rule_name]
        # The narrow (per-user) limit first: a user over its own limit is refused before it
        # takes a slot of the limit it shares with everyone behind the same IP.
        for scope, item in rule:
            identity = user_id if scope == "user" else client_ip
            if not identity:
                continue
            try:
                if await strategy.hit(item, rule_name, scope, identity):
                    continue
                stats = await strategy.get_window_stats(item, rule_name, scope, identity)
            except StorageError as exc:
                self._storage_failed(rule_name, exc)
                return
            # A slot frees when the oldest hit in the window leaves it (``reset_time``); when
            # one freed between the two calls, the client may retry at once (1 s, the minimum).
            wait = 0.0 if stats.remaining > 0 else stats.reset_time - time.time()
            retry_after = max(1, math.ceil(wait))
            self._rejected[rule_name, scope].inc()
            raise RateLimited(
                f"too many requests for this {'user' if scope == 'user' else 'client IP'} "
                f"(limit {item}); retry in {retry_after} s",
                retry_after=retry_after,
                scope=scope,
            )

    def _storage_failed(self, rule_name: str, exc: StorageError) -> None:
        # Fail open: the limiter protects capacity, it does not decide correctness (stock,
        # coupon limits and idempotency are enforced elsewhere, atomically). Refusing every
        # request while Redis is away would turn a degraded limiter into a full outage.
        self._errors[rule_name].inc()
        self._skip_until = time.monotonic() + self._failure_backoff
        log.warning(
            "rate_limit_storage_failed",
            endpoint=rule_name,
            error=repr(exc.storage_error),
            fail_open_seconds=self._failure_backoff,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def build_limiter(settings: Settings) -> RateLimiter:
    rules = rules_from_settings(settings)
    if not settings.redis_url:
        return RateLimiter(storage=InProcessStorage(), rules=rules)
    # Our own pool (limits would build one it never closes): timeouts kept short, and one
    # retry on a new connection after a Redis restart, when every pooled one is dead.
    options: dict[str, Any] = {
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    # Blocking: past max_connections a check waits for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=64, timeout=REDIS_TIMEOUT_SECONDS, **options
    )
    storage = RedisStorage(
        _storage_uri(settings.redis_url),
        wrap_exceptions=True,
        implementation="redispy",  # the client the project already uses, not coredis
        key_prefix=REDIS_KEY_PREFIX,
        connection_pool=pool,  # type: ignore[arg-type]
    )
    local = frozenset() if settings.rate_limit_validate_shared else frozenset({"validate"})
    return RateLimiter(storage=storage, rules=rules, pool=pool, local_rules=local)


def _storage_uri(redis_url: str) -> str:
    """limits' scheme for the same server (it reads only the address and credentials here)."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url
