"""Durable records over SQLAlchemy Core (async): SQLite by default, or PostgreSQL (asyncpg).

One :class:`Store` per process. Reads go straight to the pool; writes go through
:meth:`Store.write`, which on SQLite also takes a process-wide lock, because SQLite has one
writer and a deferred transaction that upgrades to a write can fail at once rather than
wait. PostgreSQL runs writes concurrently at READ COMMITTED: a write that reads a row to
decide what to write locks it first (``SELECT ... FOR UPDATE``), and several processes may
share the database (:meth:`Store.exclusive` serialises their bootstraps). Dialect-specific
SQL (full-text search) lives in :mod:`realtime.store.fulltext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import orjson
from sqlalchemy import and_, delete, event, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from realtime.errors import Conflict, QuotaExceeded
from realtime.store.confirmations import ConfirmationStore
from realtime.store.conflicts import duplicate_is, insert_ignoring_duplicates
from realtime.store.handoff import HandoffStore
from realtime.store.knowledge import KnowledgeStore
from realtime.store.records import (
    ApiKey,
    Bot,
    Conversation,
    Message,
    Run,
    Tenant,
    next_month,
    utcnow,
)
from realtime.store.schema import (
    CONVERSATION_COLUMNS,
    api_keys,
    bots,
    conversations,
    idempotency_keys,
    knowledge_chunks,
    knowledge_sources,
    messages,
    runs,
    server_settings,
    tenants,
    usage,
)
from realtime.store.tenancy import TenancyStore
from realtime.types import new_id

IDEMPOTENCY_TTL = timedelta(hours=24)
UNFINISHED = ("queued", "running", "awaiting_confirmation")


class Stored(NamedTuple):
    """What :meth:`Store.add_user_message` did."""

    message: Message
    created: bool  # False: a retried client id; ``message`` is the original
    status: str  # the conversation's status: bot (a run was queued) | pending_human | ...
    reopened: bool  # it was closed, and is the bot's again
    waiting: int = -1  # runs queued or running before this message's (-1: not counted)


KEY_PREFIX_LEN = 8


def async_url(url: str) -> str:
    """Map a plain database URL to its async driver: sqlite → aiosqlite, postgresql → asyncpg."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith(("postgresql:", "postgres:")):
        return "postgresql+asyncpg:" + url.split(":", 1)[1]
    return url


