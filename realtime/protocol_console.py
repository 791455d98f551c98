"""The agent console protocol (``/ws/console``), sans I/O: its commands and their parsers.

Same framing, ids, errors and resume rules as the visitor protocol (:mod:`realtime.protocol`),
whose ``subscribe``, ``unsubscribe``, ``typing``, ``confirmation.resolve`` and ``ping`` it
shares. See ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from realtime.errors import ProtocolError
from realtime.protocol import PARSERS, ClientId, Parser, string_field

# conversation.<action> commands that carry only a conversation_id
CONVERSATION_ACTIONS = ("claim", "take_over", "watch", "unwatch", "release", "close", "read")


@dataclass(frozen=True, slots=True)
class AgentHello:
    id: ClientId
    tenant: str | None = None
    email: str | None = None
    password: str | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceSet:
    id: ClientId
    status: str  # online | away


@dataclass(frozen=True, slots=True)
class QueueCommand:
    id: ClientId
    action: str  # subscribe | unsubscribe


@dataclass(frozen=True, slots=True)
class ConversationsList:
    id: ClientId


@dataclass(frozen=True, slots=True)
class ConversationsLive:
    """The tenant's conversations with the bot that moved in the last ``minutes``."""

    id: ClientId
    minutes: int = 30


@dataclass(frozen=True, slots=True)
class ConversationAction:
    id: ClientId
    action: str  # one of CONVERSATION_ACTIONS
    conversation_id: str


@dataclass(frozen=True, slots=True)
class ConversationSend:
    id: ClientId
    conversation_id: str
    content: str


@dataclass(frozen=True, slots=True)
class ConversationTransfer:
    id: ClientId
    conversation_id: str
    to_agent_id: str | None  # None: back to the queue


def _hello(obj: dict[str, Any], client_id: ClientId) -> AgentHello:
    token = string_field(obj, "token", max_len=200, required=False)
    if token is not None:
        return AgentHello(client_id, token=token)
    return AgentHello(
        client_id,
        tenant=string_field(obj, "tenant", max_len=64),
        email=string_field(obj, "email", max_len=320),
        password=string_field(obj, "password", max_len=200),
    )


def _presence(obj: dict[str, Any], client_id: ClientId) -> PresenceSet:
    status = obj.get("status")
    if status not in ("online", "away"):
        raise ProtocolError("invalid_field", "'status' must be 'online' or 'away'")
    return PresenceSet(client_id, status)


def _queue(action: str) -> Parser:
    def parse(obj: dict[str, Any], client_id: ClientId) -> QueueCommand:
        return QueueCommand(client_id, action)

    return parse


def _list(obj: dict[str, Any], client_id: ClientId) -> ConversationsList:
    return ConversationsList(client_id)


def _live(obj: dict[str, Any], client_id: ClientId) -> ConversationsLive:
    minutes = obj.get("minutes", 30)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
        raise ProtocolError("invalid_field", "'minutes' must be an integer 1..1440")
    return ConversationsLive(client_id, minutes)


def _action(action: str) -> Parser:
    def parse(obj: dict[str, Any], client_id: ClientId) -> ConversationAction:
        return ConversationAction(
            client_id, action, string_field(obj, "conversation_id", max_len=64)
        )

    return parse


def _send(obj: dict[str, Any], client_id: ClientId) -> ConversationSend:
    content = obj.get("content")
    if content is None:
        raise ProtocolError("missing_field", "'content' is required")
    if not isinstance(content, str):
        raise ProtocolError("invalid_field", "'content' must be a string")
    return ConversationSend(client_id, string_field(obj, "conversation_id", max_len=64), content)


def _transfer(obj: dict[str, Any], client_id: ClientId) -> ConversationTransfer:
    return ConversationTransfer(
        client_id,
        string_field(obj, "conversation_id", max_len=64),
        string_field(obj, "to_agent_id", max_len=64, required=False),
    )


CONSOLE_PARSERS: dict[str, Callable[[dict[str, Any], ClientId], Any]] = {
    "hello": _hello,
    "presence.set": _presence,
    "queue.subscribe": _queue("subscribe"),
    "queue.unsubscribe": _queue("unsubscribe"),
    "conversations.list": _list,
    "conversations.live": _live,
    **{f"conversation.{action}": _action(action) for action in CONVERSATION_ACTIONS},
    "conversation.send": _send,
    "conversation.transfer": _transfer,
    **{
        name: PARSERS[name]
        for name in ("subscribe", "unsubscribe", "typing", "confirmation.resolve", "ping")
    },
}
