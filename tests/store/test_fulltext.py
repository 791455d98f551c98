"""Full-text search on every backend: the same ``fts_query`` expression, hits best first with
a negative rank (lower is better), and no text a visitor writes can make the query fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.knowledge.ingest import add_source
from realtime.knowledge.retrieval import Retriever, _relative
from realtime.knowledge.text import fts_query
from realtime.store import Store
from realtime.store.fulltext import search, websearch_query
from tests.integration.test_http import RETURNS

SHIPPING = """# Shipping

## Delivery times

Orders ship within two business days; delivery takes three to five days.

## Tracking

Every order gets a tracking link by e-mail (see /docs/tracking.md or history.reset).
"""


class Searcher:
    """A store with one bot and two sources, and a private loop to drive it from sync tests."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = Store(url)
        self.bot = self.run(self._setup())
        self.retriever = Retriever(self.store.knowledge)

    async def _setup(self) -> str:
        await self.store.migrate()
        await self.store.create_tenant("t", "T")
        bot = await self.store.create_bot("t", "shop", {})
        for content, url in ((RETURNS, "/returns"), (SHIPPING, "/shipping")):
            await add_source(
                self.store.knowledge,
                tenant_id="t",
                bot_uuid=bot.uuid,
                content=content,
                kind="markdown",
                url=url,
            )
        return bot.uuid

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


@pytest.fixture
def searcher(database_url: str) -> Iterator[Searcher]:
    s = Searcher(database_url)
    try:
        yield s
    finally:
        s.close()


def test_websearch_query_keeps_only_the_phrases_words() -> None:
    assert websearch_query('"return" OR "jacket"') == '"return" or "jacket"'
    assert websearch_query('"don t" OR "café"') == '"don t" or "café"'
    assert websearch_query('"a""b" OR ""') == '"a b"'
    assert websearch_query("history.reset -x & (y | !z) <-> w:*") == '"history reset x y z w"'
    assert websearch_query('"" OR "-" OR "!"') == ""
    assert websearch_query("") == ""


@pytest.mark.parametrize(
    "question, url",
    [
        ("How many days do I have to return items?", "/returns#returning-items"),
        ("Can I exchange for another size?", "/returns#exchanges"),
        ("When will my order be delivered?", "/shipping#delivery-times"),
        ("What does history.reset mean?", "/shipping#tracking"),
    ],
)
def test_hits_come_best_first_with_a_negative_rank(
    searcher: Searcher, question: str, url: str
) -> None:
    hits = searcher.run(searcher.store.knowledge.search_chunks(searcher.bot, fts_query(question)))
    assert hits
    ranks = [hit.rank for hit in hits]
    assert ranks == sorted(ranks) and all(rank < 0 for rank in ranks)
    assert all(0 < _relative(hit, ranks[0]) <= 1 for hit in hits)
    passages = searcher.run(searcher.retriever.search(searcher.bot, question))
    assert passages[0].url == url
    assert all(0 < p.score <= 1 for p in passages)


def test_no_match_and_no_words_find_nothing(searcher: Searcher) -> None:
    assert searcher.run(searcher.retriever.search(searcher.bot, "zebra xylophone")) == []
    assert searcher.run(searcher.retriever.search(searcher.bot, "the of and ???")) == []


TRICKY = st.lists(
    st.one_of(
        st.sampled_from(list("&|!():*<->'\"\\ -._/@#,;") + ["don't", "OR", "AND", "NOT", "a"]),
        st.characters(),
    ),
    max_size=40,
).map("".join)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.one_of(TRICKY, st.text(max_size=200)))
def test_no_visitor_text_breaks_the_search(searcher: Searcher, text: str) -> None:
    hits = searcher.run(searcher.store.knowledge.search_chunks(searcher.bot, fts_query(text)))
    assert [hit.rank for hit in hits] == sorted(hit.rank for hit in hits)
    if searcher.store.dialect == "postgresql":
        # Any expression at all, not only what fts_query builds, is made safe there.
        searcher.run(_search_raw(searcher, text))


async def _search_raw(searcher: Searcher, match: str) -> None:
    async with searcher.store.read() as conn:
        await search(conn, "postgresql", searcher.bot, match, 5)
