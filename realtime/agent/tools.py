"""Tools the model may call, in one registry.

A tool has a JSON-schema of parameters, a handler, and a ``write`` flag (writes wait for
the visitor's confirmation, in a later issue). :meth:`ToolRegistry.execute` never raises
for anything the model wrote: bad JSON, an unknown tool or bad arguments become an
observation that starts with ``error:``, which the model sees and can correct.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from realtime.agent.provider import ToolCallRequest
from realtime.knowledge import Passage
from realtime.knowledge.retrieval import Retriever

log = logging.getLogger("realtime.agent.tools")


@dataclass(slots=True)
class ToolContext:
    bot_uuid: str
    retriever: Retriever
    passages: list[Passage]  # the run's numbered passages; tools append to it


@dataclass(frozen=True, slots=True)
class ToolResult:
    observation: str
    ok: bool = True


class ToolArgumentError(ValueError):
    """Arguments that do not match the tool's parameters; the model is told why."""


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    write: bool = False

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(slots=True)
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def schemas(self, names: Iterable[str]) -> list[dict[str, Any]]:
        return [self.tools[n].schema() for n in names if n in self.tools]

    async def execute(
        self, call: ToolCallRequest, ctx: ToolContext, enabled: Iterable[str]
    ) -> tuple[Any, ToolResult]:
        """Run one call; returns (the parsed params, or the raw text if unparsable; result)."""
        try:
            params = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            return call.arguments, ToolResult("error: the arguments are not valid JSON", ok=False)
        tool = self.tools.get(call.name)
        if tool is None or call.name not in set(enabled):
            return params, ToolResult(f"error: there is no tool named {call.name!r}", ok=False)
        if not isinstance(params, dict):
            return params, ToolResult("error: the arguments must be a JSON object", ok=False)
        try:
            return params, await tool.handler(params, ctx)
        except ToolArgumentError as exc:
            return params, ToolResult(f"error: {exc}", ok=False)
        except Exception:
            log.exception("tool %s failed", call.name)
            return params, ToolResult("error: the tool failed unexpectedly", ok=False)


def _string_arg(params: dict[str, Any], name: str, max_len: int) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolArgumentError(f"{name!r} must be a non-empty string")
    if len(value) > max_len:
        raise ToolArgumentError(f"{name!r} must be at most {max_len} characters")
    return value


async def search_knowledge(params: dict[str, Any], ctx: ToolContext) -> ToolResult:
    query = _string_arg(params, "query", 500)
    found = await ctx.retriever.search(ctx.bot_uuid, query)
    if not found:
        return ToolResult("No relevant passages found.")
    lines = []
    for passage in found:
        try:
            number = ctx.passages.index(passage) + 1
        except ValueError:
            ctx.passages.append(passage)
            number = len(ctx.passages)
        lines.append(f"[{number}] {passage.title} ({passage.url})\n{passage.text}")
    return ToolResult("\n\n".join(lines))


SEARCH_KNOWLEDGE = Tool(
    name="search_knowledge",
    description=(
        "Search the company's knowledge sources. Returns numbered passages; cite them in "
        "your answer with their [n] markers."
    ),
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string", "description": "what to look for"}},
        "required": ["query"],
        "additionalProperties": False,
    },
    handler=search_knowledge,
)


def default_registry() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(SEARCH_KNOWLEDGE)
    return registry
