"""Plain records the store returns. No behaviour beyond their wire forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """Naive UTC with microseconds: what every DateTime column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def next_month(now: datetime) -> datetime:
    """The start of the calendar month after ``now``'s (naive UTC)."""
    if now.month == 12:
        return datetime(now.year + 1, 1, 1)
    return datetime(now.year, now.month + 1, 1)


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``: ``2026-11-29T12:00:00.123Z``."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    signing_secret: str = field(repr=False)  # signs context envelopes; never on the wire
    created_at: datetime
    monthly_messages: int | None = None  # quota of visitor messages a month; None: none

    def to_wire(self) -> dict[str, Any]:
        """Without the signing secret: it never leaves the server."""
        return {
            "id": self.id,
            "name": self.name,
            "monthly_messages": self.monthly_messages,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant_id: str
    name: str
    prefix: str
    scope: str  # chat | full
    bot_uuid: str | None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "name": self.name,
            "prefix": self.prefix,
            "scope": self.scope,
            "bot_uuid": self.bot_uuid,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class Bot:
    uuid: str
    tenant_id: str
    slug: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "bot_id": self.slug,
            "tenant": self.tenant_id,
            **self.config,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    tenant_id: str
    bot_uuid: str
    owner: str
    status: str
    title: str | None
    epoch: int
    created_at: datetime
    updated_at: datetime
    agent_id: str | None = None
    queued_at: datetime | None = None
    agent_read_at: datetime | None = None
    handoff_reason: str | None = None
    meta: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bot_uuid": self.bot_uuid,
            "status": self.status,
            "title": self.title,
            "agent_id": self.agent_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    role: str
    content: str
    created_at: datetime
    citations: list[dict[str, Any]] | None = None
    steps: list[dict[str, Any]] | None = None
    usage: dict[str, int] | None = None
    confidence: float | None = None
    run_id: str | None = None
    status: str | None = None
    feedback: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "citations": self.citations or [],
            "created_at": iso(self.created_at),
        }
        if self.run_id is not None:
            wire["run_id"] = self.run_id
        if self.status is not None:
            wire["status"] = self.status
        if self.confidence is not None:
            wire["confidence"] = self.confidence
        if self.feedback is not None:
            wire["feedback"] = self.feedback
        if self.meta.get("client_id") is not None:
            wire["client_id"] = self.meta["client_id"]
        if self.meta.get("agent") is not None:
            wire["agent"] = self.meta["agent"]
        return wire


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    conversation_id: str
    message_id: str
    status: str
    created_at: datetime
    finished_at: datetime | None = None
    error_code: str | None = None
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    tenant_id: str
    bot_uuid: str
    title: str
    url: str
    kind: str
    chunk_count: int
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "kind": self.kind,
            "chunks": self.chunk_count,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class ChunkHit:
    """A full-text match: ``rank`` is the engine's own score (lower is better for bm25)."""

    chunk_id: int
    source_id: str
    title: str
    url: str
    text: str
    rank: float


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A write that waits for the visitor, with the continuation of its paused run."""

    id: str
    conversation_id: str
    run_id: str
    tool_call_id: str
    tool: str
    params: dict[str, Any]
    step: int
    status: str  # pending | approved | rejected | expired
    continuation: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    resolved_at: datetime | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "tool_call_id": self.tool_call_id,
            "run_id": self.run_id,
            "tool": self.tool,
            "params": self.params,
            "step": self.step,
            "status": self.status,
            "expires_at": iso(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class HumanAgent:
    """A human support agent of a tenant."""

    id: str
    tenant_id: str
    name: str
    email: str
    label: str
    capacity: int
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "name": self.name,
            "email": self.email,
            "label": self.label,
            "capacity": self.capacity,
            "created_at": iso(self.created_at),
        }

    def public(self) -> dict[str, Any]:
        """What a visitor may see of an agent."""
        return {"id": self.id, "label": self.label}
