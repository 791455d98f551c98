"""Presence of human agents: derived from their live console connections, on every node.

On one node, an agent is ``online`` (or ``away``, when it says so) while it has a console
connection there, and stays so for a grace period after its last one closes, so a reconnect
(a reload, a network blip) changes nothing. Each node puts what it sees into the shared
registry (:mod:`realtime.broker.coordination`), renewing it while it lasts, and every
question (who is online? what is the snapshot?) reads the merge over all nodes: an agent
with a console on node A and one on node B is online until both are gone.

A change is announced with the merged status (so an agent who leaves node A but is still on
node B stays ``online``); when the merge says ``offline``, :attr:`on_offline` is called (the
conversations the agent owned go back to the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from realtime.broker.coordination import Coordination, merge_presence
from realtime.periodic import Periodic

STATUSES = ("online", "away", "offline")

Changed = Callable[[str, str, str], Coroutine[Any, Any, None]]  # tenant, agent id, status


@dataclass(slots=True)
class _Agent:
    tenant_id: str
    connections: int = 0
    chosen: str = "online"  # what the agent set: online | away
    going: asyncio.TimerHandle | None = None  # the end of the grace period

    @property
    def status(self) -> str:
        if self.connections == 0 and self.going is None:
            return "offline"
        return self.chosen


class Presence:
    def __init__(
        self,
        grace: float,
        on_change: Changed,
        on_offline: Changed,
        *,
        shared: Coordination,
        node_id: str,
    ) -> None:
        self._grace = grace
        self._agents: dict[str, _Agent] = {}
        self._on_change = on_change
        self._on_offline = on_offline
        self._tasks: set[asyncio.Task[None]] = set()
        self._shared = shared
        self._node = node_id
        # What this node puts in the registry lives this long unless renewed.
        self._ttl = max(3.0, grace)
        self._heartbeat = Periodic("presence-heartbeat", self._ttl / 3, self._renew)

    def status(self, agent_id: str) -> str:
        """The agent's status as this node sees it."""
        agent = self._agents.get(agent_id)
        return agent.status if agent is not None else "offline"

    async def online(self, tenant_id: str) -> list[str]:
        """Agents of the tenant who take conversations now (``online``, not ``away``), on
        any node."""
        return [a for a, status in (await self.snapshot(tenant_id)).items() if status == "online"]

    async def snapshot(self, tenant_id: str) -> dict[str, str]:
        """The tenant's agents that are online or away on some node, this node's own view
        included (the registry hears of a new connection a moment after it opened)."""
        shared = await self._shared.presence(tenant_id)
        mine = [
            (agent_id, agent.status)
            for agent_id, agent in self._agents.items()
            if agent.tenant_id == tenant_id and agent.status != "offline"
        ]
        return merge_presence([*shared.items(), *mine])

    def connect(self, tenant_id: str, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent(tenant_id)
        before = agent.status
        agent.connections += 1
        if agent.going is not None:
            agent.going.cancel()
            agent.going = None
        if before != agent.status:
            self._changed(tenant_id, agent_id, agent.status)

    def disconnect(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.connections == 0:
            return
        agent.connections -= 1
        if agent.connections == 0:
            loop = asyncio.get_running_loop()
            agent.going = loop.call_later(self._grace, self._gone, agent_id)

    def set(self, agent_id: str, status: str) -> None:
        """The agent chose ``online`` or ``away``."""
        agent = self._agents.get(agent_id)
        if agent is None or status not in ("online", "away") or agent.chosen == status:
            return
        agent.chosen = status
        self._changed(agent.tenant_id, agent_id, agent.status)

    def _gone(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.connections:
            return
        agent.going = None
        del self._agents[agent_id]
        self._changed(agent.tenant_id, agent_id, "offline")

    def _notify(self, callback: Changed, tenant_id: str, agent_id: str, status: str) -> None:
        task = asyncio.get_running_loop().create_task(callback(tenant_id, agent_id, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self, tenant_id: str, agent_id: str, status: str) -> None:
        self._notify(self._announce, tenant_id, agent_id, status)

    async def _announce(self, tenant_id: str, agent_id: str, status: str) -> None:
        """Put this node's word in the registry, then announce the merged status."""
        await self._shared.put_presence(tenant_id, agent_id, self._node, status, self._ttl)
        merged = (await self._shared.presence(tenant_id)).get(agent_id, "offline")
        await self._on_change(tenant_id, agent_id, merged)
        if merged == "offline":
            await self._on_offline(tenant_id, agent_id, merged)

    async def _renew(self) -> None:
        for agent_id, agent in list(self._agents.items()):
            status = agent.status
            if status != "offline":
                await self._shared.put_presence(
                    agent.tenant_id, agent_id, self._node, status, self._ttl
                )

    def start(self) -> None:
        self._heartbeat.start()

    async def idle(self) -> None:
        """Until every change notification started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self._heartbeat.stop()
        for agent in self._agents.values():
            if agent.going is not None:
                agent.going.cancel()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
