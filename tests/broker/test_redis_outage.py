"""The Redis broker when its Redis goes away: restarted empty (``kill -9`` of a private
``redis-server``), or cut off by the network with its data kept (a TCP proxy that resets
every connection and refuses new ones)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from realtime import events
from realtime.broker.base import LOST_FRAME, BrokerUnavailable
from realtime.broker.memory import MemoryBroker
from realtime.broker.redis import RedisBroker
from realtime.events import Frame
from realtime.streams import HISTORY_RESET, Streams
from tests.broker.test_redis_broker import SeqStore
from tests.support import UNIT, RedisServer, TcpProxy

pytestmark = pytest.mark.anyio


def token(cid: str, text: str = "x") -> events.Event:
    return events.run_token(cid, "run-1", text)


async def until(condition: Callable[[], Any], wait: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait * UNIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def resets(frames: list[Frame]) -> list[dict[str, Any]]:
    return [orjson.loads(f.text) for f in frames if f.type == HISTORY_RESET]


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[TcpProxy]:
    link = TcpProxy(redis_server.port)
    await link.start()
    yield link
    await link.close()


async def started(url: str, **options: Any) -> RedisBroker:
    broker = RedisBroker(url, **options)
    await broker.start()
    return broker


async def test_health_follows_redis_even_with_nothing_subscribed(
    redis_server: RedisServer,
) -> None:
    broker = await started(redis_server.url, probe_interval=0.1)
    try:
        assert broker.healthy()
        await redis_server.kill()
        await until(lambda: not broker.healthy())
        await redis_server.start()
        await until(broker.healthy)
    finally:
        await broker.close()


async def test_a_restart_resets_each_listener_once(redis_server: RedisServer) -> None:
    store = SeqStore()
    a = await started(redis_server.url)
    b = await started(redis_server.url)
    try:
        on_a, on_b = Streams(a, store, block=8), Streams(b, store, block=8)
        for _ in range(3):
            await on_a.publish(token("c1"))
        got: dict[str, list[Frame]] = {"a1": [], "a2": [], "b": []}
        subs = [
            await on_a.subscribe("c1", got["a1"].append, after_seq=3, epoch=1),
            await on_a.subscribe("c1", got["a2"].append, after_seq=3, epoch=1),
            await on_b.subscribe("c1", got["b"].append, after_seq=3, epoch=1),
        ]
        await redis_server.kill()
        await until(lambda: not a.healthy() and not b.healthy())
        await redis_server.start()  # empty: the stream is gone
        await until(lambda: all(resets(frames) for frames in got.values()))
        after = await on_b.publish(token("c1", "after"))
        await until(lambda: all(frames[-1].seq == after.seq for frames in got.values()))
        await asyncio.sleep(0.2)
        state = await b.stream_state("c1")
        assert state is not None and state.epoch >= 2  # both nodes may have bumped it
        for name, frames in got.items():
            (reset,) = resets(frames)
            assert reset["epoch"] == state.epoch, name
            assert [f.seq for f in frames] == [0, after.seq], name
            assert after.seq > reset["last_seq"] >= 8, name  # above the reservation
        for sub in subs:
            sub.close()
    finally:
        await a.close()
        await b.close()


async def test_a_publish_waits_out_a_short_outage(redis_server: RedisServer) -> None:
    broker = await started(redis_server.url, outage_grace=10)
    try:
        streams = Streams(broker, SeqStore(), block=8)
        got: list[Frame] = []
        sub = await streams.subscribe("c2", got.append)
        await streams.publish(token("c2"))
        await redis_server.kill()

        async def come_back() -> None:
            await asyncio.sleep(0.5)
            await redis_server.start()

        back = asyncio.create_task(come_back())
        started_at = asyncio.get_running_loop().time()
        frame = await streams.publish(token("c2", "through the blip"))
        assert asyncio.get_running_loop().time() - started_at >= 0.4
        await back
        assert frame.seq > 8  # a new epoch above the reservation
        await until(lambda: resets(got))
        await asyncio.sleep(0.2)
        (reset,) = resets(got)
        assert reset["epoch"] == 2
        at = [f.type for f in got].index(HISTORY_RESET)
        # before: what arrived of epoch 1 (the first token's message may have died with
        # Redis: the reset covers it); after: the new token, unless the reset covers it
        assert [f.seq for f in got[:at]] in ([], [1])
        if reset["last_seq"] < frame.seq:
            assert [f.seq for f in got[at + 1 :]] == [frame.seq]
        else:
            assert got[at + 1 :] == []
        sub.close()
    finally:
        await broker.close()


async def test_a_cut_loses_nothing_and_resets_nobody(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    """Node A is cut off from Redis while node B goes on publishing: when the link is
    back, A's listener gets every frame it missed, in order, once."""
    store = SeqStore()
    a = await started(proxy.url)
    b = await started(redis_server.url)
    try:
        on_a, on_b = Streams(a, store), Streams(b, store)
        got: list[Frame] = []
        sub = await on_a.subscribe("c3", got.append)
        await on_b.publish(token("c3", "0"))
        await until(lambda: len(got) == 1)
        await proxy.cut()
        await until(lambda: not a.healthy())
        published = [(await on_b.publish(token("c3", str(i)))).seq for i in range(1, 21)]
        await proxy.mend()
        await until(a.healthy)
        published += [(await on_a.publish(token("c3", "from a"))).seq]
        await until(lambda: len(got) == 22)
        await asyncio.sleep(0.2)
        assert [f.seq for f in got] == [1, *published]
        assert not resets(got)
        sub.close()
    finally:
        await a.close()
        await b.close()


