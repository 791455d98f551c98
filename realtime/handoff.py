"""Human handoff: a conversation leaves the bot for a human agent, and comes back.

::

    bot ──request──▶ pending_human ──claim──▶ with_human ──release──▶ bot
     ▲                │  ▲    │                │   │  └──close──▶ closed
     └─cancel/timeout─┘  │    └─────────── transfer to queue (or agent offline)
     └──────────────── take over (an agent, from bot or the queue) ──▶ with_human

Each arrow is one conditional update in the store (:class:`realtime.store.handoff
.HandoffStore`), so two agents racing for a conversation cannot both win. Each change is
published on the conversation's stream (``handoff.*``, ``conversation.updated``) and, for
the queue, on the tenant's console channel (``queue.added``/``queue.removed``). While the
conversation is not ``bot``, no run starts: the visitor's messages are for the human.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from realtime import events
from realtime.bots import with_defaults
from realtime.broker.coordination import Coordination
from realtime.errors import Conflict, Forbidden, NotFound, ProtocolError
from realtime.periodic import Periodic
from realtime.presence import Presence
from realtime.runs import RunManager
from realtime.store import Conversation, HumanAgent, Message, Store, iso, utcnow
from realtime.streams import Streams
from realtime.types import new_id

log = logging.getLogger("realtime.handoff")

Publish = Callable[[events.Event], Awaitable[events.Frame]]

# Visitor-initiated (the button) vs bot-initiated (a phrase, the model, the offline fallback).
BUTTON_REASONS = ("button",)
AUTO_REASONS = ("message", "model", "auto")
DEFAULT_OFFLINE_MESSAGE = (
    "All our team members are busy or offline right now. You are in the queue, and someone "
    "will answer here as soon as they can."
)

_HUMAN = r"(human|person|agent|someone|somebody|representative|operator|staff|real person)"
_ASKS_FOR_HUMAN = re.compile(
    rf"\b(talk|speak|chat|connect|transfer|put)\b.{{0,30}}\b{_HUMAN}\b"
    r"|\b(need|want|get)\b.{0,15}\b(a |an )?"
    r"(human|real person|live agent|representative|operator)\b"
    r"|^\W*(human|agent|operator|representative|real person)\W*(please|pls)?\W*$",
    re.IGNORECASE,
)


def asks_for_human(text: str) -> bool:
    """Whether a visitor's message asks for a person (a small documented matcher, no model).

    Matches e.g. "can I talk to a human?", "connect me with someone", "I need a real person",
    "agent please"; not "what does the agent tool do?" (no verb asking for one).
    """
    return bool(_ASKS_FOR_HUMAN.search(text[:500]))


def tenant_channel(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


class Handoffs:
    def __init__(
        self,
        store: Store,
        streams: Streams,
        publish: Publish,
        runs: RunManager,
        *,
        presence_grace: float,
        timeout: float,
        coordination: Coordination,
        node_id: str,
    ) -> None:
        self._store = store
        self._streams = streams
        self._publish = publish
        self._runs = runs
        self._timeout = timeout
        self.presence = Presence(
            presence_grace,
            self._presence_changed,
            self._agent_offline,
            shared=coordination,
            node_id=node_id,
        )
        self._sweeper: Periodic | None = None

    # -- the visitor side --------------------------------------------------------------------

    async def request(self, conversation: Conversation, reason: str) -> bool:
        """Queue the conversation for a human; False when it already is (or has one).

        Raises ``handoff_unavailable`` when the bot does not allow this kind of request.
        """
        config = await self._bot_config(conversation)
        check_handoff_allowed(config, reason)
        if not await self._store.handoff.queue_conversation(conversation.id, reason):
            return False
        await self._runs.stop(conversation.id)
        queued = await self._store.get_conversation(conversation.id)
        assert queued is not None
        position = await self._store.handoff.queue_position(queued)
        online = bool(await self.presence.online(conversation.tenant_id))
        cid = conversation.id
        await self._publish(
            events.handoff_requested(
                cid, queue_position=position, reason=reason, agents_online=online
            )
        )
        await self._publish(events.conversation_updated(cid, status="pending_human", agent=None))
        await self._queue_added(queued, position)
        if not online:
            text = config["handoff_offline_message"] or DEFAULT_OFFLINE_MESSAGE
            await self._system_message(cid, text, {"notice": "agents_offline"})
        return True

    async def cancel(self, conversation: Conversation) -> None:
        """The visitor withdraws a request nobody has claimed yet."""
        if not await self._store.handoff.end_handoff(conversation.id, "bot"):
            raise Conflict("not_queued", "this conversation is not waiting for a person")
        await self._back_to_bot(conversation, "cancelled", None)

    # -- the agent side ----------------------------------------------------------------------

    async def claim(
        self, agent: HumanAgent, conversation_id: str, *, take_over: bool = False
    ) -> Conversation:
        """Make ``agent`` the owner: from the queue, or (``take_over``) straight from the bot."""
        conversation = await self._conversation(agent, conversation_id)
        before = conversation.status
        won = await self._store.handoff.claim_conversation(
            conversation.id, agent.id, agent.capacity, from_bot=take_over
        )
        if not won:
            raise await self._claim_refusal(agent, conversation_id, take_over)
        if before == "bot":
            await self._runs.stop(conversation.id)
        owned = await self._store.get_conversation(conversation.id)
        assert owned is not None
        cid = conversation.id
        # The packet first (DECISIONS 13): the agent reads it before anything else happens.
        await self._publish(await self._context(owned, agent))
        await self._publish(events.handoff_accepted(cid, agent.public(), take_over=take_over))
        await self._publish(
            events.conversation_updated(cid, status="with_human", agent=agent.public())
        )
        if before == "pending_human":
            await self._queue_removed(owned, "claimed")
        return owned

    async def send(
        self, agent: HumanAgent, conversation_id: str, content: str, limit: int
    ) -> Message:
        conversation = await self.owned(agent, conversation_id)
        if not content.strip():
            raise ProtocolError("invalid_field", "'content' must not be empty")
        if len(content) > limit:
            raise ProtocolError("content_too_long", f"'content' is over {limit} characters")
        message = Message(
            new_id(),
            conversation.id,
            "agent",
            content,
            utcnow(),
            meta={"agent": agent.public()},
        )
        await self._store.add_message(message)
        await self._store.handoff.mark_read(conversation.id, agent.id)
        await self._publish(events.message_created(conversation.id, message.to_wire()))
        return message

    async def transfer(
        self, agent: HumanAgent, conversation_id: str, to_agent_id: str | None
    ) -> None:
        conversation = await self.owned(agent, conversation_id)
        target = None
        if to_agent_id is not None:
            target = await self._store.handoff.get_agent(to_agent_id)
            if target is None or target.tenant_id != agent.tenant_id:
                raise NotFound("agent_not_found", "no such agent")
            if target.id == agent.id:
                raise ProtocolError("invalid_field", "'to_agent_id' is yourself")
        await self._transfer(conversation, agent, target, "transfer")

    async def release(self, agent: HumanAgent, conversation_id: str) -> None:
        """Hand the conversation back to the bot."""
        conversation = await self.owned(agent, conversation_id)
        if not await self._store.handoff.end_handoff(conversation.id, "bot", agent_id=agent.id):
            raise Conflict("not_yours", "this conversation is not yours")
        await self._back_to_bot(conversation, "agent", agent)

    async def close(self, agent: HumanAgent, conversation_id: str) -> None:
        conversation = await self.owned(agent, conversation_id)
        if not await self._store.handoff.end_handoff(conversation.id, "closed", agent_id=agent.id):
            raise Conflict("not_yours", "this conversation is not yours")
        await self._publish(
            events.conversation_updated(conversation.id, status="closed", agent=agent.public())
        )

    async def queue(self, tenant_id: str) -> list[dict[str, Any]]:
        items = []
        for position, conversation in enumerate(await self._store.handoff.queue(tenant_id), 1):
            items.append(await self._queue_item(conversation, position))
        return items

    async def owned_or_tenant(self, agent: HumanAgent, conversation_id: str) -> Conversation:
        """A conversation of the agent's tenant (agents may read any of them)."""
        return await self._conversation(agent, conversation_id)

    # -- internals ---------------------------------------------------------------------------

    async def _transfer(
        self, conversation: Conversation, agent: HumanAgent, target: HumanAgent | None, reason: str
    ) -> None:
        won = await self._store.handoff.transfer_conversation(
            conversation.id,
            agent.id,
            target.id if target else None,
            target.capacity if target else 0,
        )
        if not won:
            if target is not None:
                raise Conflict("capacity_reached", f"{target.label} has no room for another")
            raise Conflict("not_yours", "this conversation is not yours")
        moved = await self._store.get_conversation(conversation.id)
        assert moved is not None
        position = await self._store.handoff.queue_position(moved) if target is None else None
        cid = conversation.id
        await self._publish(
            events.handoff_transferred(
                cid,
                from_agent=agent.public(),
                agent=target.public() if target else None,
                queue_position=position,
                reason=reason,
            )
        )
        if target is None:
            await self._publish(
                events.conversation_updated(cid, status="pending_human", agent=None)
            )
            await self._queue_added(moved, position or 0)
        else:
            await self._publish(
                events.conversation_updated(cid, status="with_human", agent=target.public())
            )
            context = await self.context_fields(moved, target)
            await self._publish(events.handoff_context(cid, **context))
            # The new owner learns of it here, with the packet (it follows the conversation
            # only from now, after the packet's seq).
            await self._streams.publish_ephemeral(
                events.tenant_event(
                    tenant_channel(moved.tenant_id),
                    "conversation.assigned",
                    conversation_id=cid,
                    agent_id=target.id,
                    from_agent_id=agent.id,
                    reason=reason,
                    context=context,
                )
            )

    async def _back_to_bot(
        self, conversation: Conversation, reason: str, agent: HumanAgent | None
    ) -> None:
        cid = conversation.id
        if agent is not None:
            # The model reads this in its history: a person answered in between.
            await self._system_message(
                cid,
                f"{agent.label}, a person from the team, answered the visitor above and has "
                "handed the conversation back to the assistant. Do not repeat or contradict "
                "what they said or did.",
                {"notice": "released", "agent": agent.public()},
            )
        await self._publish(
            events.handoff_released(cid, reason=reason, agent=agent.public() if agent else None)
        )
        await self._publish(events.conversation_updated(cid, status="bot", agent=None))
        if conversation.status == "pending_human" or reason in ("cancelled", "timeout"):
            await self._queue_removed(conversation, reason)

    async def _system_message(self, cid: str, text: str, meta: dict[str, Any]) -> None:
        message = Message(new_id(), cid, "system", text, utcnow(), meta=meta)
        await self._store.add_message(message)
        await self._publish(events.message_created(cid, message.to_wire()))

    async def _conversation(self, agent: HumanAgent, conversation_id: str) -> Conversation:
        conversation = await self._store.get_conversation(conversation_id)
        if conversation is None or conversation.tenant_id != agent.tenant_id:
            raise NotFound("conversation_not_found", "no such conversation")
        return conversation

    async def owned(self, agent: HumanAgent, conversation_id: str) -> Conversation:
        conversation = await self._conversation(agent, conversation_id)
        if conversation.status != "with_human" or conversation.agent_id != agent.id:
            raise Forbidden("not_yours", "this conversation is not yours: claim it first")
        return conversation

    async def _claim_refusal(
        self, agent: HumanAgent, conversation_id: str, take_over: bool
    ) -> Exception:
        now = await self._store.get_conversation(conversation_id)
        if now is None:
            return NotFound("conversation_not_found", "no such conversation")
        if now.status == "with_human" and now.agent_id == agent.id:
            return Conflict("already_yours", "you already own this conversation")
        if now.status == "with_human":
            return Conflict("already_claimed", "another agent owns this conversation")
        if now.status in ("pending_human",) or (take_over and now.status == "bot"):
            return Conflict("capacity_reached", "you have no room for another conversation")
        return Conflict("not_queued", "this conversation is not waiting for a person")

    async def _bot_config(self, conversation: Conversation) -> dict[str, Any]:
        bot = await self._store.get_bot_by_uuid(conversation.bot_uuid)
        return with_defaults(bot.config if bot is not None else {})

    async def _pending(self, conversation_id: str) -> dict[str, Any] | None:
        pending = await self._store.confirmations.find(conversation_id)
        return pending.to_wire() if pending is not None else None

    async def _summary(self, conversation: Conversation) -> str:
        """A short extractive summary: what the visitor asked, what the bot said last."""
        recent = await self._store.list_messages(conversation.id, limit=30)
        users = [m.content for m in recent if m.role == "user"]
        bots = [m.content for m in recent if m.role == "assistant" and m.content]
        parts = []
        if users:
            parts.append(f"The visitor asked: {_clip(users[0])}")
            if len(users) > 1:
                parts.append(f"Latest from the visitor: {_clip(users[-1])}")
        if bots:
            parts.append(f"The bot last said: {_clip(bots[-1])}")
        if conversation.handoff_reason:
            parts.append(f"Handed off because: {_REASONS.get(conversation.handoff_reason, '')}")
        return " ".join(parts) or "No messages yet."

    async def _queue_item(self, conversation: Conversation, position: int) -> dict[str, Any]:
        return {
            "conversation": conversation.to_wire(),
            "queue_position": position,
            "reason": conversation.handoff_reason,
            "queued_at": iso(conversation.queued_at),
            "summary": await self._summary(conversation),
            "visitor": _visitor(conversation),
        }

    async def _queue_added(self, conversation: Conversation, position: int) -> None:
        item = await self._queue_item(conversation, position)
        await self._streams.publish_ephemeral(
            events.tenant_event(tenant_channel(conversation.tenant_id), "queue.added", item=item)
        )

    async def _context(self, conversation: Conversation, agent: HumanAgent) -> events.Event:
        """The packet the agent who now owns the conversation reads first."""
        return events.handoff_context(
            conversation.id, **await self.context_fields(conversation, agent)
        )

    async def context_fields(self, conversation: Conversation, agent: HumanAgent) -> dict[str, Any]:
        bot = await self._store.get_bot_by_uuid(conversation.bot_uuid)
        return {
            "agent": agent.public(),
            "summary": await self._summary(conversation),
            "visitor": _visitor(conversation),
            "pending_confirmation": await self._pending(conversation.id),
            "agent_confirmations": bool(
                bot is not None and with_defaults(bot.config)["agent_confirmations"]
            ),
        }

    async def agents_info(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        """Every agent of the tenant with its label and merged presence (consoles show
        names, not ids)."""
        seen = await self.presence.snapshot(tenant_id)
        return {
            agent.id: {
                "label": agent.label,
                "name": agent.name,
                "status": seen.get(agent.id, "offline"),
            }
            for agent in await self._store.handoff.list_agents(tenant_id)
        }

    async def live(self, agent: HumanAgent, within: timedelta) -> list[dict[str, Any]]:
        """The tenant's conversations with the bot that moved within ``within``, for an
        agent to watch (and take over)."""
        found = await self._store.handoff.live_conversations(agent.tenant_id, utcnow() - within)
        return [
            {"conversation": conversation.to_wire(), "active_run": running}
            for conversation, running in found
        ]

    async def _queue_removed(self, conversation: Conversation, reason: str) -> None:
        await self._streams.publish_ephemeral(
            events.tenant_event(
                tenant_channel(conversation.tenant_id),
                "queue.removed",
                conversation_id=conversation.id,
                reason=reason,
            )
        )

    async def _presence_changed(self, tenant_id: str, agent_id: str, status: str) -> None:
        agent = await self._store.handoff.get_agent(agent_id)
        await self._streams.publish_ephemeral(
            events.tenant_event(
                tenant_channel(tenant_id),
                "presence.updated",
                agent_id=agent_id,
                status=status,
                label=agent.label if agent is not None else None,
            )
        )

    async def _agent_offline(self, tenant_id: str, agent_id: str, status: str) -> None:
        """After the grace period: the agent's conversations go back to the queue."""
        agent = await self._store.handoff.get_agent(agent_id)
        if agent is None:
            return
        for conversation in await self._store.handoff.owned_by(agent_id):
            try:
                await self._transfer(conversation, agent, None, "agent_offline")
            except Conflict:
                continue  # it changed hands meanwhile

    # -- the sweeper -------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Requests nobody claimed in time go back to the bot."""
        expired = 0
        before = utcnow() - timedelta(seconds=self._timeout)
        for conversation in await self._store.handoff.expired_handoffs(before):
            if await self._store.handoff.end_handoff(conversation.id, "bot"):
                await self._system_message(
                    conversation.id,
                    "Nobody from the team was free in time, so the assistant is back. Ask it "
                    "again for a person whenever you like.",
                    {"notice": "handoff_timeout"},
                )
                await self._back_to_bot(conversation, "timeout", None)
                expired += 1
        return expired

    def start(self, interval: float) -> None:
        self._sweeper = Periodic("handoff-sweeper", interval, self.expire_due)
        self._sweeper.start()
        self.presence.start()

    async def stop(self) -> None:
        if self._sweeper is not None:
            await self._sweeper.stop()
        await self.presence.close()


_REASONS = {
    "button": "the visitor asked for a person",
    "message": "the visitor asked for a person in a message",
    "model": "the assistant decided a person should help",
    "auto": "the assistant could not answer from its sources",
}


def _clip(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def check_handoff_allowed(config: dict[str, Any], reason: str) -> None:
    """Raise ``handoff_unavailable`` unless the bot (its ``config``) hands off for ``reason``."""
    if not config["handoff_enabled"]:
        raise Conflict("handoff_unavailable", "this bot does not hand off to people")
    trigger = config["handoff_trigger"]
    allowed = (trigger in ("button", "both") and reason in BUTTON_REASONS) or (
        trigger in ("auto", "both") and reason in AUTO_REASONS
    )
    if not allowed:
        raise Conflict("handoff_unavailable", f"this bot's handoff trigger is {trigger!r}")


def _visitor(conversation: Conversation) -> dict[str, Any]:
    kind, _, value = conversation.owner.partition(":")
    info = (conversation.meta or {}).get("visitor_info")
    return {"kind": kind, "id": value, "info": info}
