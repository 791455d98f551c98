"""Concurrent writes to one store, on every backend: on PostgreSQL they really run at once
(READ COMMITTED); on SQLite the store's write lock takes them one at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from realtime.bootstrap import bootstrap
from realtime.data.demo_shop import demo_shop_url
from realtime.engine import DEFAULT_TENANT
from realtime.store import HumanAgent, Message, Store, utcnow
from realtime.store.schema import bots, runs, tenants
from realtime.types import new_id
from tests.store.conftest import TENANT
from tests.support import demo_shop_rows, make_settings

pytestmark = pytest.mark.anyio


async def agent(store: Store, n: int, capacity: int) -> HumanAgent:
    return await store.handoff.create_agent(
        TENANT,
        name=f"Agent {n}",
        email=f"agent{n}@example.com",
        label=f"A{n}",
        password_hash=None,
        capacity=capacity,
    )


async def waiting(store: Store, owner: str = "visitor:v") -> str:
    """A new conversation in the handoff queue."""
    stored = await store.add_user_message(
        tenant_id=TENANT,
        owner=owner,
        bot_uuid="bot",
        conversation_id=None,
        content="a person, please",
        client_id=None,
    )
    assert await store.handoff.queue_conversation(stored.message.conversation_id, "button")
    return stored.message.conversation_id


async def test_of_twenty_concurrent_claims_exactly_one_wins(store: Store) -> None:
    agents = [await agent(store, n, capacity=5) for n in range(20)]
    for _ in range(3):
        cid = await waiting(store)
        won = await asyncio.gather(
            *(store.handoff.claim_conversation(cid, a.id, a.capacity) for a in agents)
        )
        assert sum(won) == 1, won
        winner = agents[won.index(True)]
        conversation = await store.get_conversation(cid)
        assert conversation is not None
        assert (conversation.status, conversation.agent_id) == ("with_human", winner.id)


@pytest.mark.parametrize("capacity, conversations", [(1, 2), (1, 6), (3, 8)])
async def test_concurrent_claims_of_one_agent_never_exceed_its_capacity(
    store: Store, capacity: int, conversations: int
) -> None:
    alice = await agent(store, 0, capacity=capacity)
    for _ in range(5):
        cids = [await waiting(store) for _ in range(conversations)]
        won = await asyncio.gather(
            *(store.handoff.claim_conversation(cid, alice.id, capacity) for cid in cids)
        )
        owned = await store.handoff.owned_by(alice.id)
        assert sum(won) == len(owned) == capacity, (won, len(owned))
        for conversation in owned:  # back to the queue for the next round
            assert await store.handoff.end_handoff(conversation.id, "closed", agent_id=alice.id)


async def test_concurrent_transfers_to_one_agent_never_exceed_its_capacity(store: Store) -> None:
    busy = [await agent(store, n, capacity=1) for n in range(4)]
    bob = await agent(store, 9, capacity=1)
    cids = [await waiting(store) for _ in busy]
    for a, cid in zip(busy, cids, strict=True):
        assert await store.handoff.claim_conversation(cid, a.id, a.capacity)
    moved = await asyncio.gather(
        *(
            store.handoff.transfer_conversation(cid, a.id, bob.id, bob.capacity)
            for a, cid in zip(busy, cids, strict=True)
        )
    )
    assert sum(moved) == 1 and len(await store.handoff.owned_by(bob.id)) == 1


async def test_a_message_racing_a_handoff_never_undoes_it(store: Store) -> None:
    """The message reads the conversation's status to decide on a run: the handoff that
    commits meanwhile must neither be overwritten nor get a bot run queued behind it."""
    for i in range(10):
        first = await store.add_user_message(
            tenant_id=TENANT,
            owner="visitor:v",
            bot_uuid="bot",
            conversation_id=None,
            content="hi",
            client_id=None,
        )
        cid = first.message.conversation_id
        run_id = new_id()
        queued, stored = await asyncio.gather(
            store.handoff.queue_conversation(cid, "button"),
            store.add_user_message(
                tenant_id=TENANT,
                owner="visitor:v",
                bot_uuid="bot",
                conversation_id=cid,
                content=f"and another thing {i}",
                client_id=None,
                run_id=run_id,
            ),
        )
        assert queued
        conversation = await store.get_conversation(cid)
        assert conversation is not None and conversation.status == "pending_human"
        run = await store.get_run(run_id)
        assert (run is not None) == (stored.status == "bot"), (stored.status, run)


async def test_concurrent_duplicates_of_a_client_id_store_one_message(store: Store) -> None:
    for attempt in range(3):
        results = await asyncio.gather(
            *(
                store.add_user_message(
                    tenant_id=TENANT,
                    owner="visitor:v",
                    bot_uuid="bot",
                    conversation_id=None,
                    content="once",
                    client_id=f"c-{attempt}",
                    run_id=new_id(),
                )
                for _ in range(10)
            )
        )
        assert sum(r.created for r in results) == 1
        assert len({r.message.id for r in results}) == 1
        async with store.read() as conn:
            count = await conn.execute(
                select(func.count())
                .select_from(runs)
                .where(runs.c.conversation_id == results[0].message.conversation_id)
            )
            assert count.scalar_one() == 1


async def test_naive_utc_datetimes_and_json_round_trip(store: Store) -> None:
    stored = await store.add_user_message(
        tenant_id=TENANT,
        owner="visitor:v",
        bot_uuid="bot",
        conversation_id=None,
        content="hi",
        client_id="c",
    )
    now = utcnow()
    assert now.microsecond or utcnow().microsecond  # microseconds are kept, not rounded
    reply = Message(
        new_id(),
        stored.message.conversation_id,
        "assistant",
        "ünïcödé ✓",
        now,
        citations=[{"marker": 1, "title": "T", "url": "/x", "nested": {"a": [1, 2.5, None]}}],
        usage={"prompt_tokens": 3},
        confidence=0.25,
        meta={"client_id": None, "agent": {"id": "a", "label": "A"}},
    )
    await store.add_message(reply)
    back = await store.get_message(reply.id)
    assert back == reply
    assert back.created_at.tzinfo is None
    original = await store.get_message(stored.message.id)
    assert original == stored.message


async def test_processes_bootstrapping_one_database_at_once(
    shared_database_url: str, tmp_path: Path
) -> None:
    """Two servers starting together on one (PostgreSQL) database: one migrates and creates
    the tenant, the demo bot and the demo shop; the other waits and finds them."""
    database_url = shared_database_url
    settings = make_settings(tmp_path, database_url=database_url)
    stores = [Store(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(bootstrap(s, settings) for s in stores))
        assert sorted(r.demo_sources for r in results)[:2] == [0, 0]
        async with stores[0].read() as conn:
            assert (await conn.execute(select(func.count()).select_from(tenants))).scalar() == 1
            assert (await conn.execute(select(func.count()).select_from(bots))).scalar() == 1
        bot = await stores[0].get_bot(DEFAULT_TENANT, "demo")
        assert bot is not None
        assert bot.config["data_source"] == {
            "url": demo_shop_url(database_url),
            "schema": "demo_shop",
            "tables": bot.config["data_source"]["tables"],
        }
        assert await demo_shop_rows(settings, "SELECT count(*) FROM categories") == [(8,)]
        assert await demo_shop_rows(settings, "SELECT count(*) FROM orders") == [(300,)]
    finally:
        for s in stores:
            await s.close()
