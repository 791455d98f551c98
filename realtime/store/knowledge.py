"""Knowledge sources and their indexed chunks (``Store.knowledge``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select

from realtime.store import fulltext
from realtime.store.records import ChunkHit, Source, utcnow
from realtime.store.schema import knowledge_chunks, knowledge_sources
from realtime.types import new_id

if TYPE_CHECKING:
    from realtime.store.store import Store


class KnowledgeStore:
    def __init__(self, store: Store) -> None:
        self.read = store.read
        self.write = store.write
        self.dialect = store.dialect

    async def add_source(
        self,
        *,
        tenant_id: str,
        bot_uuid: str,
        title: str,
        url: str,
        kind: str,
        content: str,
        chunks: Sequence[tuple[str, str, str]],
    ) -> Source:
        """Store a source and its chunks, given as (title, url, text) in order."""
        source = Source(new_id(), tenant_id, bot_uuid, title, url, kind, len(chunks), utcnow())
        async with self.write() as conn:
            await conn.execute(
                insert(knowledge_sources).values(
                    id=source.id,
                    tenant_id=tenant_id,
                    bot_uuid=bot_uuid,
                    title=title,
                    url=url,
                    kind=kind,
                    content=content,
                    chunk_count=len(chunks),
                    created_at=source.created_at,
                )
            )
            if chunks:
                await conn.execute(
                    insert(knowledge_chunks),
                    [
                        {
                            "source_id": source.id,
                            "bot_uuid": bot_uuid,
                            "ord": i,
                            "title": c_title,
                            "url": c_url,
                            "text": text,
                        }
                        for i, (c_title, c_url, text) in enumerate(chunks)
                    ],
                )
        return source

    async def list_sources(self, bot_uuid: str) -> list[Source]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(*_SOURCE_COLUMNS)
                .where(knowledge_sources.c.bot_uuid == bot_uuid)
                .order_by(knowledge_sources.c.created_at)
            )
            return [Source(**row._mapping) for row in rows]

    async def delete_source(self, bot_uuid: str, source_id: str) -> bool:
        async with self.write() as conn:
            found = await conn.execute(
                select(knowledge_sources.c.id).where(
                    knowledge_sources.c.id == source_id, knowledge_sources.c.bot_uuid == bot_uuid
                )
            )
            if found.first() is None:
                return False
            await conn.execute(
                delete(knowledge_chunks).where(knowledge_chunks.c.source_id == source_id)
            )
            await conn.execute(delete(knowledge_sources).where(knowledge_sources.c.id == source_id))
            return True

    async def has_knowledge(self, bot_uuid: str) -> bool:
        async with self.read() as conn:
            row = await conn.execute(
                select(knowledge_chunks.c.id)
                .where(knowledge_chunks.c.bot_uuid == bot_uuid)
                .limit(1)
            )
            return row.first() is not None

    async def search_chunks(self, bot_uuid: str, match: str, limit: int = 20) -> list[ChunkHit]:
        """Full-text candidates for ``match`` (an expression from ``fts_query``), best first."""
        if not match:
            return []
        async with self.read() as conn:
            return await fulltext.search(conn, self.dialect, bot_uuid, match, limit)


_SOURCE_COLUMNS = [c for c in knowledge_sources.c if c.name != "content"]
