"""The Redis broker: several nodes share live events and the replay log.

Per conversation ``C`` (keys carry the hash tag ``{C}`` so a cluster keeps them on one slot):

- ``<prefix>{C}:s`` a hash ``{seq, epoch}``: the stream's counter;
- ``<prefix>{C}:log`` a Stream of the latest events, entry id ``<seq>-0``, bounded by
  ``MAXLEN ~`` and an idle TTL;
- ``<prefix>{C}:c`` the pub/sub channel (sharded pub/sub on a cluster).

Publishing is one Lua script: it increments ``seq``, splices it into the encoded event,
appends to the log and publishes, atomically, so pub/sub order is seq order across nodes.
Each node has one pub/sub connection: it subscribes to a conversation's channel when its
first local listener arrives (waiting for Redis to confirm, so a subscription's log read
cannot miss an event) and unsubscribes after the last leaves. When that connection drops,
redis-py reconnects and resubscribes; on each re-confirmation the node reads the log from the
last seq it delivered, so local listeners see no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from realtime.broker.base import Fanout, Listener, LogRead, StreamMissing, StreamState
from realtime.events import Event, Frame, frame_text
from realtime.periodic import stop_task

log = logging.getLogger("realtime.broker.redis")

_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local body, cut = ARGV[2], tonumber(ARGV[3])
local text
if string.sub(body, cut, cut) == ',' then
  text = string.sub(body, 1, cut) .. '"seq":' .. seq .. ',' .. string.sub(body, cut + 1)
else
  text = string.sub(body, 1, -2) .. ',"seq":' .. seq .. '}'
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 't', ARGV[1], 'd', text)
redis.call(ARGV[6], KEYS[3], seq .. ' ' .. ARGV[1] .. ' ' .. text)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return seq
"""

