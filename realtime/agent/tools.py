"""Tools the model may call, in one registry.

A tool has a JSON-schema of parameters, a handler, an optional ``check`` (validation
without effects) and a ``write`` flag: a write never runs before the visitor confirms it,
so the run loop checks it, pauses, and runs it only after approval. Nothing the model
writes makes a tool raise: bad JSON, an unknown tool or bad arguments become an observation
that starts with ``error:``, which the model sees and can correct.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from realtime.agent.provider import ToolCallRequest
from realtime.data.source import DataSource
from realtime.errors import ToolArgumentError
from realtime.knowledge import Passage
from realtime.knowledge.retrieval import Retriever

log = logging.getLogger("realtime.agent.tools")


@dataclass(slots=True)
class ToolContext:
    bot_uuid: str
    retriever: Retriever
    passages: list[Passage]  # the run's numbered passages; tools append to it
    data: DataSource | None = None  # the bot's data source, when it has one
    handoff_reason: str | None = None  # set by request_handoff: the run ends, a person joins


@dataclass(frozen=True, slots=True)
class ToolResult:
    observation: str
    ok: bool = True


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[ToolResult]]
Check = Callable[[dict[str, Any], ToolContext], None]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    write: bool = False
    check: Check | None = None  # raises ToolArgumentError; required for writes

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class Prepared:
    """A call parsed against the registry: its params and tool, or why it cannot run."""

    params: Any  # the parsed arguments (the raw text when they were not JSON)
    tool: Tool | None
    error: ToolResult | None


@dataclass(slots=True)
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def schemas(self, names: Iterable[str]) -> list[dict[str, Any]]:
        return [self.tools[n].schema() for n in names if n in self.tools]

    def prepare(self, call: ToolCallRequest, ctx: ToolContext, enabled: Iterable[str]) -> Prepared:
        """Parse and check a call. Writes are checked here, before anyone is asked."""
        try:
            params = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            return Prepared(call.arguments, None, _error("the arguments are not valid JSON"))
        tool = self.tools.get(call.name)
        if tool is None or call.name not in set(enabled):
            return Prepared(params, None, _error(f"there is no tool named {call.name!r}"))
        if not isinstance(params, dict):
            return Prepared(params, None, _error("the arguments must be a JSON object"))
        problem = self.check(tool, params, ctx)
        return Prepared(params, tool, problem)

    def check(self, tool: Tool, params: Any, ctx: ToolContext) -> ToolResult | None:
        """Why ``params`` cannot run, or None. Used for edited params of a confirmation too."""
        if not isinstance(params, dict):
            return _error("the arguments must be a JSON object")
        if tool.check is None:
            return None
        try:
            tool.check(params, ctx)
        except ToolArgumentError as exc:
            return _error(str(exc))
        return None

    async def run(self, tool: Tool, params: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            return await tool.handler(params, ctx)
        except ToolArgumentError as exc:
            return _error(str(exc))
        except Exception:
            log.exception("tool %s failed", tool.name)
            return _error("the tool failed unexpectedly")

    async def execute(
        self, call: ToolCallRequest, ctx: ToolContext, enabled: Iterable[str]
    ) -> tuple[Any, ToolResult]:
        """Prepare and run one call at once (reads); returns (params, result)."""
        prepared = self.prepare(call, ctx, enabled)
        if prepared.error is not None or prepared.tool is None:
            return prepared.params, prepared.error or _error("the tool cannot run")
        return prepared.params, await self.run(prepared.tool, prepared.params, ctx)


def _error(message: str) -> ToolResult:
    return ToolResult(f"error: {message}", ok=False)


def _string_arg(params: dict[str, Any], name: str, max_len: int) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolArgumentError(f"{name!r} must be a non-empty string")
    if len(value) > max_len:
        raise ToolArgumentError(f"{name!r} must be at most {max_len} characters")
    return value


# -- knowledge ------------------------------------------------------------------------------


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


# -- handoff --------------------------------------------------------------------------------


async def request_handoff(params: dict[str, Any], ctx: ToolContext) -> ToolResult:
    ctx.handoff_reason = "model"
    return ToolResult("A person from the team has been asked to join this conversation.")


REQUEST_HANDOFF = Tool(
    name="request_handoff",
    description=(
        "Hand the conversation to a person from the team, when the visitor needs one or you "
        "cannot help. The conversation continues with them."
    ),
    parameters={
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "why, in a few words"}},
        "additionalProperties": False,
    },
    handler=request_handoff,
)


# -- data (DECISIONS 15: Botovis's names and parameters) -------------------------------------

_FILTERS = {
    "type": "object",
    "description": (
        'column: value for equality, or column: {"op": value} with op one of eq, ne, gt, '
        "gte, lt, lte, contains, starts_with, in (a list), is_null (true/false)"
    ),
}
_TABLE = {"type": "string", "description": "a table name from the schema"}
_DATA = {"type": "object", "description": "column: value"}


def _data_tool(
    name: str,
    description: str,
    properties: dict[str, Any],
    required: list[str],
    *,
    write: bool = False,
) -> Tool:
    def check(params: dict[str, Any], ctx: ToolContext) -> None:
        if ctx.data is None:
            raise ToolArgumentError("this bot has no database")
        ctx.data.check(name, params)

    async def handler(params: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if ctx.data is None:
            raise ToolArgumentError("this bot has no database")
        outcome = await ctx.data.run(name, params)
        return ToolResult(outcome.observation, ok=outcome.ok)

    return Tool(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {"table": _TABLE, **properties},
            "required": ["table", *required],
        },
        handler=handler,
        write=write,
        check=check,
    )


DATA_TOOLS = (
    _data_tool(
        "search_records",
        "Find rows of a table, with optional filters, columns, order_by ('-col' for "
        "descending), limit (max 100) and offset.",
        {
            "filters": _FILTERS,
            "columns": {"type": "array", "items": {"type": "string"}},
            "order_by": {"type": "string"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
        [],
    ),
    _data_tool(
        "count_records",
        "Count the rows of a table that match the filters.",
        {"filters": _FILTERS},
        [],
    ),
    _data_tool(
        "aggregate",
        "Compute count, sum, avg, min or max of a column, optionally grouped by columns.",
        {
            "function": {"type": "string", "enum": ["count", "sum", "avg", "min", "max"]},
            "column": {"type": "string"},
            "group_by": {"type": "array", "items": {"type": "string"}},
            "filters": _FILTERS,
            "limit": {"type": "integer"},
        },
        ["function"],
    ),
    _data_tool(
        "get_sample_data", "A few example rows of a table.", {"limit": {"type": "integer"}}, []
    ),
    _data_tool(
        "create_record",
        "Create a row. The visitor must confirm it first.",
        {"data": _DATA},
        ["data"],
        write=True,
    ),
    _data_tool(
        "update_record",
        "Change columns of the row with this id. The visitor must confirm it first.",
        {"id": {"type": ["integer", "string"]}, "data": _DATA},
        ["id", "data"],
        write=True,
    ),
    _data_tool(
        "delete_record",
        "Delete the row with this id. The visitor must confirm it first.",
        {"id": {"type": ["integer", "string"]}},
        ["id"],
        write=True,
    ),
)
DATA_TOOL_NAMES = tuple(t.name for t in DATA_TOOLS)


def default_registry() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(SEARCH_KNOWLEDGE)
    registry.register(REQUEST_HANDOFF)
    for tool in DATA_TOOLS:
        registry.register(tool)
    return registry
