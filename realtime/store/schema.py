"""The durable schema, as SQLAlchemy Core tables (the migrations create the same)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ID = 36  # a UUID as text
OWNER = 300  # an identity key, "kind:value"

server_settings = Table(
    "server_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("signing_secret", String(128), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("monthly_messages", Integer),  # the quota of visitor messages; NULL: none
)

# Visitor messages accepted per tenant and calendar month (UTC, "YYYY-MM").
usage = Table(
    "usage",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("messages", Integer, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("bot_uuid", String(ID)),
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
)

bots = Table(
    "bots",
    metadata,
    Column("uuid", String(ID), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("slug", String(50), nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("tenant_id", "slug", name="uq_bots_tenant_slug"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("bot_uuid", String(ID), nullable=False),
    Column("owner", String(OWNER), nullable=False),
    Column("status", String(20), nullable=False),
    Column("title", String(255)),
    Column("epoch", Integer, nullable=False),
    Column("seq_hwm", Integer, nullable=False),
    Column("meta", JSON),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("agent_id", String(ID)),  # the human agent who owns it (status with_human)
    Column("queued_at", DateTime),  # when it entered the handoff queue
    Column("agent_read_at", DateTime),  # up to when its agent has read the visitor's messages
    Column("handoff_reason", String(32)),  # why it left the bot: button | message | model | auto
    Index("ix_conversations_owner", "tenant_id", "owner"),
    Index("ix_conversations_queue", "tenant_id", "status", "queued_at"),
    Index("ix_conversations_agent", "agent_id", "status"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "conversation_id",
        String(ID),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("citations", JSON),
    Column("steps", JSON),
    Column("usage", JSON),
    Column("confidence", Float),
    Column("run_id", String(ID)),
    Column("status", String(16)),  # assistant messages: completed | cancelled | failed
    Column("feedback", String(16)),
    Column("meta", JSON),
    Column("created_at", DateTime, nullable=False),
    Index("ix_messages_conversation", "conversation_id", "created_at"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "conversation_id",
        String(ID),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("message_id", String(ID), nullable=False),
    Column("status", String(32), nullable=False),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("usage", JSON),
    Column("node_id", String(64)),
    Column("created_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Index("ix_runs_status", "status"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("owner", String(OWNER), primary_key=True),
    Column("client_id", String(128), primary_key=True),
    Column("conversation_id", String(ID), nullable=False),
    Column("message_id", String(ID), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

knowledge_sources = Table(
    "knowledge_sources",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("bot_uuid", String(ID), ForeignKey("bots.uuid", ondelete="CASCADE"), nullable=False),
    Column("title", String(300), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_knowledge_sources_bot", "bot_uuid"),
)

knowledge_chunks = Table(
    "knowledge_chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "source_id",
        String(ID),
        ForeignKey("knowledge_sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("bot_uuid", String(ID), nullable=False),
    Column("ord", Integer, nullable=False),
    Column("title", String(500), nullable=False),
    Column("url", String(2100), nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_knowledge_chunks_bot", "bot_uuid"),
    Index("ix_knowledge_chunks_source", "source_id"),
)

confirmations = Table(
    "confirmations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "conversation_id",
        String(ID),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("run_id", String(ID), nullable=False),
    Column("tool_call_id", String(128), nullable=False),
    Column("tool", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("step", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected | expired
    Column("decided_by", String(32)),
    Column("continuation", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("resolved_at", DateTime),
    Index("ix_confirmations_conversation", "conversation_id", "tool_call_id"),
    Index("ix_confirmations_status", "status", "expires_at"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("label", String(100), nullable=False),
    Column("password_hash", String(200)),
    Column("capacity", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("tenant_id", "email", name="uq_agents_tenant_email"),
)

agent_tokens = Table(
    "agent_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("agent_id", String(ID), ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

CONVERSATION_COLUMNS = [c for c in conversations.c if c.name != "seq_hwm"]

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("secret", String(200), nullable=False),  # signs deliveries: kept, never shown
    Column("created_at", DateTime, nullable=False),
    Index("ix_webhooks_tenant", "tenant_id"),
)
