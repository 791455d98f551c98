"""Durable records: one schema, Alembic migrations, SQLite by default."""

from realtime.store.records import (
    ApiKey,
    Bot,
    ChunkHit,
    Confirmation,
    Conversation,
    HumanAgent,
    Message,
    Run,
    Source,
    Tenant,
    iso,
    utcnow,
)
from realtime.store.store import Store, async_url, hash_secret

__all__ = [
    "HumanAgent",
    "ApiKey",
    "Bot",
    "ChunkHit",
    "Confirmation",
    "Conversation",
    "Message",
    "Run",
    "Source",
    "Store",
    "Tenant",
    "async_url",
    "hash_secret",
    "iso",
    "utcnow",
]
