"""Presence of human agents: derived from their live console connections.

An agent is ``online`` (or ``away``, when it says so) while it has a console connection,
and stays so for a grace period after its last one closes, so a reconnect (a reload, a
network blip) changes nothing. When the grace period ends the agent is ``offline`` and
:attr:`on_offline` is called (the conversations it owned go back to the queue).

This registry is per process; the cluster-wide one comes with scale-out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

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
    def __init__(self, grace: float, on_change: Changed, on_offline: Changed) -> None:
        self._grace = grace
        self._agents: dict[str, _Agent] = {}
        self._on_change = on_change
        self._on_offline = on_offline
        self._tasks: set[asyncio.Task[None]] = set()

    def status(self, agent_id: str) -> str:
        agent = self._agents.get(agent_id)
        return agent.status if agent is not None else "offline"

    def online(self, tenant_id: str) -> list[str]:
        """Agents of the tenant who take conversations now (``online``, not ``away``)."""
        return [
            a for a, p in self._agents.items() if p.tenant_id == tenant_id and p.status == "online"
        ]

    def snapshot(self, tenant_id: str) -> dict[str, str]:
        return {a: p.status for a, p in self._agents.items() if p.tenant_id == tenant_id}

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
            self._notify(self._on_change, tenant_id, agent_id, agent.status)

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
        self._notify(self._on_change, agent.tenant_id, agent_id, agent.status)

    def _gone(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.connections:
            return
        agent.going = None
        del self._agents[agent_id]
        self._notify(self._on_change, agent.tenant_id, agent_id, "offline")
        self._notify(self._on_offline, agent.tenant_id, agent_id, "offline")

    def _notify(self, callback: Changed, tenant_id: str, agent_id: str, status: str) -> None:
        task = asyncio.get_running_loop().create_task(callback(tenant_id, agent_id, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Until every change notification started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for agent in self._agents.values():
            if agent.going is not None:
                agent.going.cancel()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
