"""Coordination between nodes: leases, shared rate limits and agents' presence.

A *lease* names something one node at a time may do (run a conversation's turns). Its holder
renews it while it works; a holder that dies stops renewing, the lease expires, and another
node may take it. :class:`MemoryCoordination` serves one process (the embedded default:
without Redis there is no other node); :class:`realtime.broker.redis_coordination.
RedisCoordination` serves a cluster.

*Connections* (WebSockets per client address) are counted per node too: each node adds and
removes its own and keeps its count alive with a heartbeat; an address's count is the sum
over the live nodes, checked and taken in one step so racing connections cannot slip past
the limit; a dead node's count expires with it.

*Presence* is kept per node: each node puts what it knows of an agent (``online`` or
``away`` while the agent has a console connection there, for a TTL the node keeps renewing)
and everyone reads the merge: an agent is ``online`` if any node says so, else ``away`` if
any node says so, else ``offline``. A node that dies stops renewing, and its word expires.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from realtime.limits import RateLimiter, Rule


class Coordination(Protocol):
    #: True when this process is the only node (nothing outside it can hold a lease).
    exclusive: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds unless another owner holds it."""
        ...

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease (taking it again if it vanished); False when another
        owner holds it."""
        ...

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up, if ``owner`` still holds it."""
        ...

    async def holder(self, name: str) -> str | None: ...

    async def hit(self, key: str, rate: int, per: float) -> float:
        """Count one event against ``rate`` per ``per`` seconds for ``key``: 0.0 when allowed,
        else the seconds to wait."""
        ...

    async def hit_all(self, rules: Sequence[Rule]) -> float:
        """Count one event against every rule, or against none: 0.0 when all allow it, else
        the longest wait (a refused event uses up nothing)."""
        ...

    async def admit_connection(self, address: str, node: str, limit: int, ttl: float) -> bool:
        """Count one more connection of ``address`` on ``node`` unless the live nodes
        together already hold ``limit``; ``ttl``: how long the node's count lives unless
        refreshed."""
        ...

    async def release_connection(self, address: str, node: str) -> None: ...

    async def refresh_connections(self, node: str, counts: Mapping[str, int], ttl: float) -> None:
        """Keep ``node``'s counts alive; ``counts`` (the node's own truth) is written back
        if they were lost (a Redis that restarted empty)."""
        ...

    async def forget_connections(self, node: str) -> None: ...

    async def put_presence(
        self, tenant_id: str, agent_id: str, node: str, status: str, ttl: float
    ) -> None:
        """What ``node`` knows of the agent, for ``ttl`` seconds (``offline``: nothing)."""
        ...

    async def presence(self, tenant_id: str) -> dict[str, str]:
        """The tenant's agents that some node sees, with their merged status."""
        ...

    def healthy(self) -> bool: ...


def merge_presence(seen: list[tuple[str, str]]) -> dict[str, str]:
    """(agent, status) as nodes see them → each agent's status: online beats away."""
    merged: dict[str, str] = {}
    for agent_id, status in seen:
        if status == "online" or agent_id not in merged:
            merged[agent_id] = status
    return merged


class MemoryCoordination:
    exclusive = True

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expires)
        self._limiters: dict[tuple[int, float], RateLimiter] = {}
        self._presence: dict[str, dict[tuple[str, str], tuple[str, float]]] = {}
        self._connections: dict[str, int] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def healthy(self) -> bool:
        return True

    def _current(self, name: str) -> str | None:
        held = self._leases.get(name)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self._leases[name]
            return None
        return held[0]

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        current = self._current(name)
        if current is not None and current != owner:
            return False
        self._leases[name] = (owner, time.monotonic() + ttl)
        return True

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        return await self.acquire(name, owner, ttl)

    async def release(self, name: str, owner: str) -> None:
        if self._current(name) == owner:
            del self._leases[name]

    async def holder(self, name: str) -> str | None:
        return self._current(name)

    def _limiter(self, rate: int, per: float) -> RateLimiter:
        limiter = self._limiters.get((rate, per))
        if limiter is None:
            limiter = self._limiters[(rate, per)] = RateLimiter(rate, per)
        return limiter

    async def hit(self, key: str, rate: int, per: float) -> float:
        return await self.hit_all([Rule(key, rate, per)])

    async def hit_all(self, rules: Sequence[Rule]) -> float:
        now = time.monotonic()
        wait = max((self._limiter(r.rate, r.per).peek(r.key, now) for r in rules), default=0.0)
        if wait:
            return wait
        for rule in rules:
            self._limiter(rule.rate, rule.per).hit(rule.key, now)
        return 0.0

    async def admit_connection(self, address: str, node: str, limit: int, ttl: float) -> bool:
        count = self._connections.get(address, 0)
        if limit and count >= limit:
            return False
        self._connections[address] = count + 1
        return True

    async def release_connection(self, address: str, node: str) -> None:
        count = self._connections.get(address, 0) - 1
        if count > 0:
            self._connections[address] = count
        else:
            self._connections.pop(address, None)

    async def refresh_connections(self, node: str, counts: Mapping[str, int], ttl: float) -> None:
        pass

    async def forget_connections(self, node: str) -> None:
        self._connections.clear()

    async def put_presence(
        self, tenant_id: str, agent_id: str, node: str, status: str, ttl: float
    ) -> None:
        entries = self._presence.setdefault(tenant_id, {})
        if status == "offline":
            entries.pop((agent_id, node), None)
        else:
            entries[(agent_id, node)] = (status, time.monotonic() + ttl)

    async def presence(self, tenant_id: str) -> dict[str, str]:
        entries = self._presence.get(tenant_id, {})
        now = time.monotonic()
        for key in [k for k, (_, expires) in entries.items() if expires <= now]:
            del entries[key]
        return merge_presence([(agent, status) for (agent, _), (status, _) in entries.items()])
