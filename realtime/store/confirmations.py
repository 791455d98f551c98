"""Pending confirmations with their runs' continuations (``Store.confirmations``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row

from realtime.store.records import Confirmation, utcnow
from realtime.store.schema import confirmations, runs

if TYPE_CHECKING:
    from realtime.store.store import Store


class ConfirmationStore:
    def __init__(self, store: Store) -> None:
        self.read = store.read
        self.write = store.write

    async def pause(self, confirmation: Confirmation) -> None:
        """Store a pending write with its continuation; the run waits for the visitor."""
        async with self.write() as conn:
            await conn.execute(
                insert(confirmations).values(
                    **{name: getattr(confirmation, name) for name in _CONFIRMATION_FIELDS}
                )
            )
            await conn.execute(
                update(runs)
                .where(runs.c.id == confirmation.run_id)
                .values(status="awaiting_confirmation")
            )

    async def find(
        self, conversation_id: str, tool_call_id: str | None = None
    ) -> Confirmation | None:
        """The conversation's latest confirmation with this tool call id, or (without one)
        its pending confirmation."""
        query = select(confirmations).where(confirmations.c.conversation_id == conversation_id)
        if tool_call_id is None:
            query = query.where(confirmations.c.status == "pending")
        else:
            query = query.where(confirmations.c.tool_call_id == tool_call_id)
        async with self.read() as conn:
            row = (
                await conn.execute(query.order_by(confirmations.c.created_at.desc()).limit(1))
            ).first()
        return _confirmation(row) if row else None

    async def claim(
        self, confirmation_id: str, status: str, by: str, params: dict[str, Any] | None = None
    ) -> bool:
        """Move a pending confirmation to ``status`` (with the params to run, when edited);
        True for the one caller that did it: the decision is taken exactly once."""
        values: dict[str, Any] = {"status": status, "decided_by": by, "resolved_at": utcnow()}
        if params is not None:
            values["params"] = params
        async with self.write() as conn:
            result = await conn.execute(
                update(confirmations)
                .where(confirmations.c.id == confirmation_id, confirmations.c.status == "pending")
                .values(**values)
            )
            return result.rowcount == 1

    async def expired(self, limit: int = 100) -> list[Confirmation]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(confirmations)
                .where(confirmations.c.status == "pending", confirmations.c.expires_at <= utcnow())
                .order_by(confirmations.c.expires_at)
                .limit(limit)
            )
            return [_confirmation(row) for row in rows]

    async def claimed_of_waiting_runs(
        self, conversation_id: str | None = None
    ) -> list[Confirmation]:
        """Resolved confirmations whose run has not gone on yet: the newest confirmation of
        each run still ``awaiting_confirmation`` (of one conversation, or all), when decided.
        (A run that paused twice has an older confirmation, decided and acted on.)"""
        query = (
            select(confirmations)
            .join(runs, runs.c.id == confirmations.c.run_id)
            .where(runs.c.status == "awaiting_confirmation")
            .order_by(confirmations.c.created_at, confirmations.c.id)
        )
        if conversation_id is not None:
            query = query.where(runs.c.conversation_id == conversation_id)
        async with self.read() as conn:
            newest = {row.run_id: _confirmation(row) for row in await conn.execute(query)}
        return [c for c in newest.values() if c.status != "pending"]


_CONFIRMATION_FIELDS = (
    "id",
    "conversation_id",
    "run_id",
    "tool_call_id",
    "tool",
    "params",
    "step",
    "status",
    "continuation",
    "created_at",
    "expires_at",
    "decided_by",
    "resolved_at",
)


def _confirmation(row: Row[Any]) -> Confirmation:
    return Confirmation(**{name: row._mapping[name] for name in _CONFIRMATION_FIELDS})
