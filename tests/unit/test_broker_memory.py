"""MemoryBroker + Streams: seqs never repeat, replay logs are exact, subscriptions are gapless.

Examples first, then a Hypothesis state machine that publishes, subscribes, reads logs and
loses streams (a process restart, the idle sweep) against a model of what must be seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from realtime import events
from realtime.broker.base import StreamMissing, StreamState
from realtime.broker.memory import MemoryBroker
from realtime.events import Frame
from realtime.streams import HISTORY_RESET, Streams, Subscription

T = TypeVar("T")

CONVERSATIONS = ("c1", "c2", "c3")
IDLE_TTL = 10.0


class FakeSeqStore:
    """The SeqStore interface over a dict, with the real store's semantics.

    A conversation starts at ``(epoch 1, seq_hwm 0)``; saving sets the epoch and raises the
    reservation, never lowering it.
    """

    def __init__(self) -> None:
        self.cursors: dict[str, tuple[int, int]] = {}
        self.saves = 0

    async def stream_cursor(self, conversation_id: str) -> tuple[int, int]:
        return self.cursors.get(conversation_id, (1, 0))

    async def save_stream_cursor(self, conversation_id: str, epoch: int, seq_hwm: int) -> None:
        _, old = self.cursors.get(conversation_id, (1, 0))
        self.cursors[conversation_id] = (epoch, max(old, seq_hwm))
        self.saves += 1


def token(conversation_id: str, delta: str = "x") -> events.Event:
    return events.run_token(conversation_id, "r1", delta)


# --------------------------------------------------------------------------- examples


def test_publish_requires_an_open_stream() -> None:
    async def main() -> None:
        broker = MemoryBroker()
        with pytest.raises(StreamMissing):
            await broker.publish(token("c"))
        with pytest.raises(StreamMissing):
            await broker.read_log("c", 0)
        assert await broker.stream_state("c") is None
        assert await broker.open_stream("c", 3, 10) == StreamState(3, 10, 11)
        # opening again keeps the existing stream
        assert await broker.open_stream("c", 9, 99) == StreamState(3, 10, 11)
        frame = await broker.publish(token("c"))
        assert frame.seq == 11
        assert await broker.stream_state("c") == StreamState(3, 11, 11)

    asyncio.run(main())


def test_read_log_ring_buffer() -> None:
    async def main() -> None:
        broker = MemoryBroker(replay_events=3)
        await broker.open_stream("c", 1, 0)
        frames = [await broker.publish(token("c", str(i))) for i in range(5)]
        assert [f.seq for f in frames] == [1, 2, 3, 4, 5]
        read = await broker.read_log("c", 2)
        assert read.complete and read.frames == frames[2:]
        read = await broker.read_log("c", 4)
        assert read.complete and read.frames == frames[4:]
        read = await broker.read_log("c", 5)
        assert read.complete and read.frames == []
        read = await broker.read_log("c", 1)  # seq 2 is gone
        assert not read.complete
        assert read.state == StreamState(1, 5, 3)

    asyncio.run(main())


def test_listeners_get_frames_and_a_broken_one_does_not_starve_others() -> None:
    async def main() -> None:
        broker = MemoryBroker()
        await broker.open_stream("c", 1, 0)
        got: list[Frame] = []

        def broken(frame: Frame) -> None:
            raise RuntimeError("boom")

        await broker.listen("c", broken)
        await broker.listen("c", got.append)
        first = await broker.publish(token("c"))
        await broker.publish_ephemeral(events.typing("c", "agent", True))
        broker.unlisten("c", got.append)
        await broker.publish(token("c"))
        assert [f.seq for f in got] == [first.seq, 0]
        assert got[1].type == "typing"

    asyncio.run(main())


def test_sweep_drops_only_idle_unlistened_streams() -> None:
    async def main() -> None:
        broker = MemoryBroker(idle_ttl=10.0)
        for cid in ("a", "b", "c"):
            await broker.open_stream(cid, 1, 0)
        await broker.listen("b", lambda frame: None)
        now = time.monotonic()
        assert broker.sweep(now) == 0  # not idle yet
        assert broker.sweep(now + 11) == 2
        assert await broker.stream_state("a") is None
        assert await broker.stream_state("b") is not None
        assert await broker.stream_state("c") is None

    asyncio.run(main())


def test_streams_reopen_with_a_new_epoch_above_every_issued_seq() -> None:
    async def main() -> None:
        store = FakeSeqStore()
        streams = Streams(MemoryBroker(), store, block=8)
        seqs = [(await streams.publish(token("c"))).seq for _ in range(10)]
        assert seqs == list(range(1, 11))
        epoch, hwm = store.cursors["c"]
        assert epoch == 1 and hwm >= 10
        # restart: a new broker and new Streams over the same store
        streams = Streams(MemoryBroker(), store, block=8)
        frame = await streams.publish(token("c"))
        assert frame.seq == hwm + 1
        assert (await streams.broker.stream_state("c")).epoch == 2  # type: ignore[union-attr]

    asyncio.run(main())


def test_a_new_conversation_starts_at_epoch_1_seq_1() -> None:
    async def main() -> None:
        streams = Streams(MemoryBroker(), FakeSeqStore())
        state = await streams.open("c")
        assert state == StreamState(1, 0, 1)
        assert (await streams.publish(token("c"))).seq == 1

    asyncio.run(main())


def test_resume_with_a_stale_epoch_gets_history_reset() -> None:
    async def main() -> None:
        streams = Streams(MemoryBroker(), FakeSeqStore())
        for _ in range(3):
            await streams.publish(token("c"))
        got: list[Frame] = []
        sub = await streams.subscribe("c", got.append, after_seq=1, epoch=7)
        assert [f.type for f in got] == [HISTORY_RESET]
        assert orjson.loads(got[0].text) == {
            "type": HISTORY_RESET,
            "conversation_id": "c",
            "epoch": 1,
            "last_seq": 3,
        }
        frame = await streams.publish(token("c"))
        assert got[1] == frame
        sub.close()
        sub.close()  # idempotent

    asyncio.run(main())


def test_concurrent_opens_of_a_lost_stream_share_one_epoch() -> None:
    class SlowStore(FakeSeqStore):
        async def stream_cursor(self, conversation_id: str) -> tuple[int, int]:
            await asyncio.sleep(0)
            return await super().stream_cursor(conversation_id)

    async def main() -> None:
        store = SlowStore()
        store.cursors["c"] = (4, 100)
        streams = Streams(MemoryBroker(), store)
        frames = await asyncio.gather(*(streams.publish(token("c")) for _ in range(5)))
        assert sorted(f.seq for f in frames) == [101, 102, 103, 104, 105]
        assert (await streams.broker.stream_state("c")).epoch == 5  # type: ignore[union-attr]
        assert store.cursors["c"][0] == 5

    asyncio.run(main())


# --------------------------------------------------------------------------- state machine


@dataclass
class Incarnation:
    """One life of a conversation's stream in one broker."""

    epoch: int
    start: int
    ring_size: int
    frames: list[Frame] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.start + len(self.frames)

    @property
    def ring(self) -> list[Frame]:
        return self.frames[-self.ring_size :]

    @property
    def first(self) -> int:
        return self.ring[0].seq if self.ring else self.last + 1


