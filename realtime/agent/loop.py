"""The run loop: one agent turn, from retrieval to the last token.

:meth:`Agent.run` retrieves passages (when the bot has knowledge), asks the provider,
streams its text as ``run.token`` events, executes the tools it calls (a ``run.step``
each) and asks again, until the model answers without tools or the step limit is hit.
Everything said so far is kept in a :class:`RunState`, so the caller can store it
whichever way the run ends (completed, failed, cancelled).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from realtime import events
from realtime.agent.provider import (
    Cite,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCallRequest,
    Usage,
)
from realtime.agent.tools import ToolContext, ToolRegistry
from realtime.errors import run_error
from realtime.knowledge import Passage
from realtime.knowledge.retrieval import Retriever
from realtime.store.records import Message

Emit = Callable[[events.Event], Awaitable[object]]

_MARKER_RE = re.compile(r"\[(\d{1,3})\]")
ROUND_SEPARATOR = "\n\n"
PASSAGE_CHARS = 1500
SNIPPET_CHARS = 240


@dataclass(slots=True)
class RunState:
    """Everything a run has produced so far."""

    run_id: str
    conversation_id: str
    config: dict[str, Any] = field(default_factory=dict)  # the bot's settings for this run
    threshold: float = 0.3
    parts: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    cited: tuple[int, ...] | None = None
    confidence: float | None = None
    usage: dict[str, int] = field(default_factory=events.empty_usage)
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add_usage(self, usage: Usage) -> None:
        self.usage["input_tokens"] += usage.input_tokens
        self.usage["output_tokens"] += usage.output_tokens
        self.usage["cached_tokens"] += usage.cached_tokens
        self.usage["reasoning_tokens"] += usage.reasoning_tokens
        self.usage["total_tokens"] = self.usage["input_tokens"] + self.usage["output_tokens"]

    def citations(self) -> list[dict[str, Any]]:
        """The passages the answer drew on, each with the ``marker`` [n] it has in the text."""
        config, threshold = self.config, self.threshold
        if not config.get("citations_enabled", True) or not self.passages:
            return []
        if self.cited is not None:
            chosen = [(i + 1, self.passages[p]) for i, p in enumerate(self.cited)]
        else:
            markers = dict.fromkeys(int(m) for m in _MARKER_RE.findall(self.text))
            chosen = [(n, self.passages[n - 1]) for n in markers if 1 <= n <= len(self.passages)]
            if not chosen:
                chosen = [(i + 1, p) for i, p in enumerate(self.passages) if p.score >= threshold]
        include_links = config.get("include_links", True)
        return [
            {
                "marker": marker,
                "source_id": p.source_id,
                "title": p.title,
                "url": p.url if include_links else "",
                "snippet": _snippet(p.text),
                "score": p.score,
            }
            for marker, p in chosen
        ]


@dataclass(frozen=True, slots=True)
class RunInput:
    bot_uuid: str
    config: dict[str, Any]  # the bot's settings, defaults filled in
    model: str
    question: str
    history: Sequence[Message]
    has_knowledge: bool
    threshold: float


class Agent:
    def __init__(
        self,
        provider: Provider,
        tools: ToolRegistry,
        retriever: Retriever,
        *,
        max_tool_steps: int = 5,
    ) -> None:
        self.provider = provider
        self.tools = tools
        self.retriever = retriever
        self.max_tool_steps = max_tool_steps

    async def run(self, inp: RunInput, state: RunState, emit: Emit) -> None:
        """Produce the answer into ``state``, emitting events. Raises RunError on failure."""
        cid, rid = state.conversation_id, state.run_id
        state.config, state.threshold = inp.config, inp.threshold
        if inp.has_knowledge:
            await emit(events.run_status(cid, rid, "retrieving"))
            state.passages = await self.retriever.search(inp.bot_uuid, inp.question)
            state.confidence = state.passages[0].score if state.passages else 0.0
        await emit(events.run_status(cid, rid, "generating"))
        enabled = [
            name
            for name in inp.config.get("tools", ())
            if name != "search_knowledge" or inp.has_knowledge
        ]
        request = ModelRequest(
            model=inp.model,
            messages=_messages(inp, state.passages),
            tools=self.tools.schemas(enabled) if self.provider.name != "offline" else [],
            temperature=inp.config.get("temperature"),
            max_tokens=inp.config.get("max_tokens"),
            question=inp.question,
            passages=state.passages,
            threshold=inp.threshold,
            offer_human=bool(inp.config.get("handoff_enabled")),
        )
        ctx = ToolContext(inp.bot_uuid, self.retriever, state.passages)
        for round_no in range(self.max_tool_steps + 1):
            round_text: list[str] = []
            calls: list[ToolCallRequest] = []
            async for item in self.provider.stream(request):
                if isinstance(item, TextDelta):
                    if not round_text and state.parts:
                        await self._token(state, ROUND_SEPARATOR, emit)
                    round_text.append(item.text)
                    await self._token(state, item.text, emit)
                elif isinstance(item, ToolCallRequest):
                    calls.append(item)
                elif isinstance(item, Usage):
                    state.add_usage(item)
                elif isinstance(item, Cite):
                    state.cited = item.passages
            if not calls:
                return
            if round_no == self.max_tool_steps:
                raise run_error("max_steps", "the model kept calling tools; ask more precisely")
            thought = "".join(round_text)
            request.messages.append(_assistant_tool_message(thought, calls))
            await emit(events.run_status(cid, rid, "executing_tool"))
            for call in calls:
                params, result = await self.tools.execute(call, ctx, enabled)
                step = {
                    "step": len(state.steps) + 1,
                    "thought": thought,
                    "action": call.name,
                    "params": params,
                    "tool_call_id": call.id,
                    "observation": result.observation,
                }
                state.steps.append(step)
                await emit(events.run_step(cid, rid, **step))
                request.messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": result.observation}
                )
            await emit(events.run_status(cid, rid, "generating"))

    @staticmethod
    async def _token(state: RunState, text: str, emit: Emit) -> None:
        if state.first_token_at is None:
            state.first_token_at = time.monotonic()
        state.parts.append(text)
        await emit(events.run_token(state.conversation_id, state.run_id, text))


def _messages(inp: RunInput, passages: Sequence[Passage]) -> list[dict[str, Any]]:
    system = inp.config.get("instructions") or ""
    if passages:
        numbered = "\n\n".join(
            f"[{i}] {p.title} ({p.url})\n{p.text[:PASSAGE_CHARS]}"
            for i, p in enumerate(passages, 1)
        )
        system += (
            "\n\nKnowledge passages (cite the ones you use with their [n] marker):\n\n" + numbered
        )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in inp.history:
        if message.role == "user":
            messages.append({"role": "user", "content": message.content})
        elif message.role in ("assistant", "agent") and message.content:
            messages.append({"role": "assistant", "content": message.content})
    messages.append({"role": "user", "content": inp.question})
    return messages


def _assistant_tool_message(thought: str, calls: list[ToolCallRequest]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": thought or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
