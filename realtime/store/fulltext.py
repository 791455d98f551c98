"""Full-text search over knowledge chunks, per SQL dialect (the only dialect-specific SQL).

Both dialects take the same ``match`` expression, built by
:func:`realtime.knowledge.text.fts_query`: an OR of double-quoted phrases
(``"return" OR "jacket"``), and return hits best first with a ``rank`` where lower is better.

- SQLite: the FTS5 index ``knowledge_fts`` (migration 0001), ranked by bm25 (negative).
- PostgreSQL: the generated ``search_vector`` column and its GIN index (migration 0004). The
  expression is rewritten as ``websearch_to_tsquery`` text made of the phrases' words only
  (``"return" or "jacket"``), which never raises a syntax error, and ranked by
  ``ts_rank_cd`` negated, so that lower is better there too.
"""

from __future__ import annotations

import re
import unicodedata

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

# Weights {D, C, B, A}: a title (A) counts twice the text (B), as in the bm25 call above.
# Normalization 1 divides by 1 + log(length), so long chunks do not win by length alone.
_POSTGRESQL = text(
    "SELECT c.id AS chunk_id, c.source_id, c.title, c.url, c.text, "
    "-ts_rank_cd('{0.1, 0.2, 0.5, 1.0}', c.search_vector, q.query, 1) AS rank "
    "FROM knowledge_chunks c, websearch_to_tsquery('english', :query) AS q(query) "
    "WHERE c.bot_uuid = :bot AND c.search_vector @@ q.query "
    "ORDER BY rank, c.id LIMIT :limit"
)

_PHRASE = re.compile(r'"((?:[^"]|"")*)"')
MAX_PHRASES = 32


async def search(
    conn: AsyncConnection, dialect: str, bot_uuid: str, match: str, limit: int
) -> list[ChunkHit]:
    if dialect == "sqlite":
        rows = await conn.execute(_SQLITE, {"match": match, "bot": bot_uuid, "limit": limit})
    elif dialect == "postgresql":
        query = websearch_query(match)
        if not query:
            return []
        rows = await conn.execute(_POSTGRESQL, {"query": query, "bot": bot_uuid, "limit": limit})
    else:
        raise NotImplementedError(f"full-text search is not implemented for {dialect}")
    return [ChunkHit(**row._mapping) for row in rows]


def websearch_query(match: str) -> str:
    """An FTS5 OR of quoted phrases as ``websearch_to_tsquery`` text: ``"a b" or "c"``.

    Only the phrases' words (letters, digits and marks) are kept, so nothing in them can be
    an operator; text without quoted phrases counts as one phrase. Empty when no word is left.
    """
    phrases = [p.replace('""', '"') for p in _PHRASE.findall(match)] or [match]
    out: list[str] = []
    for phrase in phrases:
        words = "".join(ch if _is_word_char(ch) else " " for ch in phrase).split()
        if words:
            out.append('"' + " ".join(words) + '"')
        if len(out) == MAX_PHRASES:
            break
    return " or ".join(out)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch)[0] == "M"
