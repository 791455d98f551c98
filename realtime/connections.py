"""WebSockets open per client address, limited across every node sharing the coordination.

The node's own :class:`~realtime.limits.ConnectionCounter` is its truth; the coordination
holds each node's counts (with a heartbeat, so a dead node's connections stop counting) and
admits a connection only while the live nodes together hold fewer than the limit. When the
coordination does not answer (Redis away), the node falls back to its own count against the
limit: a degraded cluster stays usable, each node still bounded.
"""

from __future__ import annotations

import logging

import anyio

from realtime.broker.coordination import Coordination
from realtime.limits import ConnectionCounter

log = logging.getLogger("realtime.connections")

COORDINATION_TIMEOUT = 1.0  # seconds an admit or release waits for the coordination


class Connections:
    def __init__(
        self, limit: int, coordination: Coordination, node_id: str, *, ttl: float = 30.0
    ) -> None:
        self.limit = limit
        self.ttl = ttl  # a node's counts outlive its last heartbeat by this long
        self._coordination = coordination
        self._node = node_id
        self._local = ConnectionCounter(0)

    async def admit(self, address: str) -> bool:
        if not self.limit:
            self._local.admit(address)
            return True
        try:
            with anyio.fail_after(COORDINATION_TIMEOUT):
                admitted = await self._coordination.admit_connection(
                    address, self._node, self.limit, self.ttl
                )
        except Exception as exc:  # Redis away: this node's own count decides
            log.warning("connection limit checked on this node only: %s", type(exc).__name__)
            admitted = self._local.count(address) < self.limit
        if admitted:
            self._local.admit(address)
        return admitted

    async def release(self, address: str) -> None:
        self._local.release(address)
        if not self.limit:
            return
        try:
            with anyio.fail_after(COORDINATION_TIMEOUT):
                await self._coordination.release_connection(address, self._node)
        except Exception as exc:  # the heartbeat writes the truth back
            log.warning("connection release not recorded: %s", type(exc).__name__)

    async def heartbeat(self) -> None:
        """Keep this node's counts alive (every ``ttl / 3`` seconds)."""
        if self.limit:
            await self._coordination.refresh_connections(
                self._node, self._local.snapshot(), self.ttl
            )

    async def forget(self) -> None:
        """This node stops: its connections no longer count anywhere."""
        if self.limit:
            try:
                with anyio.fail_after(COORDINATION_TIMEOUT):
                    await self._coordination.forget_connections(self._node)
            except Exception as exc:
                log.warning("connection counts left to expire: %s", type(exc).__name__)

    def count(self, address: str) -> int:
        """Connections of ``address`` open on this node."""
        return self._local.count(address)
