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
cannot miss an event) and unsubscribes after the last leaves.

When Redis is away (restarting, unreachable), the node keeps its WebSockets and serves what
needs no Redis; :meth:`RedisBroker.healthy` is False. The pub/sub reader reconnects with a
capped, jittered exponential backoff (:mod:`realtime.broker.backoff`), and redis-py
resubscribes every channel. On each re-confirmation the node reads the log from the last seq
it delivered: same stream, its local listeners get what they missed; a stream that is gone
(Redis restarted empty) or no longer holds it, they get one :data:`STREAM_LOST` frame and
reload. Commands (publishing, reading a log) wait for Redis up to ``outage_grace`` seconds,
woken as soon as the reader is back, then raise :class:`BrokerUnavailable`. A publish retried
after a lost reply is not published twice: each carries an id, kept in its log entry, that
the retry looks for first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.broker.backoff import backoff_delay
from realtime.broker.base import (
    LOST_FRAME,
    BrokerUnavailable,
    Fanout,
    Listener,
    LogRead,
    StreamMissing,
    StreamState,
)
from realtime.events import Event, Frame, frame_text
from realtime.periodic import stop_task

log = logging.getLogger("realtime.broker.redis")

T = TypeVar("T")

# What "Redis is not there" looks like: refused or dropped connections, silence.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
PROBE_INTERVAL = 1.0  # seconds of pub/sub silence after which the reader PINGs Redis
PROBE_TIMEOUT = 2.0  # a PING slower than this counts as Redis away
CONNECT_TIMEOUT = 5.0  # to open a connection to Redis
COMMAND_TIMEOUT = 5.0  # a reply slower than this counts as Redis away (the command is retried)

# ARGV[7] is the publish's id, stored in its log entry; ARGV[8] is '1' on a retry, which
# first looks for that id among the latest entries (the first try may have run, its reply
# lost) and answers its seq instead of publishing again.
_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[8] == '1' then
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 256)) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'i' and f[i + 1] == ARGV[7] then
        return tonumber(string.match(entry[1], '^%d+'))
      end
    end
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local body, cut = ARGV[2], tonumber(ARGV[3])
local text
if string.sub(body, cut, cut) == ',' then
  text = string.sub(body, 1, cut) .. '"seq":' .. seq .. ',' .. string.sub(body, cut + 1)
