"""The visitor WebSocket endpoint, ``/ws`` (protocol in ``docs/protocol.md``).

One :class:`VisitorConnection` per socket: a reader loop that parses commands and calls the
engine, and one writer task that drains the connection's :class:`Outbox`. Conversation
events reach the outbox through subscriptions; the same encoded text goes to every
subscriber. A client that stops reading is closed with 4008 and resumes from its last seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from realtime import protocol
from realtime.config import Settings
from realtime.engine import Accepted, Engine, Session
from realtime.errors import RateLimited, RealtimeError
from realtime.events import TYPING, Frame
from realtime.protocol import (
    Command,
    ConfirmationResolve,
    Hello,
    MessageSend,
    Ping,
    RunCancel,
    Subscribe,
    Typing,
    Unsubscribe,
)
from realtime.streams import Subscription
from realtime.transport.outbox import Outbox

log = logging.getLogger("realtime.transport.ws")

# Close codes (docs/protocol.md): 4000-4499 mean "reconnect and resume".
CLOSE_HELLO_TIMEOUT = 4001
CLOSE_SLOW_CONSUMER = 4008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TIMEOUT = 10.0


class VisitorConnection:
    def __init__(self, ws: WebSocket, engine: Engine, settings: Settings) -> None:
        self.ws = ws
        self.engine = engine
        self.settings = settings
        self.metrics = engine.metrics
        self.outbox = Outbox(settings.send_queue_bytes)
        self.session: Session | None = None
        self.subs: dict[str, Subscription] = {}
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        await self.ws.accept()
        self.metrics.ws_connections.labels("visitor").inc()
        self._writer = asyncio.create_task(self._write_forever())
        try:
            await self._read_forever()
        except WebSocketDisconnect:
            pass
        finally:
            self.metrics.ws_connections.labels("visitor").dec()
            for sub in self.subs.values():
                sub.close()
            self.subs.clear()
            self.outbox.close()
            if self._closing is not None:
                with contextlib.suppress(Exception):
                    await self._closing
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._writer

    # -- reading ---------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        hello_deadline = anyio.current_time() + self.settings.hello_timeout
        while True:
            if self.session is None:
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
                self._error("invalid_json", "send JSON in text frames, not binary", None)
                continue
            try:
                command = protocol.parse_command(
                    text, max_frame_bytes=self.settings.max_frame_bytes
                )
            except RealtimeError as exc:
                self._error(exc.code, exc.message, getattr(exc, "id", None))
                continue
            try:
                await self._handle(command)
            except RateLimited as exc:
                self._error(
                    exc.code, exc.message, command.id, retry_after=round(exc.retry_after, 3)
                )
            except RealtimeError as exc:
                self._error(exc.code, exc.message, command.id)
            except Exception:
                log.exception("command %s failed", type(command).__name__)
                self._error("internal_error", "the server failed; try again", command.id)

    async def _handle(self, command: Command) -> None:
        if isinstance(command, Hello):
            await self._hello(command)
            return
        if isinstance(command, Ping):
            self._send("pong", command.id)
            return
        session = self.session
        if session is None:
            raise RealtimeError("hello_required", "send 'hello' first")
        if isinstance(command, MessageSend):
            await self._message_send(session, command)
        elif isinstance(command, Subscribe):
            await self._subscribe(
                command.conversation_id,
                command.after_seq,
                command.epoch,
                before=lambda: self._send(
                    "ack", command.id, conversation_id=command.conversation_id
                ),
            )
        elif isinstance(command, Unsubscribe):
            sub = self.subs.pop(command.conversation_id, None)
            if sub is not None:
                sub.close()
            self._send("ack", command.id, conversation_id=command.conversation_id)
        elif isinstance(command, RunCancel):
            run_id = await self.engine.cancel_run(session, command.conversation_id, command.run_id)
            self._send("ack", command.id, conversation_id=command.conversation_id, run_id=run_id)
        elif isinstance(command, ConfirmationResolve):
            await self.engine.resolve_confirmation(
                session,
                command.conversation_id,
                command.tool_call_id,
                command.decision,
                command.params,
            )
            self._send(
                "ack",
                command.id,
                conversation_id=command.conversation_id,
                tool_call_id=command.tool_call_id,
                decision=command.decision,
            )
        elif isinstance(command, Typing):
            await self.engine.typing(session, command.conversation_id, command.on)
            if command.id is not None:
                self._send("ack", command.id)

    async def _hello(self, hello: Hello) -> None:
        if self.session is not None:
            raise RealtimeError("already_authenticated", "'hello' was already accepted")
        session = await self.engine.open_session(
            hello.bot, session_id=hello.session_id, api_key=hello.api_key, user=hello.user
        )
        if hello.resume is not None:  # check before welcoming, so a bad resume is one error
            await self.engine.conversation_for(session, hello.resume.conversation_id)
        self.session = session
        self._send("welcome", hello.id, **self._welcome(session))
        if hello.resume is not None:
            r = hello.resume
            await self._subscribe(r.conversation_id, r.after_seq, r.epoch)

    def _welcome(self, session: Session) -> dict[str, Any]:
        config = session.config
        bot = {
            "id": session.bot.slug,
            "uuid": session.bot.uuid,
            "name": config["name"] or session.bot.slug,
            "description": config["description"],
            "language": config["language"],
            "welcome_message": config["welcome_message"],
            "suggested_questions": (
                config["suggested_questions"][: config["suggested_questions_count"]]
                if config["show_suggested_questions"]
                else []
            ),
            "widget_settings": config["widget_settings"],
            "citations_enabled": config["citations_enabled"],
            "handoff_enabled": config["handoff_enabled"],
            "handoff_trigger": config["handoff_trigger"],
            "handoff_agent_label": config["handoff_agent_label"],
            "contact_form_enabled": config["contact_form_enabled"],
        }
        identity = session.identity
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "session": {"kind": identity.kind, "id": identity.value},
            "bot": bot,
            "limits": {
                "max_message_chars": self.settings.max_message_chars,
                "max_frame_bytes": self.settings.max_frame_bytes,
                "queue_limit": self.settings.queue_limit,
                "messages_per_minute": self.settings.messages_per_minute,
            },
            "server": {"node": self.engine.node_id, "provider": self.engine.provider.name},
        }

    async def _message_send(self, session: Session, command: MessageSend) -> None:
        if command.conversation_id not in self.subs:
            self._check_subscription_room()

        async def on_accepted(accepted: Accepted) -> None:
            def ack() -> None:
                self._send("ack", command.id, **accepted.to_wire())

            if accepted.conversation_id in self.subs:
                ack()
            else:
                await self._subscribe(accepted.conversation_id, accepted.after_seq, None, ack)

        accepted = await self.engine.send_message(
            session,
            command.content,
            client_id=None if command.id is None else str(command.id),
            conversation_id=command.conversation_id,
            on_accepted=on_accepted,
        )
        if accepted.duplicate:
            self._send("ack", command.id, **accepted.to_wire())

    async def _subscribe(
        self,
        conversation_id: str,
        after_seq: int | None,
        epoch: int | None,
        before: Callable[[], None] | None = None,
    ) -> None:
        """Subscribe this connection; ``before`` runs once the checks passed, before any event."""
        assert self.session is not None
        if conversation_id in self.subs:
            self.subs.pop(conversation_id).close()
        else:
            await self.engine.conversation_for(self.session, conversation_id)
            self._check_subscription_room()
        if before is not None:
            before()
        self.subs[conversation_id] = await self.engine.subscribe(
            conversation_id,
            self._on_frame,
            after_seq=after_seq,
            epoch=epoch,
            replay_sink=self._on_replayed,
        )

    def _check_subscription_room(self) -> None:
        if len(self.subs) >= self.settings.max_subscriptions:
            raise RealtimeError(
                "too_many_subscriptions",
                f"at most {self.settings.max_subscriptions} conversations per connection",
            )

    # -- writing ---------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if frame.type == TYPING and '"who":"visitor"' in frame.text:
            return  # the visitor's own typing indicator
        if not self.outbox.put(frame.type, frame.text) and self.outbox.overflowed:
            self._close_soon(CLOSE_SLOW_CONSUMER, "slow_consumer")

    def _on_replayed(self, frame: Frame) -> None:
        self.outbox.put(frame.type, frame.text, replay=True)

    def _send(self, kind: str, client_id: protocol.ClientId, **fields: Any) -> None:
        if not self.outbox.put(kind, protocol.encode(kind, client_id, **fields)):
            if self.outbox.overflowed:
                self._close_soon(CLOSE_SLOW_CONSUMER, "slow_consumer")

    def _error(self, code: str, message: str, client_id: protocol.ClientId, **extra: Any) -> None:
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


async def visitor_endpoint(ws: WebSocket) -> None:
    engine: Engine = ws.app.state.engine
    await VisitorConnection(ws, engine, engine.settings).serve()
