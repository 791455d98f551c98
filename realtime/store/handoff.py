"""Human agents and the handoff state of conversations (part of :class:`Store`).

Every change of who owns a conversation is one conditional UPDATE: it succeeds only from the
state it expects (and, for a claim, only while the agent has room), so of two concurrent
claims exactly one wins, on one node or many. The caller learns whether it won from the row
count and publishes the events.

On PostgreSQL (READ COMMITTED) the state check alone is race-free: a second UPDATE of the
same row waits for the first and re-checks the row as committed. The capacity check is not:
it counts *other* rows, and two claims of one agent on two conversations would each count
from before the other. So a change that gives a conversation to an agent first locks that
agent's row (``SELECT ... FOR UPDATE``): its claims run one after the other, and each counts
the ones committed before it. (On SQLite the store's write lock serialises every write.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from realtime.store.conflicts import duplicate_is
from realtime.store.records import Conversation, HumanAgent, utcnow
from realtime.store.schema import (
    CONVERSATION_COLUMNS,
    agent_tokens,
    agents,
    conversations,
    messages,
    runs,
)
from realtime.types import new_id

if TYPE_CHECKING:
    from realtime.store.store import Store

OPEN_STATES = ("pending_human", "with_human")


def hash_password(password: str) -> str:
    """scrypt with a random salt, as ``scrypt$n$r$p$salt$hash`` (hex)."""
    salt = secrets.token_bytes(16)
    n, r, p = 2**14, 8, 1
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password`'s output."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


class HandoffStore:
    """``Store.handoff``: agents, tokens and ownership changes, in the store's transactions."""

    def __init__(self, store: Store) -> None:
        self.read = store.read
        self.write = store.write
        self.dialect = store.dialect

    # -- agents ------------------------------------------------------------------------------

    async def create_agent(
        self,
        tenant_id: str,
        *,
        name: str,
        email: str,
        label: str,
        password_hash: str | None,
        capacity: int,
    ) -> HumanAgent:
        agent = HumanAgent(new_id(), tenant_id, name, email.lower(), label, capacity, utcnow())
        with duplicate_is("agent_exists", f"an agent with email {email!r} exists"):
            async with self.write() as conn:
                await conn.execute(
                    insert(agents).values(
                        id=agent.id,
                        tenant_id=tenant_id,
                        name=name,
                        email=agent.email,
                        label=label,
                        password_hash=password_hash,
                        capacity=capacity,
                        created_at=agent.created_at,
                    )
                )
        return agent

    async def get_agent(self, agent_id: str) -> HumanAgent | None:
        async with self.read() as conn:
            row = (
                await conn.execute(select(*_AGENT_COLUMNS).where(agents.c.id == agent_id))
            ).first()
        return HumanAgent(**row._mapping) if row else None

    async def find_agent(self, tenant_id: str, email: str) -> tuple[HumanAgent, str | None] | None:
        """The agent with this email in the tenant, and its password hash."""
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(*_AGENT_COLUMNS, agents.c.password_hash).where(
                        agents.c.tenant_id == tenant_id, agents.c.email == email.lower()
                    )
                )
            ).first()
        if row is None:
            return None
        data = dict(row._mapping)
        password_hash = data.pop("password_hash")
        return HumanAgent(**data), password_hash

    async def list_agents(self, tenant_id: str) -> list[HumanAgent]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(*_AGENT_COLUMNS)
                .where(agents.c.tenant_id == tenant_id)
                .order_by(agents.c.created_at)
            )
            return [HumanAgent(**row._mapping) for row in rows]

    async def issue_agent_token(self, agent_id: str, ttl: timedelta) -> tuple[str, datetime]:
        raw = "rtg_" + secrets.token_urlsafe(30)
        now = utcnow()
        async with self.write() as conn:
            await conn.execute(
                insert(agent_tokens).values(
                    token_hash=_sha256(raw), agent_id=agent_id, created_at=now, expires_at=now + ttl
                )
            )
        return raw, now + ttl

    async def agent_for_token(self, raw: str) -> HumanAgent | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(*_AGENT_COLUMNS)
                    .join(agent_tokens, agent_tokens.c.agent_id == agents.c.id)
                    .where(
                        agent_tokens.c.token_hash == _sha256(raw),
                        agent_tokens.c.expires_at > utcnow(),
                    )
                )
            ).first()
        return HumanAgent(**row._mapping) if row else None

    # -- ownership changes (each one conditional UPDATE) --------------------------------------

    async def queue_conversation(self, conversation_id: str, reason: str) -> bool:
        """bot (or closed) → pending_human."""
        return await self._change(
            conversation_id,
            conversations.c.status.in_(("bot", "closed")),
            status="pending_human",
            agent_id=None,
            queued_at=utcnow(),
            handoff_reason=reason,
        )

    async def claim_conversation(
        self, conversation_id: str, agent_id: str, capacity: int, *, from_bot: bool = False
    ) -> bool:
        """pending_human (or, for a take-over, bot) → with_human, while the agent has room."""
        states = ("pending_human", "bot") if from_bot else ("pending_human",)
        owned = (
            select(func.count())
            .select_from(conversations)
            .where(conversations.c.agent_id == agent_id, conversations.c.status == "with_human")
            .scalar_subquery()
        )
        return await self._change(
            conversation_id,
            and_(conversations.c.status.in_(states), owned < capacity),
            lock_agent=agent_id,
            status="with_human",
            agent_id=agent_id,
            agent_read_at=utcnow(),
        )

    async def transfer_conversation(
        self, conversation_id: str, from_agent: str, to_agent: str | None, capacity: int = 0
    ) -> bool:
        """with_human (from_agent) → with_human (to_agent, with room), or → pending_human."""
        mine = and_(conversations.c.status == "with_human", conversations.c.agent_id == from_agent)
        if to_agent is None:
            return await self._change(
                conversation_id, mine, status="pending_human", agent_id=None, queued_at=utcnow()
            )
        owned = (
            select(func.count())
            .select_from(conversations)
            .where(conversations.c.agent_id == to_agent, conversations.c.status == "with_human")
            .scalar_subquery()
        )
        return await self._change(
            conversation_id,
            and_(mine, owned < capacity),
            lock_agent=to_agent,
            agent_id=to_agent,
            agent_read_at=None,
        )

    async def end_handoff(
        self, conversation_id: str, status: str, *, agent_id: str | None = None
    ) -> bool:
        """Back to ``bot`` or ``closed``: from with_human (when ``agent_id`` owns it) or, with
        no agent, from pending_human (a withdrawn or expired request)."""
        if agent_id is None:
            where = conversations.c.status == "pending_human"
        else:
            where = and_(
                conversations.c.status == "with_human", conversations.c.agent_id == agent_id
            )
        return await self._change(
            conversation_id, where, status=status, agent_id=None, queued_at=None
        )

    async def _change(
        self, conversation_id: str, where: Any, *, lock_agent: str | None = None, **values: Any
    ) -> bool:
        async with self.write() as conn:
            if lock_agent is not None and self.dialect != "sqlite":
                await conn.execute(
                    select(agents.c.id).where(agents.c.id == lock_agent).with_for_update()
                )
            result = await conn.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id, where)
                .values(updated_at=utcnow(), **values)
            )
            return result.rowcount == 1

    async def mark_read(self, conversation_id: str, agent_id: str) -> None:
        async with self.write() as conn:
            await conn.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id, conversations.c.agent_id == agent_id)
                .values(agent_read_at=utcnow())
            )

    # -- reading -----------------------------------------------------------------------------

    async def revoke_agent_token(self, raw: str) -> bool:
        """Sign-out: the token no longer opens a console (False when it was not live)."""
        async with self.write() as conn:
            done = await conn.execute(
                delete(agent_tokens).where(agent_tokens.c.token_hash == _sha256(raw))
            )
            return bool(done.rowcount)

    async def live_conversations(
        self, tenant_id: str, since: datetime, limit: int = 50
    ) -> list[tuple[Conversation, bool]]:
        """The tenant's conversations with the bot that moved since ``since``, newest first,
        each with whether a run is going on or waiting in it."""
        active = (
            select(runs.c.id)
            .where(
                runs.c.conversation_id == conversations.c.id,
                runs.c.status.in_(("queued", "running", "awaiting_confirmation")),
            )
            .exists()
        )
        async with self.read() as conn:
            rows = await conn.execute(
                select(*CONVERSATION_COLUMNS, active.label("active_run"))
                .where(
                    conversations.c.tenant_id == tenant_id,
                    conversations.c.status == "bot",
                    conversations.c.updated_at >= since,
                )
                .order_by(conversations.c.updated_at.desc(), conversations.c.id)
                .limit(limit)
            )
            found = []
            for row in rows:
                data = dict(row._mapping)
                running = bool(data.pop("active_run"))
                found.append((Conversation(**data), running))
            return found

    async def queue(self, tenant_id: str) -> list[Conversation]:
        """The tenant's conversations waiting for a human, longest waiting first."""
        async with self.read() as conn:
            rows = await conn.execute(
                select(*CONVERSATION_COLUMNS)
                .where(
                    conversations.c.tenant_id == tenant_id,
                    conversations.c.status == "pending_human",
                )
                .order_by(conversations.c.queued_at, conversations.c.id)
            )
            return [Conversation(**row._mapping) for row in rows]

    async def queue_position(self, conversation: Conversation) -> int:
        """1 for the longest waiting conversation of the tenant."""
        if conversation.queued_at is None:
            return 0
        async with self.read() as conn:
            ahead = await conn.execute(
                select(func.count())
                .select_from(conversations)
                .where(
                    conversations.c.tenant_id == conversation.tenant_id,
                    conversations.c.status == "pending_human",
                    or_(
                        conversations.c.queued_at < conversation.queued_at,
                        and_(
                            conversations.c.queued_at == conversation.queued_at,
                            conversations.c.id < conversation.id,
                        ),
                    ),
                )
            )
            return int(ahead.scalar_one()) + 1

    async def agent_conversations(self, agent_id: str) -> list[tuple[Conversation, int]]:
        """The agent's open conversations with the visitor's unread messages, newest first."""
        unread = (
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.conversation_id == conversations.c.id,
                messages.c.role == "user",
                messages.c.created_at
                > func.coalesce(conversations.c.agent_read_at, conversations.c.created_at),
            )
            .scalar_subquery()
        )
        async with self.read() as conn:
            rows = await conn.execute(
                select(*CONVERSATION_COLUMNS, unread.label("unread"))
                .where(
                    conversations.c.agent_id == agent_id,
                    conversations.c.status == "with_human",
                )
                .order_by(conversations.c.updated_at.desc())
            )
            out = []
            for row in rows:
                data = dict(row._mapping)
                count = data.pop("unread")
                out.append((Conversation(**data), int(count)))
            return out

    async def expired_handoffs(self, before: datetime) -> list[Conversation]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(*CONVERSATION_COLUMNS).where(
                    conversations.c.status == "pending_human",
                    conversations.c.queued_at <= before,
                )
            )
            return [Conversation(**row._mapping) for row in rows]

    async def owned_by(self, agent_id: str) -> list[Conversation]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(*CONVERSATION_COLUMNS).where(
                    conversations.c.agent_id == agent_id,
                    conversations.c.status == "with_human",
                )
            )
            return [Conversation(**row._mapping) for row in rows]


_AGENT_COLUMNS = [
    agents.c[name]
    for name in ("id", "tenant_id", "name", "email", "label", "capacity", "created_at")
]


def _sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()
