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

When Redis is away, the broker waits for it up to its outage grace, then gives up
(:class:`~realtime.broker.base.BrokerUnavailable`). Two things keep listeners from a silent
gap once it is back. A stream that lost events (Redis restarted empty, or its log no longer
holds what a node missed) gives each local listener a ``stream.lost`` frame: the
subscription holds live frames, reopens the stream (a new epoch if it is gone) and sends
its sink one ``history.reset``. An event that could not be published at all (the grace ran
out) leaves a *hole*: once Redis answers, a ``stream.hole`` marker is published in its place,
which every subscription, live or replaying, turns into a ``history.reset`` (unless the
stream itself was lost meanwhile: the reset for that covers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import orjson

from realtime.broker.backoff import backoff_delay
from realtime.broker.base import (
    STREAM_LOST,
    Broker,
    BrokerUnavailable,
    StreamMissing,
    StreamState,
)
from realtime.events import RUN_TOKEN, Event, Frame, make

log = logging.getLogger("realtime.streams")

HISTORY_RESET = "history.reset"
HOLE = "stream.hole"  # logged where events were dropped; subscriptions send history.reset
SEQ_BLOCK = 256
SETTLE_TIMEOUT = 30.0  # seconds an open() waits, at most, for publishes under way


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
        # conversation -> its epoch (None: unknown) when a publish of it gave up
        self._holes: dict[str, int | None] = {}
        self._healer: asyncio.Task[None] | None = None
        self._resets: set[asyncio.Task[None]] = set()  # subscriptions reloading a lost stream
        self._busy: dict[str, int] = {}  # conversation -> its publishes under way here
        self._watches: dict[str, list[_Watch]] = {}  # conversation -> open() calls settling

    async def open(self, conversation_id: str) -> StreamState:
        """Make sure the broker holds the conversation's stream; return its state.

        The state is *settled*: when this returns, no publish of the conversation is under
        way on this node and ``last_seq`` covers every seq it published. A history read at
        once after it (a run's text so far, then the messages) then reflects exactly the
        events up to ``last_seq``: a run's token is added to its text before it is published,
        and a publish can take a while (a busy or returning Redis), so reading the state
        while one is under way would count its token in the text but not in ``last_seq``,
        and the client would apply it twice. (It waits for a pause between publishes, at most
        ``SETTLE_TIMEOUT``; each publish is bounded by the broker's outage grace.)
        """
        watch = _Watch()
        self._watches.setdefault(conversation_id, []).append(watch)
        try:
            state = await self._open(conversation_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    while conversation_id in self._busy:
                        watch.idle.clear()
                        await watch.idle.wait()
            if watch.seq > state.last_seq:
                state = StreamState(state.epoch, watch.seq, state.first_seq)
            return state
        finally:
            watches = self._watches[conversation_id]
            watches.remove(watch)
            if not watches:
                del self._watches[conversation_id]

    async def _open(self, conversation_id: str) -> StreamState:
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
        """Publish with the next seq, reopening the stream if the broker lost it.

        Raises :class:`BrokerUnavailable` when the broker stayed away too long; the event is
        then lost and its listeners get a ``history.reset`` once the broker is back.
        """
        cid = event.conversation_id
        self._busy[cid] = self._busy.get(cid, 0) + 1
        try:
            if cid in self._holes:
                await self._close_hole(cid)
            try:
                frame = await self._publish(event)
            except BrokerUnavailable:
                if cid not in self._holes:
                    try:
                        epoch: int | None = (await self._store.stream_cursor(cid))[0]
                    except Exception:
                        epoch = None
                    self._holes.setdefault(cid, epoch)
                self._heal_later()
                raise
            for watch in self._watches.get(cid, ()):
                watch.seq = max(watch.seq, frame.seq)
            return frame
        finally:
            busy = self._busy.pop(cid) - 1
            if busy:
                self._busy[cid] = busy
            else:
                for watch in self._watches.get(cid, ()):
                    watch.idle.set()

    async def _publish(self, event: Event) -> Frame:
        cid = event.conversation_id
        if cid not in self._reserved:
            await self._open(cid)
        try:
            frame = await self.broker.publish(event)
        except StreamMissing:
            self._reserved.pop(cid, None)
            await self._open(cid)
            frame = await self.broker.publish(event)
        reserved = self._reserved.get(cid, 0)
        if frame.seq > reserved - self._block // 2:
            state = await self.broker.stream_state(cid)
            await self._reserve(cid, state.epoch if state else 1, frame.seq)
        return frame

    async def publish_ephemeral(self, event: Event) -> None:
        await self.broker.publish_ephemeral(event)

    async def run_text(
        self, conversation_id: str, run_id: str, up_to_seq: int | None = None
    ) -> str:
        """The text a run streamed, from the ``run.token`` events the log still holds (up to
        ``up_to_seq``): what a run of another node, or of a lost one, had said so far."""
        state = await self.broker.stream_state(conversation_id)
        if state is None:
            return ""
        read = await self.broker.read_log(conversation_id, state.first_seq - 1)
        parts: list[str] = []
        needle = f'"run_id":"{run_id}"'
        for frame in read.frames:
            if up_to_seq is not None and frame.seq > up_to_seq:
                break
            if frame.type == RUN_TOKEN and needle in frame.text:
                parts.append(orjson.loads(frame.text)["delta"])
        return "".join(parts)

    def forget(self, conversation_id: str) -> None:
        self._reserved.pop(conversation_id, None)

    async def close(self) -> None:
        """Stop the background work of outages (closing holes, reopening lost streams)."""
        tasks = [t for t in (self._healer, *self._resets) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- outages -------------------------------------------------------------------------

    async def _close_hole(self, conversation_id: str) -> None:
        """Log a hole marker where events of the conversation were dropped, unless its
        stream was lost since (a new epoch: everyone gets a reset for that already)."""
        epoch = self._holes.pop(conversation_id)
        try:
            state = await self.broker.stream_state(conversation_id)
            if state is None or (epoch is not None and state.epoch != epoch):
                return
            await self.broker.publish(make(HOLE, conversation_id, epoch=state.epoch))
        except StreamMissing:
            return
        except BaseException:
            self._holes.setdefault(conversation_id, epoch)
            self._heal_later()
            raise
        log.info("marked the events of %s lost while the broker was away", conversation_id)

    def _heal_later(self) -> None:
        if self._healer is None or self._healer.done():
            self._healer = asyncio.get_running_loop().create_task(self._heal(), name="streams-heal")

    async def _heal(self) -> None:
        """Close the holes as soon as the broker answers, even if nothing else is published
        in their conversations (a run that failed for want of Redis ends there)."""
        failures = 0
        while self._holes:
            failures += 1
            await asyncio.sleep(backoff_delay(failures))
            for cid in list(self._holes):
                if cid not in self._holes:
                    continue
                try:
                    await self._close_hole(cid)
                except Exception as exc:
                    log.debug("cannot mark the hole of %s yet: %s", cid, exc)
                    break

    def _stream_lost(self, sub: Subscription) -> None:
        task = asyncio.get_running_loop().create_task(self._reset_lost(sub))
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    async def _reset_lost(self, sub: Subscription) -> None:
        """Reopen a stream that lost events (a new epoch if it is gone) and reset ``sub``."""
        failures = 0
        while not sub.closed:
            try:
                state = await self._open(sub.conversation_id)
            except Exception as exc:
                failures += 1
                log.warning("cannot reopen the stream of %s: %s", sub.conversation_id, exc)
                await asyncio.sleep(backoff_delay(failures))
                continue
            if not sub.closed:
                sub.reset(state)
            return

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
        state = await self._open(conversation_id)
        sub = Subscription(
            self.broker,
            conversation_id,
            sink,
            replay_sink or sink,
            on_lost=self._stream_lost,
        )
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
                state = await self._open(conversation_id)
                sub.reset(state)
                return sub
            if not read.complete or any(f.type == HOLE for f in read.frames):
                sub.reset(read.state)
                return sub
            sub.replay(read.frames, after_seq)
            return sub
        except BaseException:
            sub.close()
            raise


class _Watch:
    """An :meth:`Streams.open` waiting for the conversation's publishes to settle."""

    __slots__ = ("seq", "idle")

    def __init__(self) -> None:
        self.seq = 0  # the highest seq published here while it waited
        self.idle = asyncio.Event()  # set when no publish of the conversation is under way


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
        "_on_lost",
        "_lost",
    )

    def __init__(
        self,
        broker: Broker,
        conversation_id: str,
        sink: Callable[[Frame], None],
        replay_sink: Callable[[Frame], None],
        *,
        on_lost: Callable[[Subscription], None] | None = None,
    ) -> None:
        self._broker = broker
        self.conversation_id = conversation_id
        self._sink = sink
        self._replay_sink = replay_sink
        self._buffer: list[Frame] | None = []  # None once live
        self.last_seq = 0
        self.closed = False
        self._on_lost = on_lost  # reopens the stream, then calls reset()
        self._lost = False  # the stream lost events while we were not live: reset once live

    def on_frame(self, frame: Frame) -> None:
        if frame.type == STREAM_LOST:
            self._stream_lost()
        elif self._buffer is not None:
            self._buffer.append(frame)
        elif frame.seq == 0 or frame.seq > self.last_seq:
            if frame.type == HOLE:
                epoch = orjson.loads(frame.text).get("epoch", 0)
                self.reset(StreamState(int(epoch), frame.seq, frame.seq + 1))
                return
            if frame.seq:
                self.last_seq = frame.seq
            self._sink(frame)

    def _stream_lost(self) -> None:
        """Hold live frames until the stream is reopened and the sink told to reload."""
        if self.closed or self._on_lost is None:
            return
        if self._buffer is not None:  # being set up, or reloading already: once live
            self._lost = True
            return
        self._buffer = []
        self._on_lost(self)

    def go_live(self, after_seq: int) -> None:
        """Skip the log: deliver buffered and future frames after ``after_seq``."""
        buffered, self._buffer = self._buffer or [], None
        self.last_seq = after_seq
        for frame in buffered:
            self.on_frame(frame)
        if self._lost:
            self._lost = False
            self._stream_lost()

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