def hash_secret(raw: str) -> str:
    """API keys are long random strings, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(raw.encode()).hexdigest()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Store:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url, json_serializer=_json_dumps, json_deserializer=orjson.loads
        )
        self.dialect = self.engine.dialect.name
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.handoff = HandoffStore(self)
        self.confirmations = ConfirmationStore(self)
        self.knowledge = KnowledgeStore(self)
        self.tenancy = TenancyStore(self)

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent).

        On PostgreSQL the migrations run in one transaction under an advisory lock, so
        processes starting together migrate once: the others wait, then find it done.
        """
        async with self.write() as conn:
            if self.dialect == "postgresql":
                await conn.execute(_ADVISORY_XACT_LOCK, {"name": "realtime.migrate"})
            await conn.run_sync(_run_migrations)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Hold the database-wide lock ``name`` for the block (a PostgreSQL advisory lock):
        of the processes sharing the database, one at a time runs it. Elsewhere a no-op
        (a SQLite store belongs to one process)."""
        if self.dialect != "postgresql":
            yield
            return
        with anyio.CancelScope(shield=True):
            conn = await self.engine.connect()
            try:
                await conn.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
                await conn.commit()  # the lock is the session's: no transaction stays open
            except BaseException:
                await conn.close()
                raise
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name}
                    )
                    await conn.commit()
                finally:
                    await conn.close()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (committed on exit, rolled back on error).

        Shielded from cancellation, like :meth:`read`: a run cancelled mid-query finishes
        the query first. (Cancelling the driver mid-query strands its connection.)
        """
        with anyio.CancelScope(shield=True):
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock, self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with anyio.CancelScope(shield=True):
            async with self.engine.connect() as conn:
                yield conn

    # -- server settings -------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None:
        async with self.read() as conn:
            row = await conn.execute(
                select(server_settings.c.value).where(server_settings.c.key == key)
            )
            return row.scalar_one_or_none()

    async def set_setting(self, key: str, value: str) -> None:
        async with self.write() as conn:
            await conn.execute(delete(server_settings).where(server_settings.c.key == key))
            await conn.execute(insert(server_settings).values(key=key, value=value))

    # -- tenants and keys ------------------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name: str) -> Tenant:
        tenant = Tenant(tenant_id, name, secrets.token_urlsafe(32), utcnow())
        with duplicate_is("tenant_exists", f"tenant {tenant_id!r} already exists"):
            async with self.write() as conn:
                await conn.execute(
                    insert(tenants).values(
                        id=tenant.id,
                        name=tenant.name,
                        signing_secret=tenant.signing_secret,
                        created_at=tenant.created_at,
                    )
                )
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self.read() as conn:
            row = (await conn.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
        return Tenant(**row._mapping) if row else None

    async def signing_secret(self, tenant_id: str) -> str | None:
        """The secret that signs the tenant's context envelopes (generated with the tenant;
        no API returns it), or None when there is no such tenant."""
        async with self.read() as conn:
            row = await conn.execute(
                select(tenants.c.signing_secret).where(tenants.c.id == tenant_id)
            )
            secret: str | None = row.scalar_one_or_none()
            return secret

    async def create_api_key(
        self, tenant_id: str, name: str, scope: str, bot_uuid: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; the raw key is returned once and only its hash is stored."""
        raw = "rtk_" + secrets.token_urlsafe(30)
        key = ApiKey(
            new_id(), tenant_id, name, raw[4 : 4 + KEY_PREFIX_LEN], scope, bot_uuid, utcnow()
        )
        async with self.write() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=key.id,
                    tenant_id=tenant_id,
                    name=name,
                    prefix=key.prefix,
                    key_hash=hash_secret(raw),
                    scope=scope,
                    bot_uuid=bot_uuid,
                    created_at=key.created_at,
                )
            )
        return key, raw

    async def find_api_key(self, raw: str) -> ApiKey | None:
        """The live key matching ``raw``, or None. Compared in constant time."""
        if not raw.startswith("rtk_") or len(raw) < 4 + KEY_PREFIX_LEN:
            return None
        digest = hash_secret(raw)
        async with self.read() as conn:
            rows = await conn.execute(
                select(api_keys).where(
                    api_keys.c.prefix == raw[4 : 4 + KEY_PREFIX_LEN],
                    api_keys.c.revoked_at.is_(None),
                )
            )
            for row in rows:
                if hmac.compare_digest(row.key_hash, digest):
                    data = dict(row._mapping)
                    del data["key_hash"]
                    return ApiKey(**data)
        return None

    # -- bots ------------------------------------------------------------------------------

    async def create_bot(self, tenant_id: str, slug: str, config: dict[str, Any]) -> Bot:
        now = utcnow()
        bot = Bot(new_id(), tenant_id, slug, config, now, now)
        with duplicate_is("bot_exists", f"bot {slug!r} already exists"):
            async with self.write() as conn:
                await conn.execute(
                    insert(bots).values(
                        uuid=bot.uuid,
                        tenant_id=tenant_id,
                        slug=slug,
                        config=config,
                        created_at=now,
                        updated_at=now,
                    )
                )
        return bot

    async def get_bot(self, tenant_id: str, slug: str) -> Bot | None:
        return await self._one_bot(and_(bots.c.tenant_id == tenant_id, bots.c.slug == slug))

    async def get_bot_by_uuid(self, bot_uuid: str) -> Bot | None:
        return await self._one_bot(bots.c.uuid == bot_uuid)

    async def _one_bot(self, where: Any) -> Bot | None:
        async with self.read() as conn:
            row = (await conn.execute(select(bots).where(where))).first()
        return Bot(**row._mapping) if row else None

    async def list_bots(self, tenant_id: str) -> list[Bot]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(bots).where(bots.c.tenant_id == tenant_id).order_by(bots.c.created_at)
            )
            return [Bot(**row._mapping) for row in rows]

    async def update_bot(self, bot_uuid: str, config: dict[str, Any]) -> Bot | None:
        async with self.write() as conn:
            await conn.execute(
                update(bots)
                .where(bots.c.uuid == bot_uuid)
                .values(config=config, updated_at=utcnow())
            )
        return await self.get_bot_by_uuid(bot_uuid)

    async def delete_bot(self, bot_uuid: str) -> bool:
        async with self.write() as conn:
            await conn.execute(
                delete(knowledge_chunks).where(knowledge_chunks.c.bot_uuid == bot_uuid)
            )
            await conn.execute(
                delete(knowledge_sources).where(knowledge_sources.c.bot_uuid == bot_uuid)
            )
            result = await conn.execute(delete(bots).where(bots.c.uuid == bot_uuid))
            return result.rowcount > 0

    # -- conversations ---------------------------------------------------------------------

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(*CONVERSATION_COLUMNS).where(conversations.c.id == conversation_id)
                )
            ).first()
        return Conversation(**row._mapping) if row else None

    async def create_conversation(self, tenant_id: str, owner: str, bot_uuid: str) -> str:
        """An empty conversation (a visitor asked for a person, or left their details,
        before writing anything)."""
        async with self.write() as conn:
            return await _insert_conversation(conn, tenant_id, owner, bot_uuid, None, utcnow())

    async def set_feedback(self, conversation_id: str, message_id: str, value: str | None) -> bool:
        """The visitor's feedback on one of the conversation's answers; False when there is
        no such answer."""
        async with self.write() as conn:
            done = await conn.execute(
                update(messages)
                .where(
                    messages.c.id == message_id,
                    messages.c.conversation_id == conversation_id,
                    messages.c.role == "assistant",
                )
                .values(feedback=value)
            )
            return bool(done.rowcount == 1)

    async def set_visitor_info(self, conversation_id: str, info: dict[str, str]) -> None:
        """What the visitor told about themselves (the contact form), kept in the
        conversation's ``meta.visitor_info`` (later answers add to earlier ones)."""
        async with self.write() as conn:
            meta = (
                await conn.execute(
                    select(conversations.c.meta)
                    .where(conversations.c.id == conversation_id)
                    .with_for_update()
                )
            ).scalar_one()
            meta = dict(meta or {})
            meta["visitor_info"] = {**(meta.get("visitor_info") or {}), **info}
            await conn.execute(
                update(conversations).where(conversations.c.id == conversation_id).values(meta=meta)
            )

    async def stream_cursor(self, conversation_id: str) -> tuple[int, int]:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(conversations.c.epoch, conversations.c.seq_hwm).where(
                        conversations.c.id == conversation_id
                    )
                )
            ).first()
        return (row.epoch, row.seq_hwm) if row else (1, 0)

    async def save_stream_cursor(self, conversation_id: str, epoch: int, seq_hwm: int) -> None:
        async with self.write() as conn:
            greatest = func.max if self.dialect == "sqlite" else func.greatest
            await conn.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(epoch=epoch, seq_hwm=greatest(conversations.c.seq_hwm, seq_hwm))
            )

    # -- messages --------------------------------------------------------------------------

    async def find_idempotent(
        self, tenant_id: str, owner: str, client_id: str
    ) -> tuple[str, str] | None:
        """(conversation_id, message_id) of a message already sent with this client id."""
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(idempotency_keys.c.conversation_id, idempotency_keys.c.message_id).where(
                        idempotency_keys.c.tenant_id == tenant_id,
                        idempotency_keys.c.owner == owner,
                        idempotency_keys.c.client_id == client_id,
                        idempotency_keys.c.created_at > utcnow() - IDEMPOTENCY_TTL,
                    )
                )
            ).first()
        return (row.conversation_id, row.message_id) if row else None

    async def add_user_message(
        self,
        *,
        tenant_id: str,
        owner: str,
        bot_uuid: str,
        conversation_id: str | None,
        content: str,
        client_id: str | None,
        run_id: str | None = None,
        node: str | None = None,
        meta: dict[str, Any] | None = None,
        queue_limit: int | None = None,
    ) -> Stored:
        """Store a user message, creating its conversation when ``conversation_id`` is None,
        and (with ``run_id``, while the bot owns the conversation) the ``queued`` run that will
        answer it, in one transaction. A closed conversation is reopened with the bot.
        With ``queue_limit``, raises ``queue_full`` (and writes nothing) when a run is going
        on and that many more already wait behind it.

        With a ``client_id`` seen in the last 24 h for this owner, nothing is written and the
        original message is returned with ``created`` False.
        """
        reopened, waiting = False, -1
        now = utcnow()
        meta = dict(meta or {})
        if client_id is not None:
            meta["client_id"] = client_id
        try:
            async with self.write() as conn:
                if client_id is not None:
                    original = await self._idempotent_message(
                        conn, tenant_id, owner, client_id, now
                    )
                    if original is not None:
                        return Stored(original, False, "", False)
                    # Only an expired key is replaced; a live one that a concurrent
                    # duplicate committed meanwhile stays, and our insert of the key fails.
                    await conn.execute(
                        delete(idempotency_keys).where(
                            idempotency_keys.c.tenant_id == tenant_id,
                            idempotency_keys.c.owner == owner,
                            idempotency_keys.c.client_id == client_id,
                            idempotency_keys.c.created_at <= now - IDEMPOTENCY_TTL,
                        )
                    )
                if conversation_id is None:
                    conversation_id = await _insert_conversation(
                        conn, tenant_id, owner, bot_uuid, _title_from(content), now
                    )
                    status, waiting = "bot", 0
                else:
                    # Locked until commit: a concurrent handoff waits, so the run queued
                    # below is only ever queued while the bot owns the conversation.
                    status = (
                        await conn.execute(
                            select(conversations.c.status)
                            .where(conversations.c.id == conversation_id)
                            .with_for_update()
                        )
                    ).scalar_one()
                    if status == "closed":  # writing again reopens it, with the bot
                        status = "bot"
                        reopened = True
                    await conn.execute(
                        update(conversations)
                        .where(conversations.c.id == conversation_id)
                        .values(updated_at=now, status=status)
                    )
                    if run_id is not None and status == "bot" and queue_limit is not None:
                        waiting = await self.count_waiting_runs(conn, conversation_id)
                        if waiting > queue_limit:
                            raise Conflict(
                                "queue_full",
                                f"{waiting - 1} messages already wait for an answer; "
                                "wait for the current run",
                                retryable=True,
                            )
                message = Message(new_id(), conversation_id, "user", content, now, meta=meta)
                await conn.execute(insert(messages).values(**_message_values(message)))
                if run_id is not None and status == "bot":
                    await conn.execute(
                        insert(runs).values(
                            id=run_id,
                            conversation_id=conversation_id,
                            message_id=message.id,
                            status="queued",
                            node_id=node,
                            created_at=now,
                        )
                    )
                if client_id is not None:
                    await conn.execute(
                        insert(idempotency_keys).values(
                            tenant_id=tenant_id,
                            owner=owner,
                            client_id=client_id,
                            conversation_id=conversation_id,
                            message_id=message.id,
                            created_at=now,
                        )
                    )
                # Last, so the tenant's usage row stays locked for the commit only.
                await self._count_message(conn, tenant_id, now)
                return Stored(message, True, status, reopened, waiting)
        except IntegrityError:
            # A concurrent duplicate won the race (PostgreSQL: the key's insert waited for
            # it, then failed, and the whole transaction was rolled back): answer with the
            # winner's message, read in a new transaction.
            if client_id is None:
                raise
            async with self.read() as conn:
                original = await self._idempotent_message(conn, tenant_id, owner, client_id)
            if original is None:
                raise
            return Stored(original, False, "", False)

    async def _count_message(self, conn: AsyncConnection, tenant_id: str, now: datetime) -> None:
        """Count one visitor message against the tenant's month, or raise ``quota_exceeded``
        (the caller's transaction, and so the message, is then rolled back). The check and
        the count are one conditional update: racing messages cannot both take the last one."""
        month = now.strftime("%Y-%m")
        await conn.execute(
            insert_ignoring_duplicates(conn, usage).values(
                tenant_id=tenant_id, month=month, messages=0
            )
        )
        quota = select(tenants.c.monthly_messages).where(tenants.c.id == tenant_id)
        counted = await conn.execute(
            update(usage)
            .where(
                usage.c.tenant_id == tenant_id,
                usage.c.month == month,
                or_(
                    quota.scalar_subquery().is_(None),
                    usage.c.messages < quota.scalar_subquery(),
                ),
            )
            .values(messages=usage.c.messages + 1)
        )
        if counted.rowcount != 1:
            raise QuotaExceeded(retry_after=(next_month(now) - now).total_seconds())

    async def usage(self, tenant_id: str, month: str) -> int:
        """Visitor messages the tenant sent in ``month`` ("YYYY-MM", UTC)."""
        async with self.read() as conn:
            count = await conn.execute(
                select(usage.c.messages).where(
                    usage.c.tenant_id == tenant_id, usage.c.month == month
                )
            )
            return int(count.scalar_one_or_none() or 0)

    async def set_quota(self, tenant_id: str, monthly_messages: int | None) -> Tenant | None:
        async with self.write() as conn:
            await conn.execute(
                update(tenants)
                .where(tenants.c.id == tenant_id)
                .values(monthly_messages=monthly_messages)
            )
        return await self.get_tenant(tenant_id)

    async def _idempotent_message(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        owner: str,
        client_id: str,
        now: datetime | None = None,
    ) -> Message | None:
        row = (
            await conn.execute(
                select(messages)
                .join(idempotency_keys, idempotency_keys.c.message_id == messages.c.id)
                .where(
                    idempotency_keys.c.tenant_id == tenant_id,
                    idempotency_keys.c.owner == owner,
                    idempotency_keys.c.client_id == client_id,
                    idempotency_keys.c.created_at > (now or utcnow()) - IDEMPOTENCY_TTL,
                )
            )
        ).first()
        return _message(row) if row else None

    async def add_message(self, message: Message) -> None:
        """Store a message that no run produced (a human agent's, or a system notice)."""
        async with self.write() as conn:
            await conn.execute(insert(messages).values(**_message_values(message)))
            await conn.execute(
                update(conversations)
                .where(conversations.c.id == message.conversation_id)
                .values(updated_at=message.created_at)
            )

    async def get_message(self, message_id: str) -> Message | None:
        async with self.read() as conn:
            row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
        return _message(row) if row else None

    async def list_messages(
        self, conversation_id: str, *, limit: int | None = None
    ) -> list[Message]:
        """Messages oldest first; with ``limit``, the latest ``limit`` of them."""
        query = select(messages).where(messages.c.conversation_id == conversation_id)
        async with self.read() as conn:
            if limit is None:
                rows = await conn.execute(query.order_by(messages.c.created_at, messages.c.id))
                return [_message(row) for row in rows]
            rows = await conn.execute(
                query.order_by(messages.c.created_at.desc(), messages.c.id.desc()).limit(limit)
            )
            return [_message(row) for row in reversed(rows.all())]

    async def history_for(self, message: Message, limit: int) -> list[Message]:
        """What the model sees before ``message``: the latest ``limit`` messages of its
        conversation, without it and without user messages sent after it (they wait for
        their own runs), oldest first. Answers stored after it (to earlier messages) stay.
        """
        async with self.read() as conn:
            rows = await conn.execute(
                select(messages)
                .where(
                    messages.c.conversation_id == message.conversation_id,
                    messages.c.id != message.id,
                    or_(messages.c.role != "user", messages.c.created_at <= message.created_at),
                )
                .order_by(messages.c.created_at.desc(), messages.c.id.desc())
                .limit(limit)
            )
            return [_message(row) for row in reversed(rows.all())]

    # -- runs ------------------------------------------------------------------------------

    async def claim_run(self, run_id: str, node: str, *, expect: str) -> bool:
        """Mark the run ``running`` on ``node`` if it is still ``expect`` (``queued``, or
        ``awaiting_confirmation`` for a resumption): of the nodes that try, one wins."""
        async with self.write() as conn:
            result = await conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.status == expect)
                .values(status="running", node_id=node)
            )
            return bool(result.rowcount)

    async def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        message: Message | None = None,
        usage: dict[str, int] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        node: str | None = None,
    ) -> bool:
        """End a run that has not ended yet, storing its assistant message (if any) in the same
        transaction. With ``node``, only while that node runs it (a takeover of a lost node's
        run). False, and nothing written, when the run had already ended."""
        async with self.write() as conn:
            where = [runs.c.id == run_id, runs.c.status.in_(UNFINISHED)]
            if node is not None:
                where += [runs.c.status == "running", runs.c.node_id == node]
            ended = await conn.execute(
                update(runs)
                .where(*where)
                .values(
                    status=status,
                    usage=usage,
                    error_code=error_code,
                    error_message=error_message,
                    finished_at=utcnow(),
                )
            )
            if not ended.rowcount:
                return False
            if message is not None:
                await conn.execute(insert(messages).values(**_message_values(message)))
                await conn.execute(
                    update(conversations)
                    .where(conversations.c.id == message.conversation_id)
                    .values(updated_at=message.created_at)
                )
            return True

    async def get_run(self, run_id: str) -> Run | None:
        async with self.read() as conn:
            row = (await conn.execute(select(*_RUN_COLUMNS).where(runs.c.id == run_id))).first()
        return Run(**row._mapping) if row else None

    async def unfinished_runs(
        self, conversation_id: str | None = None, *, paused: bool = False
    ) -> list[Run]:
        """Runs still ``queued`` or ``running`` (and, with ``paused``,
        ``awaiting_confirmation``), of one conversation or all, oldest first."""
        statuses = UNFINISHED if paused else ("queued", "running")
        query = (
            select(*_RUN_COLUMNS)
            .where(runs.c.status.in_(statuses))
            .order_by(runs.c.created_at, runs.c.id)
        )
        if conversation_id is not None:
            query = query.where(runs.c.conversation_id == conversation_id)
        async with self.read() as conn:
            return [Run(**row._mapping) for row in await conn.execute(query)]

    async def count_waiting_runs(self, conn: AsyncConnection, conversation_id: str) -> int:
        return (
            await conn.execute(
                select(func.count())
                .select_from(runs)
                .where(
                    runs.c.conversation_id == conversation_id,
                    runs.c.status.in_(("queued", "running")),
                )
            )
        ).scalar_one()


