"""Leases, rate limits and presence: the embedded coordination and the Redis one (against the
real Redis at 127.0.0.1:6379) must behave alike, since the run manager and the presence
registry rely on the same rules from both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from realtime.broker.coordination import Coordination, MemoryCoordination, merge_presence
from realtime.broker.redis_coordination import RedisCoordination
from tests.support import REDIS_URL

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
