"""The visitor WebSocket endpoint, ``/ws`` (protocol in ``docs/protocol.md``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.websockets import WebSocket

from realtime import contact, protocol
from realtime.engine import Accepted, Engine, Session
from realtime.errors import RealtimeError
from realtime.events import HANDOFF_CONTEXT, TYPING, Frame
from realtime.protocol import (
    Command,
    ConfirmationResolve,
    ContactSubmit,
    Feedback,
    HandoffCommand,
    Hello,
    MessageSend,
    RunCancel,
    Typing,
)
from realtime.transport.connection import Connection


class VisitorConnection(Connection):
    endpoint = "visitor"
    session: Session | None = None

    @property
    def authenticated(self) -> bool:
        return self.session is not None

    async def check_access(self, conversation_id: str) -> None:
        assert self.session is not None
        await self.engine.conversation_for(self.session, conversation_id)

    def wants(self, frame: Frame) -> bool:
        if frame.type == TYPING:
            return '"who":"visitor"' not in frame.text  # not its own typing indicator
        return frame.type != HANDOFF_CONTEXT  # the packet for the human agent

    async def handle(self, command: Command) -> None:
        if isinstance(command, Hello):
            await self._hello(command)
            return
        session = self.session
        assert session is not None
        engine = self.engine
        if isinstance(command, MessageSend):
            await self._message_send(session, command)
        elif isinstance(command, RunCancel):
            run_id = await engine.cancel_run(session, command.conversation_id, command.run_id)
            self.send("ack", command.id, conversation_id=command.conversation_id, run_id=run_id)
        elif isinstance(command, ConfirmationResolve):
            await self.resolve_confirmation(command, partial(engine.resolve_confirmation, session))
        elif isinstance(command, HandoffCommand):
            if command.action == "request":
                cid = command.conversation_id
                new: dict[str, Any] = {}
                if cid is None:
                    engine.check_handoff(session)
                    cid, new = await self._new_conversation(session)
                queued = await engine.request_handoff(session, cid)
                self.send("ack", command.id, conversation_id=cid, queued=queued, **new)
            else:
                assert command.conversation_id is not None
                await engine.cancel_handoff(session, command.conversation_id)
                self.send("ack", command.id, conversation_id=command.conversation_id)
        elif isinstance(command, Typing):
            await engine.typing(session, command.conversation_id, command.on)
            if command.id is not None:
                self.send("ack", command.id)
        elif isinstance(command, Feedback):
            await engine.feedback(
                session, command.conversation_id, command.message_id, command.value
            )
            self.send("ack", command.id, message_id=command.message_id, value=command.value)
        elif isinstance(command, ContactSubmit):
            cid = command.conversation_id
            new = {}
            if cid is None:
                engine.check_contact(session, command.fields)
                cid, new = await self._new_conversation(session)
            visitor = await engine.submit_contact(session, cid, command.fields)
            self.send("ack", command.id, conversation_id=cid, visitor=visitor, **new)

    async def _new_conversation(self, session: Session) -> tuple[str, dict[str, Any]]:
        """Start an empty conversation and follow it from its first event (the caller
        checked the request first, so a refusal leaves nothing behind); with what its ack
        adds: the conversation's ``epoch``, as ``message.send``'s ack has it."""
        self.check_subscription_room()
        cid = await self.engine.new_conversation(session)
        state = await self.engine.streams.open(cid)
        await self.subscribe(cid, 0, state.epoch)
        return cid, {"epoch": state.epoch}

    async def _hello(self, hello: Hello) -> None:
        if self.session is not None:
            raise RealtimeError("already_authenticated", "'hello' was already accepted")
        session = await self.engine.open_session(
            hello.bot,
            session_id=hello.session_id,
            api_key=hello.api_key,
            user=hello.user,
            signed_context=hello.signed_context,
            origin=self.ws.headers.get("origin"),
        )
        if hello.resume is not None:  # check before welcoming, so a bad resume is one error
            await self.engine.conversation_for(session, hello.resume.conversation_id)
        self.session = session
        self.send("welcome", hello.id, **await self._welcome(session))
        if hello.resume is not None:
            r = hello.resume
            await self.subscribe(r.conversation_id, r.after_seq, r.epoch)

    async def _welcome(self, session: Session) -> dict[str, Any]:
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
            "handoff_available": bool(
                await self.engine.handoffs.presence.online(session.bot.tenant_id)
            ),
            "handoff_offline_message": config["handoff_offline_message"],
            "contact_form_enabled": config["contact_form_enabled"],
            "contact_form_fields": contact.fields_of(config),
            "contact_form_trigger": config["contact_form_trigger"],
            "contact_form_button_display": config["contact_form_button_display"],
            "contact_form_success_message": config["contact_form_success_message"],
        }
        if session.envelope is not None and session.envelope.greeting is not None:
            bot["welcome_message"] = session.envelope.greeting  # the page's own greeting (g)
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
            self.check_subscription_room()

        async def on_accepted(accepted: Accepted) -> None:
            def ack() -> None:
                self.send("ack", command.id, **accepted.to_wire())

            if accepted.conversation_id in self.subs:
                ack()
            else:
                await self.subscribe(accepted.conversation_id, accepted.after_seq, None, ack)

        accepted = await self.engine.send_message(
            session,
            command.content,
            client_id=None if command.id is None else str(command.id),
            conversation_id=command.conversation_id,
            on_accepted=on_accepted,
        )
        if accepted.duplicate:
            self.send("ack", command.id, **accepted.to_wire())


async def visitor_endpoint(ws: WebSocket) -> None:
    engine: Engine = ws.app.state.engine
    await VisitorConnection(ws, engine, engine.settings).serve()
