"""Retrieval: the store's full-text candidates, rescored to a 0..1 relevance.

The store ranks candidates with its own engine (SQLite FTS5's bm25); bm25 is unbounded and
not comparable across queries, so each candidate is rescored by how much of the question
it covers (:func:`coverage`, 0..1), scaled by its bm25 relative to the best candidate's
(a quarter of the weight), which orders passages that cover the question equally. The top
score is the answer's ``confidence`` (DECISIONS 14).
"""

from __future__ import annotations

from typing import Protocol

from realtime.knowledge.extractive import Passage
from realtime.knowledge.text import coverage, fts_query, query_terms
from realtime.store.records import ChunkHit


class ChunkSearch(Protocol):
    async def search_chunks(self, bot_uuid: str, match: str, limit: int = 20) -> list[ChunkHit]: ...


class Retriever:
    def __init__(self, store: ChunkSearch, *, candidates: int = 20) -> None:
        self._store = store
        self._candidates = candidates

    async def search(self, bot_uuid: str, question: str, *, k: int = 5) -> list[Passage]:
        """The ``k`` passages that best answer ``question``, best first, scored 0..1."""
        match = fts_query(question)
        if not match:
            return []
        hits = await self._store.search_chunks(bot_uuid, match, self._candidates)
        terms = query_terms(question)
        best = hits[0].rank if hits else 0.0
        scored = [
            (
                coverage(terms, f"{hit.title}\n{hit.text}") * (0.75 + 0.25 * _relative(hit, best)),
                -position,
                hit,
            )
            for position, hit in enumerate(hits)
        ]
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [
            Passage(
                source_id=hit.source_id,
                title=hit.title,
                url=hit.url,
                text=hit.text,
                score=round(score, 4),
            )
            for score, _, hit in scored[:k]
            if score > 0
        ]


def _relative(hit: ChunkHit, best: float) -> float:
    """The hit's bm25 as a fraction of the best one's (FTS5's bm25 is negative, lower wins)."""
    if best >= 0 or hit.rank >= 0:
        return 1.0
    return min(1.0, hit.rank / best)