Seen = tuple[str, int, str, Any]  # (sink, seq, type, parsed body)


def seen(sink: str, frame: Frame) -> Seen:
    return (sink, frame.seq, frame.type, orjson.loads(frame.text))


@dataclass
class SubRecord:
    conversation_id: str
    received: list[Seen] = field(default_factory=list)
    expected: list[Seen] = field(default_factory=list)
    sub: Subscription | None = None
    open: bool = True


class StreamsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = FakeSeqStore()
        self.ring_size = 4
        self.block = 4
        self.broker: MemoryBroker | None = None
        self.streams: Streams | None = None
        self.live: dict[str, Incarnation] = {}  # streams the broker holds
        self.issued: dict[str, set[int]] = {cid: set() for cid in CONVERSATIONS}
        self.subs: list[SubRecord] = []

    def run(self, coro: Awaitable[T]) -> T:
        async def main() -> T:
            return await coro

        return self.loop.run_until_complete(main())

    def teardown(self) -> None:
        for rec in self.subs:
            if rec.open and rec.sub is not None:
                rec.sub.close()
        self.loop.close()

    def boot(self) -> None:
        self.broker = MemoryBroker(replay_events=self.ring_size, idle_ttl=IDLE_TTL)
        self.streams = Streams(self.broker, self.store, block=self.block)

    @initialize(ring_size=st.integers(1, 6), block=st.sampled_from([2, 3, 4, 8, 256]))
    def start(self, ring_size: int, block: int) -> None:
        self.ring_size = ring_size
        self.block = block
        self.boot()

    # -- opening --------------------------------------------------------------------------

    def cursor_before(self, cid: str) -> tuple[int, int] | None:
        """The store's cursor when the stream is lost (the next use reopens it)."""
        if cid in self.live:
            return None
        return self.store.cursors.get(cid, (1, 0))

    def expected_after_open(self, cid: str) -> tuple[int, int]:
        """(epoch, last_seq) the stream has once opened."""
        if cid in self.live:
            inc = self.live[cid]
            return inc.epoch, inc.last
        epoch, hwm = self.store.cursors.get(cid, (1, 0))
        return (epoch + 1 if hwm > 0 else epoch), hwm

    def check_reopened(self, cid: str, before: tuple[int, int] | None) -> Incarnation:
        """After an operation that opens: the epoch rule, and a new incarnation in the model."""
        if before is not None:
            old_epoch, hwm = before
            state = self.run(self.broker.stream_state(cid))  # type: ignore[union-attr]
            assert state is not None
            # the epoch increases exactly when the lost stream had reserved seqs
            assert state.epoch == (old_epoch + 1 if hwm > 0 else old_epoch)
            assert self.store.cursors[cid][0] == state.epoch
            self.live[cid] = Incarnation(state.epoch, hwm, self.ring_size)
        return self.live[cid]

    # -- rules ----------------------------------------------------------------------------

    @rule(cid=st.sampled_from(CONVERSATIONS), delta=st.text(max_size=4))
    def publish(self, cid: str, delta: str) -> None:
        assert self.streams is not None
        before = self.cursor_before(cid)
        event = token(cid, delta)
        frame = self.run(self.streams.publish(event))
        inc = self.check_reopened(cid, before)
        # within one incarnation seqs increase by exactly one, from the reservation
        assert frame.seq == inc.last + 1
        assert frame.seq not in self.issued[cid], "a seq was issued twice"
        self.issued[cid].add(frame.seq)
        assert frame.type == events.RUN_TOKEN
        assert orjson.loads(frame.text) == {**orjson.loads(event.body), "seq": frame.seq}
        inc.frames.append(frame)
        for rec in self.subs:
            if rec.open and rec.conversation_id == cid:
                rec.expected.append(seen("live", frame))

    @rule(cid=st.sampled_from(CONVERSATIONS))
    def publish_typing(self, cid: str) -> None:
        assert self.streams is not None
        event = events.typing(cid, "agent", True)
        self.run(self.streams.publish_ephemeral(event))
        for rec in self.subs:
            if rec.open and rec.conversation_id == cid:
                rec.expected.append(("live", 0, "typing", orjson.loads(event.body)))

    @rule(cid=st.sampled_from(CONVERSATIONS), data=st.data())
    def subscribe(self, cid: str, data: st.DataObject) -> None:
        assert self.streams is not None
        before = self.cursor_before(cid)
        epoch_now, last_now = self.expected_after_open(cid)
        after_seq = data.draw(st.one_of(st.none(), st.integers(0, last_now)), label="after_seq")
        epoch = data.draw(
            st.sampled_from([None, epoch_now, epoch_now - 1, epoch_now + 1]), label="epoch"
        )
        rec = SubRecord(cid)
        rec.sub = self.run(
            self.streams.subscribe(
                cid,
                lambda frame: rec.received.append(seen("live", frame)),
                after_seq=after_seq,
                epoch=epoch,
                replay_sink=lambda frame: rec.received.append(seen("replay", frame)),
            )
        )
        inc = self.check_reopened(cid, before)
        assert (inc.epoch, inc.last) == (epoch_now, last_now)
        reset: Seen = (
            "live",
            0,
            HISTORY_RESET,
            {
                "type": HISTORY_RESET,
                "conversation_id": cid,
                "epoch": inc.epoch,
                "last_seq": inc.last,
            },
        )
        if after_seq is None:
            pass  # live only
        elif epoch is not None and epoch != inc.epoch:
            rec.expected.append(reset)
        else:
            needed = range(after_seq + 1, inc.last + 1)
            held = {f.seq: f for f in inc.ring}
            if all(seq in held for seq in needed):
                rec.expected.extend(seen("replay", held[seq]) for seq in needed)
            else:
                rec.expected.append(reset)
        self.subs.append(rec)

    @precondition(lambda self: any(rec.open for rec in self.subs))
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        rec = data.draw(st.sampled_from([rec for rec in self.subs if rec.open]))
        assert rec.sub is not None
        rec.sub.close()
        assert rec.sub.closed
        rec.open = False

    @rule(cid=st.sampled_from(CONVERSATIONS), data=st.data())
    def read_log(self, cid: str, data: st.DataObject) -> None:
        assert self.broker is not None
        if cid not in self.live:
            with pytest.raises(StreamMissing):
                self.run(self.broker.read_log(cid, 0))
            return
        inc = self.live[cid]
        after = data.draw(st.integers(0, inc.last + 2), label="after")
        read = self.run(self.broker.read_log(cid, after))
        assert read.state == StreamState(inc.epoch, inc.last, inc.first)
        needed = range(after + 1, inc.last + 1)
        held = {f.seq: f for f in inc.ring}
        complete = all(seq in held for seq in needed)
        assert read.complete == complete
        if complete:
            assert read.frames == [held[seq] for seq in needed]
        else:
            # what comes back is still held, after `after`, and contiguous up to last_seq
            assert all(held.get(f.seq) == f and f.seq > after for f in read.frames)
            got = [f.seq for f in read.frames]
            assert got == list(range(inc.last - len(got) + 1, inc.last + 1))

    @rule()
    def restart(self) -> None:
        """The process restarts: connections and the in-memory broker are gone."""
        for rec in self.subs:
            if rec.open and rec.sub is not None:
                rec.sub.close()
                rec.open = False
        self.boot()
        self.live.clear()

    @rule()
    def restart_streams_only(self) -> None:
        """A new Streams over the same broker (another node, or Redis outliving the process)."""
        assert self.broker is not None
        self.streams = Streams(self.broker, self.store, block=self.block)

    @rule()
    def sweep(self) -> None:
        """Every stream is idle: the sweep drops those nobody listens to."""
        assert self.broker is not None
        listened = {rec.conversation_id for rec in self.subs if rec.open}
        dropped = self.broker.sweep(time.monotonic() + IDLE_TTL + 1)
        lost = [cid for cid in self.live if cid not in listened]
        assert dropped == len(lost)
        for cid in lost:
            del self.live[cid]

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def issued_seqs_are_reserved(self) -> None:
        for cid, seqs in self.issued.items():
            if seqs:
                assert self.store.cursors[cid][1] >= max(seqs)

    @invariant()
    def broker_matches_the_model(self) -> None:
        if self.broker is None:
            return
        for cid in CONVERSATIONS:
            state = self.run(self.broker.stream_state(cid))
            inc = self.live.get(cid)
            if inc is None:
                assert state is None
            else:
                assert state == StreamState(inc.epoch, inc.last, inc.first)
                assert self.store.cursors[cid][0] == inc.epoch

    @invariant()
    def subscriptions_are_gapless(self) -> None:
        for rec in self.subs:
            assert rec.received == rec.expected
            live = [s[1] for s in rec.received if s[1] > 0]
            assert live == sorted(set(live)), "in order, no duplicate"


StreamsMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)
TestStreamsMachine = StreamsMachine.TestCase
