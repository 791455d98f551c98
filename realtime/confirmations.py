"""Pending writes: resolving them exactly once, and expiring them.

A run that calls a write tool pauses (:mod:`realtime.runs`): the pending confirmation, with
the run's continuation, is stored, and no task waits for it. A decision (approve, reject,
or an edit of the params) may come from any transport, on any process, after any
reconnect: :meth:`Confirmations.resolve` checks it, *claims* the confirmation in the store
(one conditional update, so of two concurrent decisions exactly one wins), and kicks the
conversation: whichever node works on it resumes the run from the store. A new message
rejects the pending write (DECISIONS 11); a sweeper expires the ones nobody answered in time.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime.agent.tools import ToolContext, ToolRegistry
from realtime.bots import with_defaults
from realtime.errors import Conflict, NotFound, ProtocolError
from realtime.knowledge.retrieval import Retriever
from realtime.periodic import Periodic
from realtime.runs import NEW_MESSAGE, RunManager
from realtime.store import Confirmation, Store, utcnow

log = logging.getLogger("realtime.confirmations")

DECISIONS = ("approve", "reject")


class Confirmations:
    def __init__(
        self,
        store: Store,
        runs: RunManager,
        tools: ToolRegistry,
        retriever: Retriever,
        *,
        sweep_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._runs = runs
        self._tools = tools
        self._retriever = retriever
        self._sweeper = Periodic("confirmation-sweeper", sweep_interval, self.expire_due)

    async def resolve(
        self,
        conversation_id: str,
        bot_uuid: str,
        tool_call_id: str,
        decision: str,
        *,
        params: dict[str, Any] | None = None,
        by: str = "visitor",
    ) -> Confirmation:
        """Approve or reject the conversation's pending write ``tool_call_id``.

        Raises ``confirmation_not_found``, ``confirmation_not_pending`` (already decided),
        ``confirmation_expired`` or ``invalid_params`` (edited params that do not fit); in
        each case nothing changes.
        """
        if decision not in DECISIONS:
            raise ProtocolError("invalid_field", "'decision' must be 'approve' or 'reject'")
        confirmation = await self._store.confirmations.find(conversation_id, tool_call_id)
        if confirmation is None:
            raise NotFound("confirmation_not_found", "no such pending confirmation")
        if confirmation.status == "expired" or (
            confirmation.status == "pending" and confirmation.expires_at <= utcnow()
        ):
            raise Conflict("confirmation_expired", "this confirmation has expired")
        if confirmation.status != "pending":
            raise Conflict(
                "confirmation_not_pending", f"this confirmation was already {confirmation.status}"
            )
        if decision == "approve" and params is not None:
            await self._check_params(confirmation, bot_uuid, params)
        status = "approved" if decision == "approve" else "rejected"
        edited = params if decision == "approve" else None
        if not await self._store.confirmations.claim(confirmation.id, status, by, edited):
            raise Conflict("confirmation_not_pending", "this confirmation was already decided")
        self._runs.kick(conversation_id)
        return confirmation

    async def reject_pending(self, conversation_id: str, *, by: str = NEW_MESSAGE) -> str | None:
        """Reject the conversation's pending write, if any, ending its run (a new message
        arrived, or the run was cancelled). Returns the ended run's id."""
        confirmation = await self._store.confirmations.find(conversation_id)
        if confirmation is None:
            return None
        if not await self._store.confirmations.claim(confirmation.id, "rejected", by):
            return None
        self._runs.kick(conversation_id)
        return confirmation.run_id

    async def expire_due(self) -> int:
        """Expire every pending write past its deadline; return how many this call expired."""
        expired = 0
        for confirmation in await self._store.confirmations.expired():
            if not await self._store.confirmations.claim(confirmation.id, "expired", "timeout"):
                continue  # decided meanwhile
            self._runs.kick(confirmation.conversation_id)
            expired += 1
        return expired

    async def _check_params(
        self, confirmation: Confirmation, bot_uuid: str, params: dict[str, Any]
    ) -> None:
        tool = self._tools.tools.get(confirmation.tool)
        bot = await self._store.get_bot_by_uuid(bot_uuid)
        if tool is None or bot is None:
            raise Conflict("confirmation_not_pending", "this action can no longer run")
        data = await self._runs.data_source(with_defaults(bot.config))
        problem = self._tools.check(tool, params, ToolContext(bot_uuid, self._retriever, [], data))
        if problem is not None:
            raise ProtocolError("invalid_params", problem.observation.removeprefix("error: "))

    # -- the sweeper -------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
