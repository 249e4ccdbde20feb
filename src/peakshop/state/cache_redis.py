"""The cache's second level: Redis, shared by every API process (scaled mode).

Layout (one hash tag, ``{cache}``, so that every key a script touches lives in one Redis
Cluster slot; the cache then sits on one shard, which a catalog's working set fits):

- ``peakshop:{cache}:v:<key>``: a cached value (bytes, with the entry's TTL);
- ``peakshop:{cache}:tv:<tag>``: the tag's version, bumped by each invalidation;
- ``peakshop:{cache}:tk:<tag>``: the set of value keys stored under the tag;
- ``peakshop:{cache}:epoch``: bumped when the whole cache is dropped.

A value is stored only if the versions of its tags (and the epoch) are still those read before
its load began, in the same script that records it under its tags; an invalidation bumps the
versions and deletes the tagged keys in one script. So a value computed from the database
before a write, in any process, is never stored after that write's invalidation.

Every call is bounded by a short timeout and goes through a circuit breaker: after one
failure the level is skipped (``L2Unavailable`` at once) until the owner has probed Redis and
replayed what it could not write, then ``reset`` closes the circuit again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from peakshop.monitoring import metrics

log = structlog.get_logger(__name__)

T = TypeVar("T")

KEY_PREFIX = "peakshop:{cache}:"
EPOCH_KEY = KEY_PREFIX + "epoch"
# A tag's version outlives any load in flight by far; it expires so that tags of products long
# gone do not accumulate. (A load that read a version which then expired is refused: safe.)
TAG_VERSION_TTL_MS = 24 * 3600 * 1000
DEL_BATCH = 500  # keys per DEL inside a script (Lua's unpack has a stack limit)
# Calls in flight per process. redis-py's default pool raises past 100 connections, which a
# burst of cold keys reaches; here a call past the limit waits for a slot (within its timeout)
# and, if none frees, goes on without L2 without tripping the circuit (busy is not broken).
MAX_CONNECTIONS = 64

# KEYS: value, epoch, tag versions... -> {1, value} or {0, epoch, versions...}
FETCH = """
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
local result = {0}
for i = 2, #KEYS do result[i] = redis.call('GET', KEYS[i]) or '0' end
return result
"""

# KEYS: value, epoch, n tag versions, n tag key sets
# ARGV: value, ttl ms, n, the epoch and versions read before the load
STORE = """
local n = tonumber(ARGV[3])
for i = 1, n + 1 do
  if (redis.call('GET', KEYS[1 + i]) or '0') ~= ARGV[3 + i] then return 0 end
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 1, n do
  local set = KEYS[2 + n + i]
  redis.call('SADD', set, KEYS[1])
  if redis.call('PTTL', set) < ttl then redis.call('PEXPIRE', set, ttl) end
