"""The broker interface: per-conversation publish/subscribe with a bounded replay log.

A broker owns, per conversation, a *stream*: an ``epoch``, a ``seq`` counter and a log of
the latest events. It assigns each published event the next ``seq``, appends it to the log
and delivers it to every listener on every node. Listeners are local callables registered
with :meth:`Broker.listen`; the broker decides how frames reach other nodes (nothing to do
in memory; pub/sub with Redis).

A stream can vanish (idle TTL, Redis restart). Then :meth:`Broker.publish` raises
:class:`StreamMissing` and the caller reopens it above every ``seq`` ever issued, with a new
epoch (see :mod:`realtime.streams`). A broker that cannot reach its server waits for it a
bounded time (the outage grace), then raises :class:`BrokerUnavailable`; when it is back,
listeners of streams that lost events get a :data:`STREAM_LOST` frame. The interface is
shaped for Redis: ``publish`` is one script call (INCR + XADD + PUBLISH), ``read_log`` one
XRANGE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from realtime.errors import RunError
from realtime.events import Event, Frame

log = logging.getLogger("realtime.broker")

Listener = Callable[[Frame], None]

# A frame of this type (seq 0, no text) tells a conversation's listeners that the stream
# they follow lost events they did not get: Redis restarted empty, or its log no longer
# holds what this node missed while it was cut off. Listeners reload (``history.reset``,
# see :mod:`realtime.streams`); it never reaches a client as such.
STREAM_LOST = "stream.lost"
LOST_FRAME = Frame(0, STREAM_LOST, "")


class StreamMissing(Exception):
    """The broker holds no stream for this conversation: open it, then publish again."""


class BrokerUnavailable(RunError):
    """The broker could not be reached for longer than its outage grace: what was asked
    (a publish, a log read, a subscription) did not happen. A run it interrupts fails with
    this code; its text so far is stored."""

    code = "broker_unavailable"
    status = 503
    retryable = True

    def __init__(self, message: str = "the server cannot reach its broker; try again") -> None:
        super().__init__(None, message)


@dataclass(frozen=True, slots=True)
class StreamState:
    epoch: int
    last_seq: int  # the seq of the latest event (the start seq when none yet)
    first_seq: int  # the oldest seq the log still holds (last_seq + 1 when empty)


@dataclass(frozen=True, slots=True)
class LogRead:
    """The events after a cursor. ``complete`` is False when some of them are gone."""

    state: StreamState
    frames: list[Frame] = field(default_factory=list)
    complete: bool = True


class Broker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open_stream(self, conversation_id: str, epoch: int, start_seq: int) -> StreamState:
        """Create the stream at ``start_seq`` unless it exists; return its state either way."""
        ...

    async def stream_state(self, conversation_id: str) -> StreamState | None: ...

    async def publish(self, event: Event) -> Frame:
        """Assign the next seq, log the event and deliver it. Raises StreamMissing."""
        ...

    async def publish_ephemeral(self, event: Event) -> None:
        """Deliver without seq or log (typing indicators)."""
        ...

    async def read_log(self, conversation_id: str, after_seq: int) -> LogRead: ...

    async def listen(self, conversation_id: str, listener: Listener) -> None:
        """Register a local listener; returns once frames published from now on reach it."""
        ...

    def unlisten(self, conversation_id: str, listener: Listener) -> None: ...

    def healthy(self) -> bool: ...


class Fanout:
    """Local listeners per conversation; delivers a frame to each, isolating failures."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def add(self, conversation_id: str, listener: Listener) -> bool:
        """Register; True when this is the conversation's first local listener."""
        listeners = self._listeners.setdefault(conversation_id, [])
        listeners.append(listener)
        return len(listeners) == 1

    def remove(self, conversation_id: str, listener: Listener) -> bool:
        """Unregister; True when the conversation has no local listener left."""
        listeners = self._listeners.get(conversation_id)
        if not listeners:
            return False
        try:
            listeners.remove(listener)
        except ValueError:
            return False
        if not listeners:
            del self._listeners[conversation_id]
            return True
        return False

    def has(self, conversation_id: str) -> bool:
        return conversation_id in self._listeners

    def deliver(self, conversation_id: str, frame: Frame) -> None:
        listeners = self._listeners.get(conversation_id)
        if not listeners:
            return
        for listener in tuple(listeners):
            try:
                listener(frame)
            except Exception:  # one broken listener must not starve the others
                log.exception("listener failed on %s seq=%s", conversation_id, frame.seq)

    def __len__(self) -> int:
        return len(self._listeners)