async def test_a_publish_that_gives_up_leaves_a_hole_everyone_hears_of(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    """Redis keeps its data but node A cannot reach it for longer than its grace: A's
    publish fails; once A is back a marker takes the dropped event's place, and every
    listener (on A, on B, and anyone resuming from before it) gets one history.reset."""
    store = SeqStore()
    a = await started(proxy.url, outage_grace=0.3)
    b = await started(redis_server.url)
    try:
        on_a, on_b = Streams(a, store), Streams(b, store)
        got_a: list[Frame] = []
        got_b: list[Frame] = []
        sub_a = await on_a.subscribe("c4", got_a.append)
        sub_b = await on_b.subscribe("c4", got_b.append)
        first = await on_a.publish(token("c4", "0"))
        await proxy.cut()
        with pytest.raises(BrokerUnavailable):
            await on_a.publish(token("c4", "dropped"))
        await proxy.mend()
        await until(lambda: resets(got_a) and resets(got_b))
        (reset_a,), (reset_b,) = resets(got_a), resets(got_b)
        assert reset_a == reset_b
        assert reset_a["epoch"] == 1 and reset_a["last_seq"] == first.seq + 1
        later = await on_a.publish(token("c4", "later"))
        await until(lambda: got_a[-1].seq == later.seq and got_b[-1].seq == later.seq)
        assert [f.seq for f in got_a] == [f.seq for f in got_b] == [first.seq, 0, later.seq]
        resumed: list[Frame] = []
        again = await on_b.subscribe("c4", resumed.append, after_seq=first.seq, epoch=1)
        assert [f.type for f in resumed] == [HISTORY_RESET]
        for sub in (sub_a, sub_b, again):
            sub.close()
    finally:
        await a.close()
        await b.close()


async def test_a_retried_publish_is_published_once(redis_server: RedisServer) -> None:
    """The first try of a publish may have run with its reply lost: the retry finds its id
    in the log and answers the same seq."""
    broker = await started(redis_server.url)
    try:
        await broker.open_stream("c5", 1, 0)
        keys = ["rt:{c5}:s", "rt:{c5}:log", "rt:{c5}:c"]
        body = token("c5").body

        def args(publish_id: str, retry: str) -> list[Any]:
            return ["run.token", body, 20, 100, 60, "PUBLISH", publish_id, retry]

        first = await broker._publish(keys=keys, args=args("n:1", "0"))
        other = await broker._publish(keys=keys, args=args("n:2", "0"))
        again = await broker._publish(keys=keys, args=args("n:1", "1"))
        assert (first, other, again) == (1, 2, 1)
        assert [f.seq for f in (await broker.read_log("c5", 0)).frames] == [1, 2]
    finally:
        await broker.close()


async def test_a_lost_stream_signal_resets_a_subscription_once() -> None:
    """Streams' side of the signal, on the memory broker: the subscription holds live frames
    while it reopens, sends one history.reset, then only frames after it."""
    broker = MemoryBroker()
    streams = Streams(broker, SeqStore(), block=8)
    got: list[Frame] = []
    sub = await streams.subscribe("c6", got.append)
    await streams.publish(token("c6"))
    broker._fanout.deliver("c6", LOST_FRAME)
    broker._fanout.deliver("c6", LOST_FRAME)  # a second signal while reloading: once more
    await streams.publish(token("c6"))
    await until(lambda: len(resets(got)) == 2)
    await streams.publish(token("c6"))
    assert [f.type for f in got] == ["run.token", HISTORY_RESET, HISTORY_RESET, "run.token"]
    assert [f.seq for f in got] == [1, 0, 0, 3]
    sub.close()


async def test_open_waits_for_the_publishes_under_way() -> None:
    """A run adds a token to its text before publishing it: a history read (open, then the
    text) while that publish waits for Redis must count it in last_seq."""

    class SlowBroker(MemoryBroker):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()
            self.gate.set()

        async def publish(self, event: events.Event) -> Frame:
            await self.gate.wait()
            return await super().publish(event)

    broker = SlowBroker()
    streams = Streams(broker, SeqStore(), block=8)
    await streams.publish(token("c7"))
    broker.gate.clear()
    publishing = asyncio.create_task(streams.publish(token("c7")))
    opening = asyncio.create_task(streams.open("c7"))
    await asyncio.sleep(0.1)
    assert not opening.done()
    broker.gate.set()
    state = await opening
    assert state.last_seq == (await publishing).seq == 2
