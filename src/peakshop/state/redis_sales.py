"""Flash-sale admission on Redis (scaled mode): one Lua script per attempt.

The script checks the idempotency key, the stock and the buyer's cap, takes the units,
records the key and XADDs the order's job message to the queue stream, all or nothing:
Redis runs a script without interleaving anything else. A sale's keys share the hash tag
``{sale:ID}``. The queue stream is one key for all sales, so on Redis Cluster the stream
would have to move into each sale's slot; peakshop runs on one Redis primary (with replicas).
"""

from __future__ import annotations

from collections.abc import Callable

from redis import asyncio as aioredis

from peakshop.jobs.queue_redis import FIELD, STREAM, encode_message
from peakshop.state.ports import Admission, PreparedOrder, SaleSnapshot

PREFIX = "peakshop:"

# KEYS: stock, buyers, idempotency, stream
# ARGV: user, quantity, per-user limit, idempotency key, record, job message, stream field
_ADMIT = """
local prior = redis.call('HGET', KEYS[3], ARGV[4])
if prior then return {'replay', prior} end
local stock = redis.call('GET', KEYS[1])
if not stock then return {'not_loaded', ''} end
local quantity = tonumber(ARGV[2])
if tonumber(stock) < quantity then return {'sold_out', ''} end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held + quantity > tonumber(ARGV[3]) then return {'user_limit_reached', ''} end
redis.call('DECRBY', KEYS[1], quantity)
redis.call('HINCRBY', KEYS[2], ARGV[1], quantity)
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('XADD', KEYS[4], '*', ARGV[7], ARGV[6])
return {'admitted', ARGV[5]}
"""

# KEYS: stock, buyers; ARGV: user, quantity, per-user limit
_TAKE = """
local stock = redis.call('GET', KEYS[1])
if not stock then return 'not_loaded' end
local quantity = tonumber(ARGV[2])
if tonumber(stock) < quantity then return 'sold_out' end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held + quantity > tonumber(ARGV[3]) then return 'user_limit_reached' end
redis.call('DECRBY', KEYS[1], quantity)
redis.call('HINCRBY', KEYS[2], ARGV[1], quantity)
return 'taken'
"""

# KEYS: stock, buyers; ARGV: user, quantity. A sale the store does not hold stays unheld.
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[2])
local held = redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
if held <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS: stock, buyers, idempotency; ARGV: replace (0/1), remaining, expire-at, then the
# buyers' (user, units) pairs, a '--' separator, then the idempotency (key, record) pairs.
_LOAD = """
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[2])
local target = KEYS[2]
local i = 4
while i <= #ARGV do
  if ARGV[i] == '--' then
    target = KEYS[3]
    i = i + 1
  else
    redis.call('HSET', target, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
for k = 1, 3 do redis.call('EXPIREAT', KEYS[k], ARGV[3]) end
return 1
"""


def _keys(sale_id: int) -> list[str]:
    tag = f"{PREFIX}{{sale:{sale_id}}}"
    return [f"{tag}:stock", f"{tag}:buyers", f"{tag}:idempotency"]


class RedisSaleCounters:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._admit = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)
        self._take = client.register_script(_TAKE)
        self._load = client.register_script(_LOAD)

    async def admit(
        self,
        *,
        sale_id: int,
        user_id: str,
        quantity: int,
        per_user_limit: int,
        idempotency_key: str,
        prepare: Callable[[], PreparedOrder],
    ) -> Admission:
        order = prepare()  # the script enqueues the order's job: it needs it up front
        outcome, prior = await self._admit(
            keys=[*_keys(sale_id), STREAM],
            args=[
                user_id,
                quantity,
                per_user_limit,
                idempotency_key,
                order.record,
                encode_message(order.message),
                FIELD,
            ],
        )
        if outcome == "admitted":
            return Admission(outcome=outcome, record=prior, enqueued=True)
        return Admission(outcome=outcome, record=prior or None)

    async def take(self, *, sale_id: int, user_id: str, quantity: int, per_user_limit: int) -> str:
        stock, buyers, _ = _keys(sale_id)
        outcome = await self._take(keys=[stock, buyers], args=[user_id, quantity, per_user_limit])
        return str(outcome)

    async def release(self, *, sale_id: int, user_id: str, quantity: int) -> None:
        stock, buyers, _ = _keys(sale_id)
        await self._release(keys=[stock, buyers], args=[user_id, quantity])

    async def load(self, snapshot: SaleSnapshot, *, replace: bool) -> bool:
        args: list[str | int] = ["1" if replace else "0", snapshot.remaining]
        args.append(int(snapshot.expires_at))
        for user, units in snapshot.buyers:
            args += [user, units]
        args.append("--")
        for key, record in snapshot.idempotency.items():
            args += [key, record]
        return bool(await self._load(keys=_keys(snapshot.sale_id), args=args))

    async def remaining(self, sale_id: int) -> int | None:
        value = await self._client.get(_keys(sale_id)[0])
        return None if value is None else int(value)
