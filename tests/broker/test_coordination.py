"""Leases, rate limits and presence: the embedded coordination and the Redis one (against the
real Redis at 127.0.0.1:6379) must behave alike, since the run manager and the presence
registry rely on the same rules from both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from realtime.broker.coordination import Coordination, MemoryCoordination, merge_presence
from realtime.broker.redis_coordination import RedisCoordination
from realtime.connections import Connections
from realtime.limits import Rule
from tests.support import REDIS_URL, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "redis"])
async def coord(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Coordination]:
    made: Coordination = (
        MemoryCoordination()
        if request.param == "memory"
        else RedisCoordination(REDIS_URL, prefix=redis_prefix)
    )
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_a_lease_has_one_holder_until_released_or_expired(coord: Coordination) -> None:
    assert await coord.acquire("c1", "node-a", 0.3)
    assert not await coord.acquire("c1", "node-b", 0.3)
    assert await coord.acquire("c1", "node-a", 0.3)  # taking it again is renewing it
    assert await coord.holder("c1") == "node-a"
    await coord.release("c1", "node-b")  # not the holder: nothing happens
    assert await coord.holder("c1") == "node-a"
    await coord.release("c1", "node-a")
    assert await coord.holder("c1") is None
    assert await coord.acquire("c1", "node-b", 0.2)
    assert await coord.renew("c1", "node-b", 0.2)
    assert not await coord.renew("c1", "node-a", 0.2)
    await asyncio.sleep(0.35)  # node-b stopped renewing: the lease expired
    assert await coord.holder("c1") is None
    assert await coord.acquire("c1", "node-a", 5)
    assert await coord.holder("c2") is None


async def test_a_vanished_lease_is_taken_back_by_its_holder_renewing(coord: Coordination) -> None:
    assert await coord.acquire("c1", "node-a", 0.1)
    await asyncio.sleep(0.2)  # as after a Redis restart: the key is gone
    assert await coord.renew("c1", "node-a", 5)
    assert await coord.holder("c1") == "node-a"


async def test_rate_limit_allows_a_burst_then_the_steady_rate(coord: Coordination) -> None:
    waits = [await coord.hit("k", 3, 0.6) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.1 < waits[3] <= 0.2 + 0.01  # one event every 0.2 s
    assert await coord.hit("other", 3, 0.6) == 0.0  # keys are separate
    await asyncio.sleep(waits[3] + 0.02)
    assert await coord.hit("k", 3, 0.6) == 0.0
    assert await coord.hit("k", 3, 0.6) > 0.0
    assert await coord.hit("k", 0, 60) == 0.0  # a rate of 0 means no limit


async def test_presence_merges_what_every_node_sees(coord: Coordination) -> None:
    await coord.put_presence("t1", "alice", "node-a", "away", 5)
    await coord.put_presence("t1", "alice", "node-b", "online", 5)
    await coord.put_presence("t1", "bob", "node-a", "away", 0.2)
    await coord.put_presence("t2", "carol", "node-a", "online", 5)
    assert await coord.presence("t1") == {"alice": "online", "bob": "away"}
    await coord.put_presence("t1", "alice", "node-b", "offline", 5)
    assert await coord.presence("t1") == {"alice": "away", "bob": "away"}
    await asyncio.sleep(0.3)  # bob's node stopped renewing
    assert await coord.presence("t1") == {"alice": "away"}
    assert await coord.presence("t2") == {"carol": "online"}
    assert await coord.presence("t3") == {}


def test_merge_presence_prefers_online() -> None:
    seen = [("a", "away"), ("a", "online"), ("a", "away"), ("b", "away")]
    assert merge_presence(seen) == {"a": "online", "b": "away"}


async def test_several_rules_are_taken_all_or_none(coord: Coordination) -> None:
    """A request refused by one rule uses up nothing of the others."""
    wide, narrow = Rule("wide", 3, 60.0), Rule("narrow", 1, 60.0)
    assert await coord.hit_all([wide, narrow]) == 0.0
    assert await coord.hit_all([wide, narrow]) > 0  # narrow is spent
    assert await coord.hit_all([wide, narrow]) > 0
    # wide gave one token, not three: two are left
    assert [await coord.hit_all([wide]) for _ in range(3)][:2] == [0.0, 0.0]
    assert await coord.hit_all([wide]) > 0


async def test_connections_are_counted_over_the_nodes_and_written_back_when_lost(
    redis_prefix: str,
) -> None:
    coord = RedisCoordination(REDIS_URL, prefix=redis_prefix)
    await coord.start()
    try:
        a = Connections(2, coord, "node-a")
        b = Connections(2, coord, "node-b")
        assert await a.admit("1.2.3.4") and await b.admit("1.2.3.4")
        assert not await a.admit("1.2.3.4") and not await b.admit("1.2.3.4")
        assert await a.admit("5.6.7.8")  # another address has its own count
        # Redis forgets (a restart): the heartbeat writes the node's truth back.
        await coord._redis.delete(f"{redis_prefix}conns:node-a", f"{redis_prefix}nodes")
        assert await b.admit("1.2.3.4")  # for a moment a's connection is not seen
        await b.release("1.2.3.4")
        await a.heartbeat()
        await b.heartbeat()
        assert not await b.admit("1.2.3.4")  # seen again
        await a.forget()  # node a stops: its connections no longer count
        assert await b.admit("1.2.3.4")
    finally:
        await coord.close()


async def test_with_redis_away_each_node_counts_its_own() -> None:
    coord = RedisCoordination(f"redis://127.0.0.1:{free_port()}/0", prefix="rt-none:")
    await coord.start()
    try:
        node = Connections(2, coord, "node-a")
        assert [await node.admit("1.2.3.4") for _ in range(3)] == [True, True, False]
        await node.release("1.2.3.4")
        assert node.count("1.2.3.4") == 1 and await node.admit("1.2.3.4")
        assert not coord.healthy()
    finally:
        await coord.close()