_RUN_COLUMNS = [
    runs.c[name]
    for name in (
        "id",
        "conversation_id",
        "message_id",
        "status",
        "created_at",
        "finished_at",
        "error_code",
        "node_id",
    )
]
_MESSAGE_FIELDS = (
    "id",
    "conversation_id",
    "role",
    "content",
    "citations",
    "steps",
    "usage",
    "confidence",
    "run_id",
    "status",
    "feedback",
    "meta",
    "created_at",
)


def _message(row: Row[Any]) -> Message:
    data = {name: row._mapping[name] for name in _MESSAGE_FIELDS}
    data["meta"] = data["meta"] or {}
    return Message(**data)


def _message_values(message: Message) -> dict[str, Any]:
    return {name: getattr(message, name) for name in _MESSAGE_FIELDS}


async def _insert_conversation(
    conn: AsyncConnection,
    tenant_id: str,
    owner: str,
    bot_uuid: str,
    title: str | None,
    now: datetime,
) -> str:
    """A new conversation with the bot, epoch 1 and no events yet; its id."""
    conversation_id = new_id()
    await conn.execute(
        insert(conversations).values(
            id=conversation_id,
            tenant_id=tenant_id,
            bot_uuid=bot_uuid,
            owner=owner,
            status="bot",
            title=title,
            epoch=1,
            seq_hwm=0,
            created_at=now,
            updated_at=now,
        )
    )
    return conversation_id


def _title_from(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= 50 else text[:50] + "..."


_ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:name))")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "busy_timeout=10000",
        "foreign_keys=ON",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _run_migrations(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
