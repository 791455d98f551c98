"""Coordination through Redis: leases and rate limits shared by every node.

- A lease is a key ``<prefix>lease:<name>`` holding its owner, with a TTL. Taking and renewing
  are one script: set it when it is free (or already ours), refuse when another owner holds
  it. A Redis that restarted empty has forgotten every lease; holders take theirs back on
  their next renewal, and nodes wait a whole TTL before they believe a holder is gone (see
  :mod:`realtime.runs`).
- A rate limit is GCRA over one key ``<prefix>rate:<key>`` holding the theoretical arrival
  time, computed from Redis's own clock, so nodes whose clocks differ agree.
- Connections: a hash per node ``<prefix>conns:<node>`` (address → open count, with a TTL
  the node's heartbeat renews) and a sorted set ``<prefix>nodes`` (node → expiry, Redis's
  clock). Admitting sums the address over the live nodes and adds one, in one script.
- Presence is a hash per tenant ``<prefix>presence:<tenant>``: field ``<agent> <node>``,
  value ``<status> <expiry ms>`` (Redis's clock); reading drops the expired fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from realtime.broker.coordination import merge_presence
from realtime.limits import Rule

_TAKE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# GCRA: ARGV[1] = ms between events at the steady rate, ARGV[2] = burst (events at once).
# Returns 0 when the event is allowed, else the ms until it would be.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - interval * burst
if now < allowed_at then return math.ceil(allowed_at - now) end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now))
return 0
"""

# Every rule or none: KEYS = the rules' keys, ARGV = interval, burst per key (as _HIT).
_HIT_ALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, nexts = 0, {}
for i = 1, #KEYS do
  local interval, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  nexts[i] = tat + interval
  local allowed_at = nexts[i] - interval * burst
  if now < allowed_at and allowed_at - now > wait then wait = math.ceil(allowed_at - now) end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], nexts[i], 'PX', math.ceil(nexts[i] - now))
end
return 0
"""

# KEYS[1] = the nodes' sorted set; ARGV = address, node, limit, ttl ms, key prefix.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local address, node, limit, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, other in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if other ~= node then
    total = total + tonumber(redis.call('HGET', ARGV[5] .. other, address) or 0)
  end
end
local own = ARGV[5] .. node
total = total + tonumber(redis.call('HGET', own, address) or 0)
if limit > 0 and total >= limit then return 0 end
redis.call('HINCRBY', own, address, 1)
redis.call('PEXPIRE', own, ttl)
redis.call('ZADD', KEYS[1], now + ttl, node)
return 1
"""

_RELEASE_CONNECTION = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS = nodes set, the node's hash; ARGV = node, ttl ms. 1 when the hash must be rewritten.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2])) == 1 then return 0 end
if known then return 0 end
return 1
"""


_PUT_PRESENCE = """
if ARGV[2] == 'offline' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 4)
return 0
"""

_PRESENCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #flat, 2 do
  local status, expires = string.match(flat[i + 1], '(%S+) (%d+)')
  if tonumber(expires) <= now then
    redis.call('HDEL', KEYS[1], flat[i])
  else
    table.insert(live, flat[i])
    table.insert(live, status)
  end
end
return live
"""


