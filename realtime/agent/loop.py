"""The run loop: one agent turn, from retrieval to the last token.

:meth:`Agent.run` retrieves passages (when the bot has knowledge), asks the provider,
streams its text as ``run.token`` events, executes the tools it calls (a ``run.step``
each) and asks again, until the model answers without tools or the step limit is hit.
Everything said so far is kept in a :class:`RunState`, so the caller can store it
whichever way the run ends (completed, failed, cancelled).

A write tool pauses the run: its step goes out without observation and :meth:`Agent.run`
returns a :class:`Pause` holding a JSON continuation. :meth:`Agent.resume` goes on from it
after the visitor's decision, in whichever process receives it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from realtime import events
from realtime.agent.offline import split_tokens
from realtime.agent.provider import (
    Cite,
    Handoff,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCallRequest,
    Usage,
)
from realtime.agent.tools import DATA_TOOL_NAMES, ToolContext, ToolRegistry, ToolResult
from realtime.data.source import DataSource
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
    handoff_reason: str | None = None  # the run asked for a person: model | auto
    silent: bool = False  # a person owns the conversation: finish a write, say nothing more

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

    def snapshot(self) -> dict[str, Any]:
        """What a paused run keeps in the store (JSON), to resume anywhere."""
        return {
            "parts": self.parts,
            "steps": self.steps,
            "passages": [asdict(p) for p in self.passages],
            "cited": list(self.cited) if self.cited is not None else None,
            "confidence": self.confidence,
            "usage": self.usage,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.parts = list(snapshot["parts"])
        self.steps = list(snapshot["steps"])
        self.passages = [Passage(**p) for p in snapshot["passages"]]
        cited = snapshot.get("cited")
        self.cited = tuple(cited) if cited is not None else None
        self.confidence = snapshot.get("confidence")
        self.usage = dict(snapshot["usage"])


@dataclass(frozen=True, slots=True)
class RunInput:
    bot_uuid: str
    config: dict[str, Any]  # the bot's settings, defaults filled in
    model: str
    question: str
    history: Sequence[Message]
    has_knowledge: bool
    threshold: float
    data: DataSource | None = None
    # From the signed context envelope the user message was sent under (DECISIONS 4):
    page_context: dict[str, Any] | None = None  # ``p``, shown to the model
    prompt: str | None = None  # ``pr``, added to the bot's instructions
    allowed_tools: tuple[str, ...] | None = None  # ``t``: None, every tool of the bot


@dataclass(frozen=True, slots=True)
class Pause:
    """A write waits for the visitor: the pending call and how to go on (a stored continuation).

    ``continuation`` is JSON: the model messages so far, the round's calls, the index of the
    pending one, the round number and thought, and the run's state. Any process can resume
    from it (DECISIONS 16).
    """

    tool_call_id: str
    tool: str
    params: dict[str, Any]
    step: int
    continuation: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Decision:
    """How a pending write was resolved: ``approved`` (with the params to run) or ``rejected``."""

    approved: bool
    params: dict[str, Any]
    by: str


DECLINED = "The user declined this action; it was not executed."
HANDOFF_TEXT = "I'm passing this conversation to a person from our team."
SKIPPED = "Not executed: the user declined an earlier action of this step."


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

    async def run(self, inp: RunInput, state: RunState, emit: Emit) -> Pause | None:
        """Produce the answer into ``state``, emitting events.

        Returns a :class:`Pause` when a write waits for confirmation, None when the answer is
        complete. Raises RunError on failure.
        """
        cid, rid = state.conversation_id, state.run_id
        state.config, state.threshold = inp.config, inp.threshold
        if inp.has_knowledge:
            await emit(events.run_status(cid, rid, "retrieving"))
            state.passages = await self.retriever.search(inp.bot_uuid, inp.question)
            state.confidence = state.passages[0].score if state.passages else 0.0
        await emit(events.run_status(cid, rid, "generating"))
        request = self._request(inp, state, _messages(inp, state.passages))
        return await self._rounds(inp, state, request, 0, emit)

    async def resume(
        self,
        inp: RunInput,
        state: RunState,
        continuation: dict[str, Any],
        decision: Decision,
        emit: Emit,
    ) -> Pause | None:
        """Go on after a pending write was approved (run it) or rejected (tell the model)."""
        cid, rid = state.conversation_id, state.run_id
        state.config, state.threshold = inp.config, inp.threshold
        state.restore(continuation["state"])
        request = self._request(inp, state, continuation["messages"])
        ctx = self._context(inp, state)
        calls = [ToolCallRequest(**c) for c in continuation["calls"]]
        index, thought = continuation["index"], continuation["thought"]
        call, step_no = calls[index], continuation["step"]
        resolved = events.confirmation_resolved(
            cid, rid, call.id, "approved" if decision.approved else "rejected", decision.by
        )
        if decision.approved:
            await emit(events.run_status(cid, rid, "executing_tool"))
            result = await self.tools.run(self.tools.tools[call.name], decision.params, ctx)
            step = _step(step_no, thought, call, decision.params, result.observation)
            state.steps[step_no - 1] = step
            await emit(events.run_step(cid, rid, **step))
            await emit(resolved)
            request.messages.append(_tool_message(call.id, result.observation))
            if state.silent:  # a person owns the conversation now: the bot says nothing more
                return None
            pause = await self._calls(inp, state, request, ctx, calls, index + 1, thought, emit)
            if pause is not None:
                return _with_round(pause, continuation["round"])
        else:
            await emit(resolved)
            if state.silent:
                return None
            request.messages.append(_tool_message(call.id, DECLINED))
            for rest in calls[index + 1 :]:
                request.messages.append(_tool_message(rest.id, SKIPPED))
        await emit(events.run_status(cid, rid, "generating"))
        return await self._rounds(inp, state, request, continuation["round"] + 1, emit)

    def _request(
        self, inp: RunInput, state: RunState, messages: list[dict[str, Any]]
    ) -> ModelRequest:
        return ModelRequest(
            model=inp.model,
            messages=messages,
            tools=self.tools.schemas(_enabled(inp)) if self.provider.name != "offline" else [],
            temperature=inp.config.get("temperature"),
            max_tokens=inp.config.get("max_tokens"),
            question=inp.question,
            passages=state.passages,
            threshold=inp.threshold,
            offer_human=bool(inp.config.get("handoff_enabled")),
            auto_handoff=bool(inp.config.get("handoff_enabled"))
            and inp.config.get("handoff_trigger") in ("auto", "both"),
        )

    def _context(self, inp: RunInput, state: RunState) -> ToolContext:
        return ToolContext(inp.bot_uuid, self.retriever, state.passages, inp.data)

    async def _rounds(
        self, inp: RunInput, state: RunState, request: ModelRequest, first: int, emit: Emit
    ) -> Pause | None:
        """Ask the model, run its tools, ask again; until it answers without tools."""
        cid, rid = state.conversation_id, state.run_id
        ctx = self._context(inp, state)
        for round_no in range(first, self.max_tool_steps + 1):
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
                elif isinstance(item, Handoff):
                    state.handoff_reason = item.reason
            if not calls:
                return None
            if round_no == self.max_tool_steps:
                raise run_error("max_steps", "the model kept calling tools; ask more precisely")
            thought = "".join(round_text)
            request.messages.append(_assistant_tool_message(thought, calls))
            await emit(events.run_status(cid, rid, "executing_tool"))
            pause = await self._calls(inp, state, request, ctx, calls, 0, thought, emit)
            if pause is not None:
                return _with_round(pause, round_no)
            if ctx.handoff_reason is not None:
                await self._hand_off(state, ctx.handoff_reason, emit)
                return None
            await emit(events.run_status(cid, rid, "generating"))
        return None

    async def _hand_off(self, state: RunState, reason: str, emit: Emit) -> None:
        """The model asked for a person: say so (unless it did) and end the run."""
        state.handoff_reason = reason
        if not state.parts:
            for token in split_tokens(HANDOFF_TEXT):
                await self._token(state, token, emit)

    async def _calls(
        self,
        inp: RunInput,
        state: RunState,
        request: ModelRequest,
        ctx: ToolContext,
        calls: list[ToolCallRequest],
        start: int,
        thought: str,
        emit: Emit,
    ) -> Pause | None:
        """Run the round's calls from ``start``; stop at the first write that passes its
        checks: its step goes out without observation and the run pauses."""
        cid, rid = state.conversation_id, state.run_id
        enabled = _enabled(inp)
        for index in range(start, len(calls)):
            call = calls[index]
            prepared = self.tools.prepare(call, ctx, enabled)
            step_no = len(state.steps) + 1
            if prepared.tool is not None and prepared.tool.write and prepared.error is None:
                step = _step(step_no, thought, call, prepared.params, None)
                state.steps.append(step)
                await emit(events.run_step(cid, rid, **step))
                return Pause(
                    tool_call_id=call.id,
                    tool=call.name,
                    params=prepared.params,
                    step=step_no,
                    continuation={
                        "messages": request.messages,
                        "calls": [asdict(c) for c in calls],
                        "index": index,
                        "step": step_no,
                        "thought": thought,
                        "round": 0,
                        "state": state.snapshot(),
                    },
                )
            if prepared.error is not None or prepared.tool is None:
                result = prepared.error or ToolResult("error: the tool cannot run", ok=False)
            else:
                result = await self.tools.run(prepared.tool, prepared.params, ctx)
            step = _step(step_no, thought, call, prepared.params, result.observation)
            state.steps.append(step)
            await emit(events.run_step(cid, rid, **step))
            request.messages.append(_tool_message(call.id, result.observation))
        return None

    @staticmethod
    async def _token(state: RunState, text: str, emit: Emit) -> None:
        if state.first_token_at is None:
            state.first_token_at = time.monotonic()
        state.parts.append(text)
        await emit(events.run_token(state.conversation_id, state.run_id, text))


def _enabled(inp: RunInput) -> list[str]:
    """The bot's tools that can work: knowledge search needs sources, data tools a database."""
    enabled = []
    config = inp.config
    if config.get("handoff_enabled") and config.get("handoff_trigger") in ("auto", "both"):
        enabled.append("request_handoff")
    for name in config.get("tools", ()):
        if name == "request_handoff":
            continue
        if name == "search_knowledge" and not inp.has_knowledge:
            continue
        if name in DATA_TOOL_NAMES:
            if inp.data is None:
                continue
            action = {
                "create_record": "create",
                "update_record": "update",
                "delete_record": "delete",
            }.get(name, "read")
            if not inp.data.schema.allows(action):
                continue
        enabled.append(name)
    if inp.allowed_tools is not None:  # the envelope's allowlist narrows the bot's tools
        enabled = [n for n in enabled if n == "request_handoff" or n in inp.allowed_tools]
    return enabled


