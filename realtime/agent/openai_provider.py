"""The ``openai`` provider: any OpenAI-compatible chat-completions endpoint.

The ``openai`` package gives us authentication, base URLs, retries before the first byte
and typed errors; we read its *raw* streaming response and parse each ``data:`` line with
orjson, because the package's own parsed stream costs ~70 µs a chunk against ~6 µs
(ARCHITECTURE §10). Errors and timeouts become ``run.failed`` codes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import orjson

from realtime.agent.provider import ModelRequest, ProviderEvent, TextDelta, ToolCallRequest, Usage
from realtime.config import Settings
from realtime.errors import RunError, run_error

log = logging.getLogger("realtime.agent.openai")


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings, *, max_connections: int = 4096) -> None:
        timeout = openai.Timeout(settings.llm_read_timeout, connect=settings.llm_connect_timeout)
        self._include_usage = settings.llm_include_usage
        self.client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",
            base_url=settings.openai_base_url or None,
            max_retries=settings.llm_max_retries,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(
                timeout=timeout,
                limits=httpx2.Limits(
                    max_connections=max_connections, max_keepalive_connections=256
                ),
            ),
        )

    async def close(self) -> None:
        await self.client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": True,
        }
        if request.tools:
            kwargs["tools"] = request.tools
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if self._include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        try:
            async with self.client.chat.completions.with_streaming_response.create(
                **kwargs
            ) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, `event:` lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        raise _stream_error(chunk["error"])
                    usage = chunk.get("usage")
                    if usage:
                        yield _usage(usage)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            yield TextDelta(content)
                        for call in delta.get("tool_calls") or ():
                            _accumulate(calls, call)
        except RunError:
            raise
        except openai.APIError as exc:
            raise _map_api_error(exc) from exc
        except httpx2.TimeoutException as exc:
            raise run_error("timeout", "the model stopped sending data") from exc
        except httpx2.HTTPError as exc:
            raise run_error("provider_unavailable", f"the model connection failed: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise run_error("provider_error", "the model sent a malformed stream") from exc
        for index in sorted(calls):
            call_id, name, arguments = calls[index]
            yield ToolCallRequest(call_id or f"call_{index}", name, arguments)


def _accumulate(calls: dict[int, list[str]], delta: dict[str, Any]) -> None:
    index = delta.get("index", 0)
    entry = calls.setdefault(index, ["", "", ""])
    if delta.get("id"):
        entry[0] = delta["id"]
    function = delta.get("function") or {}
    if function.get("name"):
        entry[1] += function["name"]
    if function.get("arguments"):
        entry[2] += function["arguments"]


def _usage(usage: dict[str, Any]) -> Usage:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _map_api_error(exc: openai.APIError) -> RunError:
    if isinstance(exc, openai.APITimeoutError):
        return run_error("timeout", "the model did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return run_error("provider_unavailable", "the model endpoint cannot be reached")
    if isinstance(exc, openai.RateLimitError):
        return run_error("rate_limited", "the model endpoint is rate-limiting us; try again soon")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return run_error("provider_auth", "the model endpoint refused our credentials")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return run_error("provider_error", f"the model endpoint failed ({exc.status_code})")
        return run_error(
            "provider_rejected", f"the model endpoint refused the request ({exc.status_code})"
        )
    return run_error("provider_error", f"the model endpoint failed: {exc.message}")


def _stream_error(error: Any) -> RunError:
    message = error.get("message") if isinstance(error, dict) else str(error)
    return run_error("provider_error", f"the model failed mid-stream: {message}")
