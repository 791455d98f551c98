"""Full-text search over knowledge chunks, per SQL dialect (the only dialect-specific SQL)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from realtime.store.records import ChunkHit

_SQLITE = text(
    "SELECT c.id AS chunk_id, c.source_id, c.title, c.url, c.text, "
    "bm25(knowledge_fts, 2.0, 1.0) AS rank "
    "FROM knowledge_fts JOIN knowledge_chunks c ON c.id = knowledge_fts.rowid "
    "WHERE knowledge_fts MATCH :match AND c.bot_uuid = :bot "
    "ORDER BY rank LIMIT :limit"
)


async def search(
    conn: AsyncConnection, dialect: str, bot_uuid: str, match: str, limit: int
) -> list[ChunkHit]:
    if dialect != "sqlite":
        raise NotImplementedError(f"full-text search is not implemented for {dialect}")
    rows = await conn.execute(_SQLITE, {"match": match, "bot": bot_uuid, "limit": limit})
    return [ChunkHit(**row._mapping) for row in rows]
