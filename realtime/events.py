"""The events of a conversation's stream, and how they are encoded.

Every live thing is an event on its conversation's stream (ARCHITECTURE §3)::

    {"type": "run.token", "seq": 17, "conversation_id": "...", "ts": 1764420000123,
     "run_id": "...", "delta": "Hel"}

An event is encoded once, without its ``seq``: the broker assigns the ``seq`` and splices it
in after ``type`` (:func:`frame_text`), so a Redis script can do the same with string
concatenation. The resulting text goes unchanged to every subscriber.

The constructors below are the only place where event shapes are written; the field names
that clients rely on are documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

# Event types, as constants so a typo is a NameError rather than a silent new type.
MESSAGE_CREATED = "message.created"
RUN_STARTED = "run.started"
RUN_STATUS = "run.status"
RUN_STEP = "run.step"
RUN_TOKEN = "run.token"
RUN_REPLACED = "run.replaced"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
RUN_CANCELLED = "run.cancelled"
CONFIRMATION_REQUESTED = "confirmation.requested"
CONFIRMATION_RESOLVED = "confirmation.resolved"
HANDOFF_REQUESTED = "handoff.requested"
HANDOFF_ACCEPTED = "handoff.accepted"
HANDOFF_TRANSFERRED = "handoff.transferred"
HANDOFF_RELEASED = "handoff.released"
HANDOFF_CONTEXT = "handoff.context"
TYPING = "typing"
NOTICE = "notice"
CONVERSATION_UPDATED = "conversation.updated"
LEAD_CAPTURED = "lead.captured"

TERMINAL_RUN_EVENTS = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED})


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Event:
    """An event ready to publish: its type and its JSON body without ``seq``.

    ``ephemeral`` events (typing indicators) get no ``seq`` and are not kept in the replay
    log: they are only worth something live.
    """

    type: str
    conversation_id: str
    body: bytes
    ephemeral: bool = False


@dataclass(frozen=True, slots=True)
class Frame:
    """A published event as subscribers receive it: its ``seq`` and its wire text."""

    seq: int
    type: str
    text: str


def make(type: str, conversation_id: str, /, **fields: Any) -> Event:
    body = orjson.dumps(
        {"type": type, "conversation_id": conversation_id, "ts": now_ms(), **fields}
    )
    return Event(type, conversation_id, body)


def frame_text(event_type: str, body: bytes, seq: int) -> str:
    """Splice ``"seq":N`` into an encoded event right after its ``type``.

    ``body`` starts with ``{"type":"<type>"`` (event types are plain ASCII), as every
    constructor here writes it.
    """
    cut = len(event_type) + 11  # len('{"type":"') + len(type) + len('",')
    if body[cut - 1 : cut] != b",":  # nothing after the type
        return (body[:-1] + b',"seq":' + str(seq).encode() + b"}").decode()
    return (body[:cut] + b'"seq":' + str(seq).encode() + b"," + body[cut:]).decode()


def to_frame(event: Event, seq: int) -> Frame:
    return Frame(seq, event.type, frame_text(event.type, event.body, seq))


# -- constructors ---------------------------------------------------------------------------


def message_created(conversation_id: str, message: dict[str, Any]) -> Event:
    return make(MESSAGE_CREATED, conversation_id, message=message)


def run_started(conversation_id: str, run_id: str, message_id: str) -> Event:
    return make(RUN_STARTED, conversation_id, run_id=run_id, message_id=message_id)


def run_status(conversation_id: str, run_id: str, stage: str) -> Event:
    return make(RUN_STATUS, conversation_id, run_id=run_id, stage=stage)


def run_step(
    conversation_id: str,
    run_id: str,
    *,
    step: int,
    thought: str,
    action: str,
    params: Any,
    tool_call_id: str,
    observation: str | None = None,
) -> Event:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "step": step,
        "thought": thought,
        "action": action,
        "params": params,
        "tool_call_id": tool_call_id,
    }
    if observation is not None:
        fields["observation"] = observation
    return make(RUN_STEP, conversation_id, **fields)


def run_token(conversation_id: str, run_id: str, delta: str) -> Event:
    return make(RUN_TOKEN, conversation_id, run_id=run_id, delta=delta)


def run_completed(
    conversation_id: str,
    run_id: str,
    message: dict[str, Any],
    *,
    confidence: float | None,
    usage: dict[str, int],
) -> Event:
    return make(
        RUN_COMPLETED,
        conversation_id,
        run_id=run_id,
        message=message,
        confidence=confidence,
        usage=usage,
    )


def run_failed(
    conversation_id: str,
    run_id: str,
    *,
    code: str,
    message: str,
    retryable: bool,
    partial: dict[str, Any] | None = None,
) -> Event:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "code": code,
        "message": message,
        "retryable": retryable,
    }
    if partial is not None:
        fields["partial"] = partial
    return make(RUN_FAILED, conversation_id, **fields)


def run_cancelled(conversation_id: str, run_id: str, message: dict[str, Any] | None) -> Event:
    return make(RUN_CANCELLED, conversation_id, run_id=run_id, message=message)


def confirmation_requested(
    conversation_id: str,
    run_id: str,
    *,
    tool_call_id: str,
    tool: str,
    params: dict[str, Any],
    step: int,
    expires_at: str | None,
) -> Event:
    return make(
        CONFIRMATION_REQUESTED,
        conversation_id,
        run_id=run_id,
        tool_call_id=tool_call_id,
        tool=tool,
        params=params,
        step=step,
        expires_at=expires_at,
    )


def confirmation_resolved(
    conversation_id: str, run_id: str, tool_call_id: str, decision: str, by: str
) -> Event:
    return make(
        CONFIRMATION_RESOLVED,
        conversation_id,
        run_id=run_id,
        tool_call_id=tool_call_id,
        decision=decision,
        by=by,
    )


def typing(conversation_id: str, who: str, on: bool, agent: dict[str, Any] | None = None) -> Event:
    fields: dict[str, Any] = {
        "type": TYPING,
        "conversation_id": conversation_id,
        "ts": now_ms(),
        "who": who,
        "on": on,
    }
    if agent is not None:
        fields["agent"] = agent
    return Event(TYPING, conversation_id, orjson.dumps(fields), ephemeral=True)


def handoff_requested(
    conversation_id: str, *, queue_position: int, reason: str, agents_online: bool
) -> Event:
    return make(
        HANDOFF_REQUESTED,
        conversation_id,
        queue_position=queue_position,
        reason=reason,
        agents_online=agents_online,
    )


def handoff_accepted(conversation_id: str, agent: dict[str, Any], *, take_over: bool) -> Event:
    return make(HANDOFF_ACCEPTED, conversation_id, agent=agent, take_over=take_over)


def handoff_transferred(
    conversation_id: str,
    *,
    from_agent: dict[str, Any],
    agent: dict[str, Any] | None,
    queue_position: int | None,
    reason: str,
) -> Event:
    return make(
        HANDOFF_TRANSFERRED,
        conversation_id,
        from_agent=from_agent,
        agent=agent,
        queue_position=queue_position,
        reason=reason,
    )


def handoff_released(conversation_id: str, *, reason: str, agent: dict[str, Any] | None) -> Event:
    return make(HANDOFF_RELEASED, conversation_id, reason=reason, agent=agent)


def handoff_context(
    conversation_id: str,
    *,
    agent: dict[str, Any],
    summary: str,
    visitor: dict[str, Any],
    pending_confirmation: dict[str, Any] | None,
    agent_confirmations: bool = False,
) -> Event:
    return make(
        HANDOFF_CONTEXT,
        conversation_id,
        agent=agent,
        summary=summary,
        visitor=visitor,
        pending_confirmation=pending_confirmation,
        agent_confirmations=agent_confirmations,
    )


def conversation_updated(
    conversation_id: str, *, status: str, agent: dict[str, Any] | None
) -> Event:
    return make(CONVERSATION_UPDATED, conversation_id, status=status, agent=agent)


def lead_captured(conversation_id: str, visitor: dict[str, str]) -> Event:
    """The visitor filled in the contact form (the answers, as the agents' consoles show)."""
    return make(LEAD_CAPTURED, conversation_id, visitor=visitor)


def tenant_event(channel: str, type: str, **fields: Any) -> Event:
    """An event of a tenant's console channel (queue and presence changes): live only."""
    body = orjson.dumps({"type": type, "ts": now_ms(), **fields})
    return Event(type, channel, body, ephemeral=True)


def notice(conversation_id: str, code: str, message: str, level: str = "warning") -> Event:
    return make(NOTICE, conversation_id, code=code, level=level, message=message)


def empty_usage() -> dict[str, int]:
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
