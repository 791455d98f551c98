"""The embedded broker: everything in this process, for a single node.

Each conversation's stream is a counter and a ring buffer of the latest frames. Publishing
is synchronous under the hood (no await between assigning a seq and delivering it), so
frames reach listeners in seq order. Streams idle longer than ``idle_ttl`` with no listener
are dropped; the next publish then raises :class:`StreamMissing` and the stream is reopened
with a new epoch, exactly as after a restart.
"""

from __future__ import annotations

import time
from collections import deque

from realtime.broker.base import Fanout, Listener, LogRead, StreamMissing, StreamState
from realtime.events import Event, Frame, to_frame
from realtime.periodic import Periodic


class _Stream:
    __slots__ = ("epoch", "seq", "ring", "touched")

    def __init__(self, epoch: int, start_seq: int, size: int) -> None:
        self.epoch = epoch
        self.seq = start_seq
        self.ring: deque[Frame] = deque(maxlen=size)
        self.touched = time.monotonic()

    def state(self) -> StreamState:
        first = self.ring[0].seq if self.ring else self.seq + 1
        return StreamState(self.epoch, self.seq, first)


class MemoryBroker:
    def __init__(self, *, replay_events: int = 4096, idle_ttl: float = 3600.0) -> None:
        self._size = replay_events
        self._idle_ttl = idle_ttl
        self._streams: dict[str, _Stream] = {}
        self._fanout = Fanout()
        self._sweeper = Periodic("broker-sweeper", min(60.0, idle_ttl), self._sweep_async)

    async def start(self) -> None:
        if self._idle_ttl > 0:
            self._sweeper.start()

    async def close(self) -> None:
        await self._sweeper.stop()

    def healthy(self) -> bool:
        return True

    async def open_stream(self, conversation_id: str, epoch: int, start_seq: int) -> StreamState:
        stream = self._streams.get(conversation_id)
        if stream is None:
            stream = self._streams[conversation_id] = _Stream(epoch, start_seq, self._size)
        return stream.state()

    async def stream_state(self, conversation_id: str) -> StreamState | None:
        stream = self._streams.get(conversation_id)
        return stream.state() if stream is not None else None

    async def publish(self, event: Event) -> Frame:
        stream = self._streams.get(event.conversation_id)
        if stream is None:
            raise StreamMissing(event.conversation_id)
        stream.seq += 1
        frame = to_frame(event, stream.seq)
        stream.ring.append(frame)
        stream.touched = time.monotonic()
        self._fanout.deliver(event.conversation_id, frame)
        return frame

    async def publish_ephemeral(self, event: Event) -> None:
        self._fanout.deliver(event.conversation_id, Frame(0, event.type, event.body.decode()))

    async def read_log(self, conversation_id: str, after_seq: int) -> LogRead:
        stream = self._streams.get(conversation_id)
        if stream is None:
            raise StreamMissing(conversation_id)
        state = stream.state()
        if after_seq >= state.last_seq:
            return LogRead(state)
        if after_seq + 1 < state.first_seq:
            return LogRead(state, complete=False)
        # The ring is contiguous: the frame after `after_seq` sits at a known offset.
        start = after_seq + 1 - state.first_seq
        frames = [stream.ring[i] for i in range(start, len(stream.ring))]
        return LogRead(state, frames)

    async def listen(self, conversation_id: str, listener: Listener) -> None:
        self._fanout.add(conversation_id, listener)

    def unlisten(self, conversation_id: str, listener: Listener) -> None:
        self._fanout.remove(conversation_id, listener)

    def sweep(self, now: float | None = None) -> int:
        """Drop streams idle longer than the TTL that nobody listens to; return how many."""
        now = time.monotonic() if now is None else now
        idle = [
            cid
            for cid, s in self._streams.items()
            if now - s.touched > self._idle_ttl and not self._fanout.has(cid)
        ]
        for cid in idle:
            del self._streams[cid]
        return len(idle)

    async def _sweep_async(self) -> None:
        self.sweep()