class RedisCoordination:
    exclusive = False

    def __init__(self, url: str, *, prefix: str = "rt:") -> None:
        self._url = url
        self._prefix = prefix
        self._redis: Any = None  # redis.asyncio.Redis (its stubs are loose)
        self._take: Any = None
        self._release: Any = None
        self._hit: Any = None
        self._hit_all: Any = None
        self._admit: Any = None
        self._release_connection: Any = None
        self._refresh: Any = None
        self._put_presence: Any = None
        self._presence: Any = None
        self._ok = True

    async def start(self) -> None:
        # A Redis that restarted leaves the pool's connections stale: the first command on
        # one fails, and is tried again on a new connection at once.
        self._redis = redis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[ConnectionError, TimeoutError],
        )
        self._take = self._redis.register_script(_TAKE)
        self._release = self._redis.register_script(_RELEASE)
        self._hit = self._redis.register_script(_HIT)
        self._hit_all = self._redis.register_script(_HIT_ALL)
        self._admit = self._redis.register_script(_ADMIT)
        self._release_connection = self._redis.register_script(_RELEASE_CONNECTION)
        self._refresh = self._redis.register_script(_REFRESH)
        self._put_presence = self._redis.register_script(_PUT_PRESENCE)
        self._presence = self._redis.register_script(_PRESENCE)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def healthy(self) -> bool:
        return self._ok

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            result = await script(keys=keys, args=args)
        except (RedisError, OSError):
            self._ok = False
            raise
        self._ok = True
        return result

    def _lease(self, name: str) -> str:
        return f"{self._prefix}lease:{name}"

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        taken = await self._call(self._take, [self._lease(name)], [owner, max(1, int(ttl * 1000))])
        return bool(taken)

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        return await self.acquire(name, owner, ttl)

    async def release(self, name: str, owner: str) -> None:
        await self._call(self._release, [self._lease(name)], [owner])

    async def holder(self, name: str) -> str | None:
        try:
            value = await self._redis.get(self._lease(name))
        except (RedisError, OSError):
            self._ok = False
            raise
        self._ok = True
        return value if isinstance(value, str) else None

    async def hit(self, key: str, rate: int, per: float) -> float:
        if rate <= 0:
            return 0.0
        interval = per * 1000.0 / rate
        wait_ms = await self._call(self._hit, [f"{self._prefix}rate:{key}"], [interval, rate])
        return int(wait_ms) / 1000.0

    async def hit_all(self, rules: Sequence[Rule]) -> float:
        rules = [r for r in rules if r.rate > 0]
        if not rules:
            return 0.0
        args: list[Any] = []
        for rule in rules:
            args += [rule.per * 1000.0 / rule.rate, rule.rate]
        keys = [f"{self._prefix}rate:{r.key}" for r in rules]
        wait_ms = await self._call(self._hit_all, keys, args)
        return int(wait_ms) / 1000.0

    def _conns(self, node: str) -> str:
        return f"{self._prefix}conns:{node}"

    async def admit_connection(self, address: str, node: str, limit: int, ttl: float) -> bool:
        admitted = await self._call(
            self._admit,
            [f"{self._prefix}nodes"],
            [address, node, limit, max(1, int(ttl * 1000)), f"{self._prefix}conns:"],
        )
        return bool(admitted)

    async def release_connection(self, address: str, node: str) -> None:
        await self._call(self._release_connection, [self._conns(node)], [address])

    async def refresh_connections(self, node: str, counts: Mapping[str, int], ttl: float) -> None:
        ttl_ms = max(1, int(ttl * 1000))
        lost = await self._call(
            self._refresh, [f"{self._prefix}nodes", self._conns(node)], [node, ttl_ms]
        )
        live = {address: n for address, n in counts.items() if n > 0}
        if lost and live:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._conns(node))
                pipe.hset(self._conns(node), mapping=live)
                pipe.pexpire(self._conns(node), ttl_ms)
                await pipe.execute()

    async def forget_connections(self, node: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._conns(node))
            pipe.zrem(f"{self._prefix}nodes", node)
            await pipe.execute()

    async def put_presence(
        self, tenant_id: str, agent_id: str, node: str, status: str, ttl: float
    ) -> None:
        await self._call(
            self._put_presence,
            [f"{self._prefix}presence:{tenant_id}"],
            [f"{agent_id} {node}", status, max(1, int(ttl * 1000))],
        )

    async def presence(self, tenant_id: str) -> dict[str, str]:
        flat = await self._call(self._presence, [f"{self._prefix}presence:{tenant_id}"], [])
        return merge_presence(
            [(flat[i].split(" ", 1)[0], flat[i + 1]) for i in range(0, len(flat), 2)]
        )