def _with_round(pause: Pause, round_no: int) -> Pause:
    pause.continuation["round"] = round_no
    return pause


def _step(
    step_no: int, thought: str, call: ToolCallRequest, params: Any, observation: str | None
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "step": step_no,
        "thought": thought,
        "action": call.name,
        "params": params,
        "tool_call_id": call.id,
    }
    if observation is not None:
        step["observation"] = observation
    return step


def _tool_message(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _messages(inp: RunInput, passages: Sequence[Passage]) -> list[dict[str, Any]]:
    system = inp.config.get("instructions") or ""
    if inp.prompt:
        system = f"{system}\n\n{inp.prompt}" if system else inp.prompt
    if inp.page_context:
        page = orjson.dumps(inp.page_context, option=orjson.OPT_SORT_KEYS).decode()
        system += "\n\nThe page the user is on, as the site describes it (JSON):\n" + page
    if inp.data is not None and inp.data.schema.tables:
        system += (
            "\n\nYou can work on the company's database with the data tools. Its tables "
            "(columns; what you may do):\n" + inp.data.schema.describe() + "\nCreating, "
            "changing or deleting a row asks the user to confirm first; call the tool and wait."
        )
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
        elif message.role == "assistant" and message.content:
            messages.append({"role": "assistant", "content": message.content})
        elif message.role == "agent":
            label = (message.meta.get("agent") or {}).get("label", "a person from the team")
            messages.append(
                {
                    "role": "assistant",
                    "content": f"[{label}, a person from the team]: " + message.content,
                }
            )
        elif message.role == "system" and message.meta.get("notice") == "released":
            messages.append({"role": "system", "content": message.content})
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
