"""Coordination through Redis: leases and rate limits shared by every node.

- A lease is a key ``<prefix>lease:<name>`` holding its owner, with a TTL. Taking and renewing
  are one script: set it when it is free (or already ours), refuse when another owner holds
  it. A Redis that restarted empty has forgotten every lease; holders take theirs back on
  their next renewal, and nodes wait a whole TTL before they believe a holder is gone (see
  :mod:`realtime.runs`).
- A rate limit is GCRA over one key ``<prefix>rate:<key>`` holding the theoretical arrival
  time, computed from Redis's own clock, so nodes whose clocks differ agree.
- Presence is a hash per tenant ``<prefix>presence:<tenant>``: field ``<agent> <node>``,
  value ``<status> <expiry ms>`` (Redis's clock); reading drops the expired fields.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from realtime.broker.coordination import merge_presence

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
