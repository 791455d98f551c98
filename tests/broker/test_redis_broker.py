"""The Redis broker against the real Redis at 127.0.0.1:6379, as two nodes would use it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from realtime import events
from realtime.broker.base import StreamMissing
from realtime.broker.redis import RedisBroker
from realtime.events import Frame
from realtime.streams import Streams
from tests.support import REDIS_URL

pytestmark = pytest.mark.anyio

URL = REDIS_URL


class SeqStore:
    """The two store calls :class:`Streams` needs, in a dict (a fake of the store's interface)."""

    def __init__(self) -> None:
        self.cursors: dict[str, tuple[int, int]] = {}

    async def stream_cursor(self, conversation_id: str) -> tuple[int, int]:
        return self.cursors.get(conversation_id, (1, 0))

    async def save_stream_cursor(self, conversation_id: str, epoch: int, seq_hwm: int) -> None:
        old = self.cursors.get(conversation_id, (1, 0))[1]
        self.cursors[conversation_id] = (epoch, max(old, seq_hwm))


@pytest.fixture
async def nodes(redis_prefix: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    a = RedisBroker(URL, prefix=redis_prefix, replay_events=1000)
    b = RedisBroker(URL, prefix=redis_prefix, replay_events=1000)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


def token(cid: str, text: str = "x") -> events.Event:
    return events.run_token(cid, "run-1", text)


async def until(condition: Any, wait: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_two_nodes_share_one_ordered_stream(nodes: tuple[RedisBroker, RedisBroker]) -> None:
    a, b = nodes
    await a.open_stream("c1", 1, 0)
    got_a: list[Frame] = []
    got_b: list[Frame] = []
    await a.listen("c1", got_a.append)
    await b.listen("c1", got_b.append)

    async def burst(node: RedisBroker, n: int) -> list[int]:
        return [(await node.publish(token("c1", str(i)))).seq for i in range(n)]

    seqs_a, seqs_b = await asyncio.gather(burst(a, 100), burst(b, 100))
    assert sorted(seqs_a + seqs_b) == list(range(1, 201)), "a seq was issued twice"
    await until(lambda: len(got_a) == 200 and len(got_b) == 200)
    assert [f.seq for f in got_a] == [f.seq for f in got_b] == list(range(1, 201))
    frame = got_b[0]
    assert frame.text.startswith('{"type":"run.token","seq":1,"conversation_id":"c1"')
    state = await b.stream_state("c1")
    assert state is not None and (state.epoch, state.last_seq, state.first_seq) == (1, 200, 1)


async def test_log_reads_and_trimming(redis_prefix: str) -> None:
    broker = RedisBroker(URL, prefix=redis_prefix, replay_events=10)
    await broker.start()
    try:
        with pytest.raises(StreamMissing):
            await broker.publish(token("c2"))
        await broker.open_stream("c2", 3, 40)
        again = await broker.open_stream("c2", 9, 0)  # exists: unchanged
        assert (again.epoch, again.last_seq) == (3, 40)
        for i in range(5):
            await broker.publish(token("c2", str(i)))
        read = await broker.read_log("c2", 42)
        assert read.complete and [f.seq for f in read.frames] == [43, 44, 45]
        assert '"delta":"2"' in read.frames[0].text
        assert (await broker.read_log("c2", 45)).frames == []
        for i in range(200):
            await broker.publish(token("c2", str(i)))
        trimmed = await broker.read_log("c2", 41)
        assert not trimmed.complete and trimmed.frames == []
        tail = await broker.read_log("c2", 240)
        assert tail.complete and [f.seq for f in tail.frames] == [241, 242, 243, 244, 245]
    finally:
        await broker.close()


async def test_channels_follow_local_listeners(
    nodes: tuple[RedisBroker, RedisBroker], redis_prefix: str
) -> None:
    a, _ = nodes
    admin = redis.Redis.from_url(URL, decode_responses=True)
    channel = f"{redis_prefix}{{c3}}:c"
    first: list[Frame] = []
    second: list[Frame] = []
    await a.listen("c3", first.append)
    await a.listen("c3", second.append)
    assert (await admin.pubsub_numsub(channel))[0][1] == 1  # one connection per node
    a.unlisten("c3", first.append)
    await asyncio.sleep(0.05)
    assert (await admin.pubsub_numsub(channel))[0][1] == 1
    a.unlisten("c3", second.append)
    await until(lambda: True)
    for _ in range(100):
        if (await admin.pubsub_numsub(channel))[0][1] == 0:
            break
        await asyncio.sleep(0.01)
    assert (await admin.pubsub_numsub(channel))[0][1] == 0
    await admin.aclose()


async def test_typing_is_live_only(nodes: tuple[RedisBroker, RedisBroker]) -> None:
    a, b = nodes
    await a.open_stream("c4", 1, 0)
    got: list[Frame] = []
    await b.listen("c4", got.append)
    await a.publish_ephemeral(events.typing("c4", "visitor", True))
    await until(lambda: len(got) == 1)
    assert got[0].seq == 0 and got[0].type == "typing"
    assert (await a.read_log("c4", 0)).frames == []


async def test_a_dropped_pubsub_connection_loses_nothing(
    nodes: tuple[RedisBroker, RedisBroker],
) -> None:
    a, b = nodes
    await a.open_stream("c5", 1, 0)
    got: list[Frame] = []
    await b.listen("c5", got.append)
    await a.publish(token("c5"))
    await until(lambda: len(got) == 1)
    admin = redis.Redis.from_url(URL)
    killed = await admin.client_kill_filter(_type="pubsub")
    assert killed >= 1
    for i in range(20):  # published while node b reconnects
        await a.publish(token("c5", str(i)))
    await until(lambda: len(got) == 21, wait=10)
    assert [f.seq for f in got] == list(range(1, 22))
    await admin.aclose()


async def test_sharded_pubsub(redis_prefix: str) -> None:
    a = RedisBroker(URL, prefix=redis_prefix, sharded=True)
    b = RedisBroker(URL, prefix=redis_prefix, sharded=True)
    await a.start()
    await b.start()
    try:
        await a.open_stream("c6", 1, 0)
        got: list[Frame] = []
        await b.listen("c6", got.append)
        for i in range(5):
            await a.publish(token("c6", str(i)))
        await until(lambda: len(got) == 5)
        assert [f.seq for f in got] == [1, 2, 3, 4, 5]
    finally:
        await a.close()
        await b.close()


async def test_seq_never_repeats_when_redis_forgets(redis_prefix: str) -> None:
    store = SeqStore()
    broker = RedisBroker(URL, prefix=redis_prefix)
    await broker.start()
    try:
        streams = Streams(broker, store, block=8)
        issued = [(await streams.publish(token("c7"))).seq for _ in range(20)]
        assert issued == list(range(1, 21))
        admin = redis.Redis.from_url(URL)
        await admin.delete(
            f"{redis_prefix}{{c7}}:s", f"{redis_prefix}{{c7}}:log"
        )  # as after a restart
        await admin.aclose()
        after = [(await streams.publish(token("c7"))).seq for _ in range(5)]
        assert min(after) > max(issued)
        state = await broker.stream_state("c7")
        assert state is not None and state.epoch == 2
        got: list[Frame] = []
        sub = await streams.subscribe("c7", got.append, after_seq=3, epoch=1)
        assert got[0].type == "history.reset"
        sub.close()
    finally:
        await broker.close()
