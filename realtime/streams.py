"""Conversation streams over a broker: seqs that never repeat, and gapless subscriptions.

``seq`` must never repeat for a conversation, even when the broker forgets everything (a
restart of this process, or of a Redis that keeps nothing on disk). The store keeps a
*reservation* per conversation, ``seq_hwm``: no seq above it has been issued. When a stream
is opened after its log was lost, it starts at ``seq_hwm`` with ``epoch + 1`` and reserves
the next block before publishing. While publishing, the reservation is pushed ahead when
``seq`` comes within half a block of it. So a crash can skip seqs but never reuse one, and
the epoch tells clients that the log before it is gone (DECISIONS 9).

A :class:`Subscription` delivers a conversation's frames to one sink, starting after a given
seq: it registers its listener first, buffers live frames while it reads the log, then
delivers the log followed by the buffered frames it has not already delivered. When the log
no longer holds the requested events, the sink gets a ``history.reset`` frame instead and
live frames continue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import orjson

from realtime.broker.base import Broker, StreamMissing, StreamState
from realtime.events import Event, Frame

log = logging.getLogger("realtime.streams")

HISTORY_RESET = "history.reset"
SEQ_BLOCK = 256


class SeqStore(Protocol):
    async def stream_cursor(self, conversation_id: str) -> tuple[int, int]:
        """(epoch, seq_hwm) of a conversation."""
        ...

    async def save_stream_cursor(self, conversation_id: str, epoch: int, seq_hwm: int) -> None:
        """Persist the epoch and raise the reservation (never lowers it)."""
        ...


class Streams:
    def __init__(self, broker: Broker, store: SeqStore, *, block: int = SEQ_BLOCK) -> None:
        self.broker = broker
        self._store = store
        self._block = block
        self._reserved: dict[str, int] = {}  # conversation -> seq_hwm we persisted
        self._opening: dict[str, asyncio.Future[StreamState]] = {}

    async def open(self, conversation_id: str) -> StreamState:
        """Make sure the broker holds the conversation's stream; return its state."""
        state = await self.broker.stream_state(conversation_id)
        if state is not None:
            if conversation_id not in self._reserved:
                await self._reserve(conversation_id, state.epoch, state.last_seq)
            return state
        pending = self._opening.get(conversation_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[StreamState] = asyncio.get_running_loop().create_future()
        self._opening[conversation_id] = future
        try:
            state = await self._open_lost(conversation_id)
            future.set_result(state)
            return state
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._opening[conversation_id]

    async def _open_lost(self, conversation_id: str) -> StreamState:
        epoch, hwm = await self._store.stream_cursor(conversation_id)
        if hwm > 0:
            epoch += 1  # events up to hwm may have existed and the log is gone
        await self._store.save_stream_cursor(conversation_id, epoch, hwm + self._block)
        self._reserved[conversation_id] = hwm + self._block
        state = await self.broker.open_stream(conversation_id, epoch, hwm)
        if state.epoch != epoch:  # another node opened it first; adopt its reservation
            await self._reserve(conversation_id, state.epoch, state.last_seq)
        return state

    async def _reserve(self, conversation_id: str, epoch: int, seq: int) -> None:
        hwm = seq + self._block
        await self._store.save_stream_cursor(conversation_id, epoch, hwm)
        self._reserved[conversation_id] = hwm

    async def publish(self, event: Event) -> Frame:
        """Publish with the next seq, reopening the stream if the broker lost it."""
        cid = event.conversation_id
        if cid not in self._reserved:
            await self.open(cid)
        try:
            frame = await self.broker.publish(event)
        except StreamMissing:
            self._reserved.pop(cid, None)
            await self.open(cid)
            frame = await self.broker.publish(event)
        reserved = self._reserved.get(cid, 0)
        if frame.seq > reserved - self._block // 2:
            state = await self.broker.stream_state(cid)
            await self._reserve(cid, state.epoch if state else 1, frame.seq)
        return frame

    async def publish_ephemeral(self, event: Event) -> None:
        await self.broker.publish_ephemeral(event)

    def forget(self, conversation_id: str) -> None:
        self._reserved.pop(conversation_id, None)

    async def subscribe(
        self,
        conversation_id: str,
        sink: Callable[[Frame], None],
        *,
        after_seq: int | None = None,
        epoch: int | None = None,
        replay_sink: Callable[[Frame], None] | None = None,
    ) -> Subscription:
        """Deliver the conversation's frames to ``sink``: those after ``after_seq``, then live.

        ``after_seq=None`` means live only. A resume whose events the log no longer holds,
        or whose ``epoch`` is not the stream's, gets a ``history.reset`` frame first.
        """
        state = await self.open(conversation_id)
        sub = Subscription(self.broker, conversation_id, sink, replay_sink or sink)
        await self.broker.listen(conversation_id, sub.on_frame)
        try:
            if after_seq is None:
                sub.go_live(state.last_seq)
                return sub
            if epoch is not None and epoch != state.epoch:
                sub.reset(state)
                return sub
            try:
                read = await self.broker.read_log(conversation_id, after_seq)
            except StreamMissing:
                state = await self.open(conversation_id)
                sub.reset(state)
                return sub
            if not read.complete:
                sub.reset(read.state)
                return sub
            sub.replay(read.frames, after_seq)
            return sub
        except BaseException:
            sub.close()
            raise


class Subscription:
    """One sink's view of a conversation stream. Call :meth:`close` when done."""

    __slots__ = (
        "_broker",
        "conversation_id",
        "_sink",
        "_replay_sink",
        "_buffer",
        "last_seq",
        "closed",
    )

    def __init__(
        self,
        broker: Broker,
        conversation_id: str,
        sink: Callable[[Frame], None],
        replay_sink: Callable[[Frame], None],
    ) -> None:
        self._broker = broker
        self.conversation_id = conversation_id
        self._sink = sink
        self._replay_sink = replay_sink
        self._buffer: list[Frame] | None = []  # None once live
        self.last_seq = 0
        self.closed = False

    def on_frame(self, frame: Frame) -> None:
        if self._buffer is not None:
            self._buffer.append(frame)
        elif frame.seq == 0 or frame.seq > self.last_seq:
            if frame.seq:
                self.last_seq = frame.seq
            self._sink(frame)

    def go_live(self, after_seq: int) -> None:
        """Skip the log: deliver buffered and future frames after ``after_seq``."""
        buffered, self._buffer = self._buffer or [], None
        self.last_seq = after_seq
        for frame in buffered:
            self.on_frame(frame)

    def replay(self, frames: list[Frame], after_seq: int) -> None:
        self.last_seq = after_seq
        for frame in frames:
            if frame.seq > self.last_seq:
                self.last_seq = frame.seq
                self._replay_sink(frame)
        self.go_live(self.last_seq)

    def reset(self, state: StreamState) -> None:
        """Tell the sink to reload history, then go live after the log's last seq."""
        text = orjson.dumps(
            {
                "type": HISTORY_RESET,
                "conversation_id": self.conversation_id,
                "epoch": state.epoch,
                "last_seq": state.last_seq,
            }
        ).decode()
        self._sink(Frame(0, HISTORY_RESET, text))
        self.go_live(state.last_seq)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._broker.unlisten(self.conversation_id, self.on_frame)
