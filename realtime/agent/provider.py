"""What a provider (an LLM, or the offline responder) is to the run loop.

A provider turns a :class:`ModelRequest` into an async stream of small events: text deltas,
complete tool calls, usage, and (offline only) which passages the answer cites. Errors are
raised as :class:`realtime.errors.RunError` with a ``run.failed`` code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from realtime.knowledge import Passage


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it; may be invalid


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Cite:
    """The answer's markers [1..n] cite these passages (indexes into the request's passages)."""

    passages: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Handoff:
    """The offline responder could not answer and the bot hands off by itself."""

    reason: str = "auto"


ProviderEvent = TextDelta | ToolCallRequest | Usage | Cite | Handoff


@dataclass(slots=True)
class ModelRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    question: str = ""  # the user message this run answers
    passages: list[Passage] = field(default_factory=list)  # retrieved, numbered [1..n]
    threshold: float = 0.3
    offer_human: bool = False
    auto_handoff: bool = False  # hand off (not just offer) when there is no answer


class Provider(Protocol):
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...