end
return 1
"""

# KEYS: n tag versions, n tag key sets; ARGV: n, version ttl ms, delete batch size.
# The value keys deleted are named by the sets, not by KEYS: they share the {cache} slot.
INVALIDATE = """
local n = tonumber(ARGV[1])
local batch = tonumber(ARGV[3])
for i = 1, n do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
  local members = redis.call('SMEMBERS', KEYS[n + i])
  for j = 1, #members, batch do
    redis.call('DEL', unpack(members, j, math.min(j + batch - 1, #members)))
  end
  redis.call('DEL', KEYS[n + i])
end
return n
"""


class L2Unavailable(Exception):
    """Redis failed, timed out, or the circuit is open: the caller goes on without L2."""


def value_key(key: str) -> str:
    return f"{KEY_PREFIX}v:{key}"


def _version_key(tag: str) -> str:
    return f"{KEY_PREFIX}tv:{tag}"


def _keys_key(tag: str) -> str:
    return f"{KEY_PREFIX}tk:{tag}"


class RedisL2:
    def __init__(self, url: str, *, timeout: float, retry_seconds: float) -> None:
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        # Its own pool with the short timeout (the hot state's client waits up to 2 s), bytes
        # in and out (values are encoded JSON). One retry on a new connection: after a Redis
        # restart every pooled connection is dead.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._fetch = self._client.register_script(FETCH)
        self._store = self._client.register_script(STORE)
        self._invalidate = self._client.register_script(INVALIDATE)
        self._open_since: float | None = None  # monotonic time of the failure that opened it
        self._latency = metrics.CACHE_LATENCY.labels("l2")

    # --- circuit breaker ---------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._open_since is None

    def retry_due(self) -> bool:
        return self._open_since is not None and (
            time.monotonic() - self._open_since >= self.retry_seconds
        )

    def trip(self) -> None:
        """Skip L2 from now on until ``reset`` (a failure, or an invalidation not written)."""
        if self._open_since is None:
            log.warning("cache_l2_unavailable", retry_seconds=self.retry_seconds)
        self._open_since = time.monotonic()

    def reset(self) -> None:
        if self._open_since is not None:
            log.info("cache_l2_recovered")
        self._open_since = None

    async def _call(
        self, call: Callable[[], Awaitable[T]], *, force: bool = False, seconds: float | None = None
    ) -> T:
        if self._open_since is not None and not force:
            raise L2Unavailable("circuit open")
        limit = seconds or self.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit):
                await self._slots.acquire()
        except TimeoutError:
            raise L2Unavailable("busy: every connection in use") from None
        try:
            async with asyncio.timeout(max(limit - (time.perf_counter() - started), 0.001)):
                return await call()
        except Exception as exc:
            # Whatever it was (timeout, connection, a script error), the request goes on
            # without L2 and the circuit keeps the next ones from paying for it again.
            if self._open_since is None:
                log.warning("cache_l2_call_failed", error=repr(exc))
            self.trip()
            raise L2Unavailable(repr(exc)) from exc
        finally:
            self._slots.release()
            self._latency.observe(time.perf_counter() - started)

    # --- operations ---------------------------------------------------------------------------

    async def fetch(self, key: str, tags: Sequence[str]) -> tuple[bytes | None, list[bytes]]:
        """The value, or None and the epoch and tag versions to ``store`` under."""
        keys = [value_key(key), EPOCH_KEY, *map(_version_key, tags)]
        result: list[Any] = await self._call(lambda: self._fetch(keys=keys))
        if result[0] == 1:
            return bytes(result[1]), []
        return None, [bytes(version) for version in result[1:]]

    async def store(
        self, key: str, value: bytes, tags: Sequence[str], versions: Sequence[bytes], ttl: float
    ) -> bool:
        """Store unless a tag was invalidated since ``versions`` were read; True if stored."""
        keys = [
            value_key(key),
            EPOCH_KEY,
            *map(_version_key, tags),
            *map(_keys_key, tags),
        ]
        args: list[Any] = [value, max(1, int(ttl * 1000)), len(tags), *versions]
        stored = await self._call(lambda: self._store(keys=keys, args=args))
        return bool(stored)

    async def invalidate(
        self, tags: Sequence[str], *, force: bool = False, seconds: float | None = None
    ) -> None:
        keys = [*map(_version_key, tags), *map(_keys_key, tags)]
        args = [len(tags), TAG_VERSION_TTL_MS, DEL_BATCH]
        await self._call(
            lambda: self._invalidate(keys=keys, args=args), force=force, seconds=seconds
        )

    async def clear(self, *, seconds: float) -> None:
        """Drop every cached value: the epoch first (loads in flight then store nothing), then
        the keys, scanned (not atomic: a long pass, for when the invalidations to replay were
        too many to keep)."""

        async def run() -> None:
            await self._client.incr(EPOCH_KEY)
            for pattern in (f"{KEY_PREFIX}v:*", f"{KEY_PREFIX}tk:*"):
                batch: list[Any] = []
                async for key in self._client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= DEL_BATCH:
                        await self._client.unlink(*batch)
                        batch = []
                if batch:
                    await self._client.unlink(*batch)

        await self._call(run, force=True, seconds=seconds)

    async def ping(self) -> None:
        await self._call(self._client.ping, force=True)

    async def warm_up(self, *, seconds: float) -> None:
        """Connect and load the scripts before the first read pays for it (a connection's
        handshake and a script load can take longer than the read timeout)."""

        async def run() -> None:
            await self._client.ping()
            for script in (self._fetch, self._store, self._invalidate):
                await self._client.script_load(script.script)

        await self._call(run, force=True, seconds=seconds)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()