else
  text = string.sub(body, 1, -2) .. ',"seq":' .. seq .. '}'
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 't', ARGV[1], 'd', text,
  'i', ARGV[7])
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
        outage_grace: float = 10.0,
        probe_interval: float = PROBE_INTERVAL,
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
        self._down_since = 0.0
        self._grace = max(0.0, outage_grace)
        self._probe_interval = probe_interval
        self._reconnected = asyncio.Event()  # replaced each time Redis is back
        self._nudge = asyncio.Event()  # a command got through: the reader retries at once
        self._ids = itertools.count(1)  # publish ids: <node token>:<n>
        self._token = secrets.token_hex(4)
        self._publish: Any = None
        self._open: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; fails at once when Redis does not answer (a node does not start without
        its Redis: its supervisor starts it again)."""
        self._redis = redis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,  # not pub/sub reads: they pass their own
        )
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
        """False while Redis is unreachable (from the first failed read or PING until the
        reader is connected again)."""
        return self._connected

    def _mark_down(self, exc: BaseException) -> None:
        if self._connected:
            self._connected = False
            self._down_since = asyncio.get_running_loop().time()
            log.warning("redis unreachable (%s); reconnecting with backoff", exc)
        else:
            log.debug("redis still unreachable: %s", exc)

    def _mark_up(self) -> None:
        if not self._connected:
            self._connected = True
            away = asyncio.get_running_loop().time() - self._down_since
            log.warning("redis reachable again after %.1f s", away)
        self._reconnected.set()  # wake the commands waiting for Redis
        self._reconnected = asyncio.Event()

    async def _call(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """``op()``, tried again while Redis is unreachable, for at most the outage grace.

        A Redis that stopped answering does not hang the caller: each try is bounded by the
        client's connect and command timeouts. The waits between tries follow the backoff
        and end early when the reader reconnects; a try that gets through wakes the reader.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace
        failures = 0
        while True:
            try:
                result = await op()
            except _UNREACHABLE as exc:
                left = deadline - loop.time()
                if left <= 0:
                    raise BrokerUnavailable(
                        f"redis unreachable for {self._grace:g} s ({what}); try again"
                    ) from exc
                failures += 1
                waiting = self._reconnected
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiting.wait(), min(backoff_delay(failures), left))
                continue
            if not self._connected:  # Redis answers: the reader need not wait its backoff
                self._nudge.set()
            return result

    # -- keys --------------------------------------------------------------------------------

    def _keys(self, conversation_id: str) -> tuple[str, str, str]:
        base = f"{self._prefix}{{{conversation_id}}}"
        return f"{base}:s", f"{base}:log", f"{base}:c"

    def _conversation_of(self, channel: str) -> str:
        return channel[len(self._prefix) + 1 : -3]

    # -- streams -----------------------------------------------------------------------------

    async def open_stream(self, conversation_id: str, epoch: int, start_seq: int) -> StreamState:
        state_key, _, _ = self._keys(conversation_id)

        async def open_() -> StreamState:
            got_epoch, got_seq = await self._open(
                keys=[state_key], args=[epoch, start_seq, self._ttl]
            )
            return await self._state(conversation_id, int(got_epoch), int(got_seq))

        return await self._call(open_, "open a stream")

    async def stream_state(self, conversation_id: str) -> StreamState | None:
        return await self._call(lambda: self._stream_state(conversation_id), "read a stream")

    async def _stream_state(self, conversation_id: str) -> StreamState | None:
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
        publish_id = f"{self._token}:{next(self._ids)}"
        tries = 0

        async def publish_once() -> Any:
            nonlocal tries
            tries += 1
            return await self._publish(
                keys=[state_key, log_key, channel],
                args=[
                    event.type,
                    event.body,
                    len(event.type) + 11,
                    self._maxlen,
                    self._ttl,
                    "SPUBLISH" if self._sharded else "PUBLISH",
                    publish_id,
                    "1" if tries > 1 else "0",
                ],
            )

        seq = await self._call(publish_once, "publish")
        if seq is None:
            raise StreamMissing(event.conversation_id)
        return Frame(int(seq), event.type, frame_text(event.type, event.body, int(seq)))

    async def publish_ephemeral(self, event: Event) -> None:
        assert self._redis is not None
        _, _, channel = self._keys(event.conversation_id)
        payload = f"0 {event.type} {event.body.decode()}"
        command = "SPUBLISH" if self._sharded else "PUBLISH"
        await self._call(lambda: self._redis.execute_command(command, channel, payload), "publish")

    async def read_log(self, conversation_id: str, after_seq: int) -> LogRead:
        return await self._call(lambda: self._read_log(conversation_id, after_seq), "read a log")

    async def _read_log(self, conversation_id: str, after_seq: int) -> LogRead:
        state = await self._stream_state(conversation_id)
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
        """Register a local listener; the first one waits until Redis confirms the channel.

        The first also notes the stream's seq before subscribing: after a reconnect, the
        node reads the log from there (or from the last seq it delivered since).
        """
        first = self._fanout.add(conversation_id, listener)
        state_key, _, channel = self._keys(conversation_id)
        if first:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._confirmed[channel] = future
            subscribe = self._pubsub.ssubscribe if self._sharded else self._pubsub.subscribe
            try:
                seq = await self._call(lambda: self._redis.hget(state_key, "seq"), "subscribe")
                if seq is not None:
                    delivered = self._delivered.get(conversation_id, 0)
                    self._delivered[conversation_id] = max(delivered, int(seq))
                await self._call(lambda: subscribe(channel), "subscribe")
                self._wake.set()
                await asyncio.wait_for(asyncio.shield(future), 10)
            except BaseException as exc:
                if self._fanout.remove(conversation_id, listener):
                    self._delivered.pop(conversation_id, None)
                if self._confirmed.get(channel) is future:
                    del self._confirmed[channel]
                if not future.done():  # listeners waiting on this one fail with it
                    future.set_exception(BrokerUnavailable(f"could not subscribe: {exc!r}"))
                    future.exception()
                raise
        else:
            pending = self._confirmed.get(channel)
            if pending is not None and not pending.done():
                try:
                    await asyncio.shield(pending)
                except BaseException:
                    if self._fanout.remove(conversation_id, listener):
                        self._delivered.pop(conversation_id, None)
                    raise

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
        """Read pub/sub messages; on any failure drop the connection, wait (backoff), and
        reconnect, which resubscribes every channel and re-confirms each (see _confirm)."""
        failures = 0
        while True:
            try:
                message = await self._next_message(reconnecting=failures > 0)
                if failures:
                    failures = 0
                    self._mark_up()
                if message is None:
                    continue
                kind = message["type"]
                if kind in ("message", "smessage"):
                    self._deliver(message["channel"], message["data"])
                elif kind in ("subscribe", "ssubscribe"):
                    await self._confirm(message["channel"])
            except (RedisError, OSError) as exc:
                failures += 1
                self._mark_down(exc)
                await self._drop_pubsub()
                self._nudge.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudge.wait(), backoff_delay(failures))

    async def _next_message(self, *, reconnecting: bool) -> Any:
        """The next pub/sub message, or None. After ``probe_interval`` of silence (or with
        nothing subscribed) it PINGs Redis instead, so a Redis that went away is noticed
        even when nothing is published; it raises when Redis does not answer."""
        if not self._pubsub.subscribed:
            if not reconnecting:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._probe_interval)
                if self._pubsub.subscribed:
                    return None
            await self._probe()
            return None
        message = await self._pubsub.get_message(timeout=self._probe_interval)
        if message is None:
            await self._probe()
        return message

    async def _probe(self) -> None:
        assert self._redis is not None
        try:
            await asyncio.wait_for(self._redis.ping(), PROBE_TIMEOUT)
        except RedisConnectionError:  # a pooled connection may be stale: once more
            await asyncio.wait_for(self._redis.ping(), PROBE_TIMEOUT)

    async def _drop_pubsub(self) -> None:
        """Close the pub/sub connection; the next read reconnects and resubscribes."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def _confirm(self, channel: str) -> None:
        future = self._confirmed.get(channel)
        if future is None:
            return
        if not future.done():
            future.set_result(None)
            return
        # A re-confirmation after a reconnect: deliver what was published meanwhile, or,
        # when the log cannot (Redis restarted empty, or trimmed it), tell the listeners.
        conversation_id = self._conversation_of(channel)
        last = self._delivered.get(conversation_id)
        if last is None:
            return  # a channel without a stream (a tenant's)
        try:
            read: LogRead | None = await self._read_log(conversation_id, last)
        except StreamMissing:
            read = None
        if read is not None and read.complete:
            for frame in read.frames:
                self._deliver_frame(conversation_id, frame)
            return
        if read is not None:  # what the stream holds up to here, the listeners reload
            self._delivered[conversation_id] = max(last, read.state.last_seq)
        log.info("the stream of %s lost events while redis was away", conversation_id)
        self._fanout.deliver(conversation_id, LOST_FRAME)

    def _deliver(self, channel: str, data: str) -> None:
        seq, kind, text = data.split(" ", 2)
        self._deliver_frame(self._conversation_of(channel), Frame(int(seq), kind, text))

    def _deliver_frame(self, conversation_id: str, frame: Frame) -> None:
        if frame.seq:
            if frame.seq <= self._delivered.get(conversation_id, 0):
                return
            self._delivered[conversation_id] = frame.seq
        self._fanout.deliver(conversation_id, frame)