_OPEN = """
if redis.call('HSETNX', KEYS[1], 'seq', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'epoch', 'seq')
"""


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "rt:",
        replay_events: int = 4096,
        idle_ttl: float = 3600.0,
        sharded: bool = False,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._maxlen = replay_events
        self._ttl = max(1, int(idle_ttl))
        self._sharded = sharded
        self._redis: Any = None  # redis.asyncio.Redis (its stubs are loose)
        self._pubsub: Any = None
        self._fanout = Fanout()
        self._confirmed: dict[str, asyncio.Future[None]] = {}  # channel -> subscribed
        self._delivered: dict[str, int] = {}  # conversation -> last seq delivered locally
        self._reader: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._connected = True
        self._publish: Any = None
        self._open: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._redis = redis.Redis.from_url(self._url, decode_responses=True)
        await self._redis.ping()
        self._publish = self._redis.register_script(_PUBLISH)
        self._open = self._redis.register_script(_OPEN)
        self._pubsub = self._redis.pubsub()
        self._reader = asyncio.create_task(self._read_forever(), name="redis-broker-reader")

    async def close(self) -> None:
        await stop_task(self._reader)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    def healthy(self) -> bool:
        return self._connected

    # -- keys --------------------------------------------------------------------------------

    def _keys(self, conversation_id: str) -> tuple[str, str, str]:
        base = f"{self._prefix}{{{conversation_id}}}"
        return f"{base}:s", f"{base}:log", f"{base}:c"

    def _conversation_of(self, channel: str) -> str:
        return channel[len(self._prefix) + 1 : -3]

    # -- streams -----------------------------------------------------------------------------

    async def open_stream(self, conversation_id: str, epoch: int, start_seq: int) -> StreamState:
        state_key, _, _ = self._keys(conversation_id)
        got_epoch, got_seq = await self._open(keys=[state_key], args=[epoch, start_seq, self._ttl])
        return await self._state(conversation_id, int(got_epoch), int(got_seq))

    async def stream_state(self, conversation_id: str) -> StreamState | None:
        assert self._redis is not None
        state_key, _, _ = self._keys(conversation_id)
        epoch, seq = await self._redis.hmget(state_key, ["epoch", "seq"])
        if epoch is None or seq is None:
            return None
        return await self._state(conversation_id, int(epoch), int(seq))

    async def _state(self, conversation_id: str, epoch: int, seq: int) -> StreamState:
        assert self._redis is not None
        _, log_key, _ = self._keys(conversation_id)
        oldest = await self._redis.xrange(log_key, count=1)
        first = int(oldest[0][0].split("-")[0]) if oldest else seq + 1
        return StreamState(epoch, seq, first)

    async def publish(self, event: Event) -> Frame:
        state_key, log_key, channel = self._keys(event.conversation_id)
        seq = await self._publish(
            keys=[state_key, log_key, channel],
            args=[
                event.type,
                event.body,
                len(event.type) + 11,
                self._maxlen,
                self._ttl,
                "SPUBLISH" if self._sharded else "PUBLISH",
            ],
        )
        if seq is None:
            raise StreamMissing(event.conversation_id)
        return Frame(int(seq), event.type, frame_text(event.type, event.body, int(seq)))

    async def publish_ephemeral(self, event: Event) -> None:
        assert self._redis is not None
        _, _, channel = self._keys(event.conversation_id)
        payload = f"0 {event.type} {event.body.decode()}"
        if self._sharded:
            await self._redis.execute_command("SPUBLISH", channel, payload)
        else:
            await self._redis.publish(channel, payload)

    async def read_log(self, conversation_id: str, after_seq: int) -> LogRead:
        state = await self.stream_state(conversation_id)
        if state is None:
            raise StreamMissing(conversation_id)
        if after_seq >= state.last_seq:
            return LogRead(state)
        if after_seq + 1 < state.first_seq:
            return LogRead(state, complete=False)
        frames = await self._log_after(conversation_id, after_seq)
        if frames and frames[0].seq != after_seq + 1:  # trimmed meanwhile
            return LogRead(state, complete=False)
        return LogRead(state, frames)

    async def _log_after(self, conversation_id: str, after_seq: int) -> list[Frame]:
        assert self._redis is not None
        _, log_key, _ = self._keys(conversation_id)
        entries = await self._redis.xrange(log_key, min=f"{after_seq + 1}-0")
        return [Frame(int(i.split("-")[0]), f["t"], f["d"]) for i, f in entries]

    # -- listeners ---------------------------------------------------------------------------

    async def listen(self, conversation_id: str, listener: Listener) -> None:
        """Register a local listener; the first one waits until Redis confirms the channel."""
        first = self._fanout.add(conversation_id, listener)
        _, _, channel = self._keys(conversation_id)
        if first:
            future = asyncio.get_running_loop().create_future()
            self._confirmed[channel] = future
            try:
                if self._sharded:
                    await self._pubsub.ssubscribe(channel)
                else:
                    await self._pubsub.subscribe(channel)
                self._wake.set()
                await asyncio.wait_for(asyncio.shield(future), 10)
            except BaseException:
                self._fanout.remove(conversation_id, listener)
                self._confirmed.pop(channel, None)
                raise
        else:
            pending = self._confirmed.get(channel)
            if pending is not None and not pending.done():
                await asyncio.shield(pending)

    def unlisten(self, conversation_id: str, listener: Listener) -> None:
        if self._fanout.remove(conversation_id, listener):
            _, _, channel = self._keys(conversation_id)
            self._confirmed.pop(channel, None)
            self._delivered.pop(conversation_id, None)
            task = asyncio.get_running_loop().create_task(self._unsubscribe(channel))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _unsubscribe(self, channel: str) -> None:
        if channel in self._confirmed:  # listened to again meanwhile
            return
        with contextlib.suppress(RedisError, OSError):
            if self._sharded:
                await self._pubsub.sunsubscribe(channel)
            else:
                await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        while True:
            if not self._pubsub.subscribed:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                message = await self._pubsub.get_message(timeout=None)
                self._connected = True
            except (RedisError, OSError) as exc:
                self._connected = False
                log.warning("redis pub/sub connection lost: %s; reconnecting", exc)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            kind = message["type"]
            if kind in ("message", "smessage"):
                self._deliver(message["channel"], message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                await self._confirm(message["channel"])

    async def _confirm(self, channel: str) -> None:
        future = self._confirmed.get(channel)
        if future is None:
            return
        if not future.done():
            future.set_result(None)
            return
        # A re-confirmation after a reconnect: deliver what was published meanwhile.
        conversation_id = self._conversation_of(channel)
        last = self._delivered.get(conversation_id)
        if last is None:
            return
        try:
            missed = await self._log_after(conversation_id, last)
        except (RedisError, OSError):
            return
        for frame in missed:
            self._deliver_frame(conversation_id, frame)

    def _deliver(self, channel: str, data: str) -> None:
        seq, kind, text = data.split(" ", 2)
        self._deliver_frame(self._conversation_of(channel), Frame(int(seq), kind, text))

    def _deliver_frame(self, conversation_id: str, frame: Frame) -> None:
        if frame.seq:
            if frame.seq <= self._delivered.get(conversation_id, 0):
                return
            self._delivered[conversation_id] = frame.seq
        self._fanout.deliver(conversation_id, frame)
