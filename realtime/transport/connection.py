"""What every WebSocket endpoint shares: framing, errors, subscriptions, the send queue.

A :class:`Connection` owns one socket: a reader loop that parses commands (with the
endpoint's parser registry) and hands them to :meth:`Connection.handle`, and one writer task
that drains its :class:`Outbox`. Conversation events reach the outbox through subscriptions;
the same encoded text goes to every subscriber. A client that stops reading is closed with
4008 and resumes from its last seq. Subclasses (``/ws``, ``/ws/console``) add their hello,
their commands and what they may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from realtime import protocol
from realtime.config import Settings
from realtime.engine import Engine
from realtime.errors import RateLimited, RealtimeError
from realtime.events import Frame
from realtime.protocol import Command, ConfirmationResolve, Subscribe, Unsubscribe
from realtime.streams import Subscription
from realtime.transport.outbox import Outbox

log = logging.getLogger("realtime.transport")

# Close codes (docs/protocol.md): 4000-4499 mean "reconnect and resume".
CLOSE_HELLO_TIMEOUT = 4001
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TRY_AGAIN = 1013  # too many connections from one address
CLOSE_TIMEOUT = 10.0


class Connection:
    endpoint = "visitor"  # the metrics label
    parsers: Mapping[str, Callable[[dict[str, Any], protocol.ClientId], Any]] = protocol.PARSERS
    hello_types: tuple[type, ...] = (protocol.Hello,)  # commands allowed before authenticating

    def __init__(self, ws: WebSocket, engine: Engine, settings: Settings) -> None:
        self.ws = ws
        self.engine = engine
        self.settings = settings
        self.metrics = engine.metrics
        self.outbox = Outbox(settings.send_queue_bytes)
        self.subs: dict[str, Subscription] = {}
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    # -- for subclasses ----------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        raise NotImplementedError

    async def handle(self, command: Command) -> None:
        """Act on one parsed command (``ping`` and subscriptions are handled here)."""
        raise NotImplementedError

    async def check_access(self, conversation_id: str) -> None:
        """Raise unless this connection may follow the conversation."""
        raise NotImplementedError

    def wants(self, frame: Frame) -> bool:
        """Whether this client should see ``frame`` (its own typing, say, it should not)."""
        return True

    async def closed(self) -> None:
        """Called once the socket is gone."""

    # -- the socket --------------------------------------------------------------------------

    async def serve(self) -> None:
        address = self.ws.client.host if self.ws.client is not None else "unknown"
        if not await self.engine.connections.admit(address):
            await self._refuse(address)
            return
        try:
            await self._serve()
        finally:
            await self.engine.connections.release(address)

    async def _refuse(self, address: str) -> None:
        """Over the per-address limit: say so, then close with 1013 (try again later)."""
        log.warning("refused a WebSocket from %s: too many open", address)
        self.metrics.ws_closes.labels("too_many_connections").inc()
        await self.ws.accept()
        limit = self.engine.connections.limit
        frame = protocol.error_frame(
            "too_many_connections",
            f"over {limit} open connections from one address; try again later",
            None,
            retry_after=5,
        )
        with anyio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(Exception):
            await self.ws.send_text(frame)
            await self.ws.close(CLOSE_TRY_AGAIN, "too_many_connections")

    async def _serve(self) -> None:
        await self.ws.accept()
        self.metrics.ws_connections.labels(self.endpoint).inc()
        self._writer = asyncio.create_task(self._write_forever())
        try:
            await self._read_forever()
        except WebSocketDisconnect:
            pass
        finally:
            self.metrics.ws_connections.labels(self.endpoint).dec()
            for sub in self.subs.values():
                sub.close()
            self.subs.clear()
            self.outbox.close()
            with contextlib.suppress(Exception):
                await self.closed()
            if self._closing is not None:
                with contextlib.suppress(Exception):
                    await self._closing
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._writer

    async def _read_forever(self) -> None:
        hello_deadline = anyio.current_time() + self.settings.hello_timeout
        while True:
            if not self.authenticated:
                with anyio.move_on_after(hello_deadline - anyio.current_time()) as scope:
                    message = await self.ws.receive()
                if scope.cancelled_caught:
                    await self._close(CLOSE_HELLO_TIMEOUT, "hello_timeout")
                    return
            else:
                message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.metrics.ws_frames_in.inc()
            text = message.get("text")
            if text is None:
                self.error("invalid_json", "send JSON in text frames, not binary", None)
                continue
            try:
                command = protocol.parse_command(
                    text, max_frame_bytes=self.settings.max_frame_bytes, parsers=self.parsers
                )
            except RealtimeError as exc:
                self.error(exc.code, exc.message, getattr(exc, "id", None), **exc.details())
                continue
            try:
                await self._dispatch(command)
            except RateLimited as exc:
                self.error(exc.code, exc.message, command.id, retry_after=round(exc.retry_after, 3))
            except RealtimeError as exc:
                self.error(exc.code, exc.message, command.id, **exc.details())
            except Exception:
                log.exception("command %s failed", type(command).__name__)
                self.error("internal_error", "the server failed; try again", command.id)

    async def _dispatch(self, command: Command) -> None:
        if isinstance(command, protocol.Ping):
            self.send("pong", command.id)
        elif not self.authenticated and not isinstance(command, self.hello_types):
            raise RealtimeError("hello_required", "send 'hello' first")
        elif isinstance(command, Subscribe):
            cid = command.conversation_id
            await self.subscribe(
                cid,
                command.after_seq,
                command.epoch,
                before=lambda: self.send("ack", command.id, conversation_id=cid),
            )
        elif isinstance(command, Unsubscribe):
            self.unsubscribe(command.conversation_id)
            self.send("ack", command.id, conversation_id=command.conversation_id)
        else:
            await self.handle(command)

    async def resolve_confirmation(
        self, command: ConfirmationResolve, resolve: Callable[..., Awaitable[object]]
    ) -> None:
        """``confirmation.resolve`` through ``resolve`` (the visitor's or the agent's), then
        its ack."""
        await resolve(
            command.conversation_id, command.tool_call_id, command.decision, command.params
        )
        self.send(
            "ack",
            command.id,
            conversation_id=command.conversation_id,
            tool_call_id=command.tool_call_id,
            decision=command.decision,
        )

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        conversation_id: str,
        after_seq: int | None,
        epoch: int | None,
        before: Callable[[], None] | None = None,
    ) -> None:
        """Follow a conversation; ``before`` runs once the checks passed, before any event."""
        if conversation_id in self.subs:
            self.subs.pop(conversation_id).close()
        else:
            await self.check_access(conversation_id)
            self.check_subscription_room()
        if before is not None:
            before()
        self.subs[conversation_id] = await self.engine.subscribe(
            conversation_id,
            self._on_frame,
            after_seq=after_seq,
            epoch=epoch,
            replay_sink=self._on_replayed,
        )

    def unsubscribe(self, conversation_id: str) -> None:
        sub = self.subs.pop(conversation_id, None)
        if sub is not None:
            sub.close()

    def check_subscription_room(self) -> None:
        if len(self.subs) >= self.settings.max_subscriptions:
            raise RealtimeError(
                "too_many_subscriptions",
                f"at most {self.settings.max_subscriptions} conversations per connection",
            )

    # -- writing -----------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if not self.wants(frame):
            return
        if not self.outbox.put(frame.type, frame.text) and self.outbox.overflowed:
            self._close_soon(CLOSE_SLOW_CONSUMER, "slow_consumer")

    def _on_replayed(self, frame: Frame) -> None:
        if self.wants(frame):
            self.outbox.put(frame.type, frame.text, replay=True)

    def send(self, kind: str, client_id: protocol.ClientId, **fields: Any) -> None:
        if not self.outbox.put(kind, protocol.encode(kind, client_id, **fields)):
            if self.outbox.overflowed:
                self._close_soon(CLOSE_SLOW_CONSUMER, "slow_consumer")

    def error(self, code: str, message: str, client_id: protocol.ClientId, **extra: Any) -> None:
        self.metrics.ws_errors.labels(code).inc()
        if not self.outbox.put("error", protocol.error_frame(code, message, client_id, **extra)):
            if self.outbox.overflowed:
                self._close_soon(CLOSE_SLOW_CONSUMER, "slow_consumer")

    async def _write_forever(self) -> None:
        try:
            while True:
                await self.outbox.wait()
                if self.outbox.overflowed or self.outbox.closed:
                    return
                for text in self.outbox.take():
                    await self.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the reader sees the disconnect and cleans up

    def _close_soon(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """Stop all delivery at once (bounded memory), then send the close frame.

        The close frame waits behind what the transport still buffers; a client that never
        reads again is dropped by the keepalive ping timeout instead.
        """
        self.metrics.ws_closes.labels(reason).inc()
        for sub in self.subs.values():
            sub.close()
        self.subs.clear()
        self.outbox.close()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        if self.ws.application_state == WebSocketState.CONNECTED:
            with anyio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(Exception):
                await self.ws.close(code, reason)
