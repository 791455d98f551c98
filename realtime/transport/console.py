"""The agent console WebSocket endpoint, ``/ws/console`` (protocol in ``docs/protocol.md``).

An :class:`AgentConnection` is a human agent's live view: its tenant's queue (a snapshot,
then changes), the conversations it claims, watches or follows (history, then live events),
and the commands that move a conversation between the bot, the queue and the agents. The
rules live in :mod:`realtime.handoff`; this module parses, checks who may do what, and
replies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial

from starlette.websockets import WebSocket

from realtime import protocol
from realtime.engine import Engine
from realtime.errors import RealtimeError
from realtime.events import TYPING, Frame
from realtime.protocol import Command, ConfirmationResolve, Typing
from realtime.protocol_console import (
    CONSOLE_PARSERS,
    AgentHello,
    ConversationAction,
    ConversationSend,
    ConversationsList,
    ConversationsLive,
    ConversationTransfer,
    PresenceSet,
    QueueCommand,
)
from realtime.store import HumanAgent
from realtime.transport.connection import Connection


class AgentConnection(Connection):
    endpoint = "console"
    parsers = CONSOLE_PARSERS
    hello_types = (AgentHello,)
    agent: HumanAgent | None = None
    _stop_queue: Callable[[], None] | None = None

    @property
    def authenticated(self) -> bool:
        return self.agent is not None

    async def check_access(self, conversation_id: str) -> None:
        assert self.agent is not None
        await self.engine.handoffs.owned_or_tenant(self.agent, conversation_id)

    def wants(self, frame: Frame) -> bool:
        if frame.type == TYPING and self.agent is not None:
            return self.agent.id not in frame.text  # not its own typing indicator
        return True

    async def closed(self) -> None:
        if self._stop_queue is not None:
            self._stop_queue()
        if self.agent is not None:
            self.engine.handoffs.presence.disconnect(self.agent.id)

    async def handle(self, command: Command) -> None:
        if isinstance(command, AgentHello):
            await self._hello(command)
            return
        agent = self.agent
        assert agent is not None
        handoffs = self.engine.handoffs
        if isinstance(command, ConversationAction):
            await self._action(agent, command)
        elif isinstance(command, ConversationSend):
            message = await handoffs.send(
                agent, command.conversation_id, command.content, self.settings.max_message_chars
            )
            self.send(
                "ack", command.id, conversation_id=command.conversation_id, message_id=message.id
            )
        elif isinstance(command, ConversationTransfer):
            await handoffs.transfer(agent, command.conversation_id, command.to_agent_id)
            self.send("ack", command.id, conversation_id=command.conversation_id)
        elif isinstance(command, ConversationsLive):
            live = await handoffs.live(agent, timedelta(minutes=command.minutes))
            self.send("ack", command.id, conversations=live)
        elif isinstance(command, ConversationsList):
            items = [
                {"conversation": conversation.to_wire(), "unread": unread}
                for conversation, unread in await self.engine.store.handoff.agent_conversations(
                    agent.id
                )
            ]
            self.send("ack", command.id, conversations=items)
        elif isinstance(command, QueueCommand):
            if command.action == "subscribe":
                if self._stop_queue is None:
                    self._stop_queue = await self.engine.listen_tenant(
                        agent.tenant_id, self._on_frame
                    )
                self.send("ack", command.id, queue=await handoffs.queue(agent.tenant_id))
            else:
                if self._stop_queue is not None:
                    self._stop_queue()
                    self._stop_queue = None
                self.send("ack", command.id)
        elif isinstance(command, PresenceSet):
            handoffs.presence.set(agent.id, command.status)
            self.send("ack", command.id, status=handoffs.presence.status(agent.id))
        elif isinstance(command, Typing):
            await self.engine.agent_typing(agent, command.conversation_id, command.on)
            if command.id is not None:
                self.send("ack", command.id)
        elif isinstance(command, ConfirmationResolve):
            await self.resolve_confirmation(
                command, partial(self.engine.agent_resolve_confirmation, agent)
            )

    async def _hello(self, hello: AgentHello) -> None:
        if self.agent is not None:
            raise RealtimeError("already_authenticated", "'hello' was already accepted")
        if hello.token is not None:
            agent = await self.engine.agent_for_token(hello.token)
        else:
            assert hello.tenant and hello.email and hello.password
            agent = await self.engine.agent_login(hello.tenant, hello.email, hello.password)
        self.agent = agent
        presence = self.engine.handoffs.presence
        presence.connect(agent.tenant_id, agent.id)
        self.send(
            "welcome",
            hello.id,
            protocol=protocol.PROTOCOL_VERSION,
            agent=agent.to_wire(),
            presence=presence.status(agent.id),
            agents=await presence.snapshot(agent.tenant_id),
            agents_info=await self.engine.handoffs.agents_info(agent.tenant_id),
            limits={
                "max_message_chars": self.settings.max_message_chars,
                "max_frame_bytes": self.settings.max_frame_bytes,
                "max_subscriptions": self.settings.max_subscriptions,
            },
            server={"node": self.engine.node_id},
        )

    async def _action(self, agent: HumanAgent, command: ConversationAction) -> None:
        """claim, take_over and watch reply with the history, then follow the conversation;
        the others reply with a bare ack."""
        cid, handoffs = command.conversation_id, self.engine.handoffs
        if command.action in ("claim", "take_over", "watch"):
            conversation = await handoffs.owned_or_tenant(agent, cid)
            if cid not in self.subs:
                self.check_subscription_room()
            before = await self.engine.streams.open(cid)  # the claim's events come after this
            if command.action != "watch":
                conversation = await handoffs.claim(
                    agent, cid, take_over=command.action == "take_over"
                )
            history = (await self.engine.history_of(conversation)).to_wire()
            history["last_seq"] = before.last_seq
            history["epoch"] = before.epoch
            extra = {}
            if conversation.status == "with_human" and conversation.agent_id == agent.id:
                # Its owner opening it anew (another tab, after a transfer) gets the packet.
                extra["context"] = await handoffs.context_fields(conversation, agent)

            def reply() -> None:
                self.send("ack", command.id, conversation_id=cid, history=history, **extra)

            await self.subscribe(cid, before.last_seq, before.epoch, reply)
            return
        if command.action == "unwatch":
            self.unsubscribe(cid)
        elif command.action == "release":
            await handoffs.release(agent, cid)
        elif command.action == "close":
            await handoffs.close(agent, cid)
        elif command.action == "read":
            await handoffs.owned(agent, cid)
            await self.engine.store.handoff.mark_read(cid, agent.id)
        self.send("ack", command.id, conversation_id=cid)


async def console_endpoint(ws: WebSocket) -> None:
    engine: Engine = ws.app.state.engine
    await AgentConnection(ws, engine, engine.settings).serve()
