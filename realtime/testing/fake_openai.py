"""A scriptable fake of the OpenAI Chat Completions HTTP API, for tests and benchmarks.

It is a real HTTP/1.1 server (raw ``asyncio`` streams, keep-alive, chunked SSE) that the
real ``openai.AsyncOpenAI`` client talks to unchanged::

    async with FakeOpenAI() as fake:
        fake.add("weather", [ToolCall("get_weather", {"city": "Paris"})], Text("It is sunny."))
        fake.add(lambda body: body.get("tools") is None, Error(429, headers={"retry-after": "0"}))
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        ...
        assert fake.requests[0].body["messages"][0]["role"] == "system"

``fake.add(match, *responses)`` adds a rule that matches a request by a substring of its
first user message, by a predicate on the request JSON, or always (``None``). Each
matching request consumes the rule's next response (a step or a list of steps) and an
exhausted rule is removed; rules are tried in the order added, and a request that matches
none gets ``default``. Steps: :class:`Text`, :class:`ToolCall`, :class:`Error`,
:class:`Stall`, :class:`Disconnect`, :class:`Usage`. Every request is recorded in
``fake.requests`` (a list of :class:`Received`) before it is answered.

Routes: ``POST /v1/chat/completions`` (``"stream": true`` or not) and ``GET /v1/models``;
any other route is a 404, a malformed body a 400 and, with ``FakeOpenAI(api_key=...)``, a
missing or wrong bearer token a 401, all with OpenAI-shaped error bodies.

Benchmark CLI (every request gets N word tokens, paced by --delay; uses uvloop if present)::

    python -m realtime.testing.fake_openai --port 8001 --tokens 200 --delay 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import http
import logging
import math
import re
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TypeAlias

import orjson

logger = logging.getLogger(__name__)
_HELLO = "Hello from the fake model."
_INVALID = "invalid_request_error"
_MODELS = {
    "object": "list",
    "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
}


@dataclass(frozen=True, slots=True)
class Text:
    """Content deltas: model-like word tokens, or ``chunk``-character pieces if given;
    ``delay`` seconds before each piece."""

    text: str
    _: KW_ONLY
    chunk: int | None = None
    delay: float = 0.0

    def pieces(self) -> list[str]:
        if self.chunk is None:
            return split_tokens(self.text)
        return [self.text[i : i + self.chunk] for i in range(0, len(self.text), self.chunk)]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function tool call (several in one response are parallel calls)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    _: KW_ONLY
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """As first step: this HTTP status with an OpenAI error body. Later: an SSE error event."""

    status: int
    message: str = "The fake model returned an error."
    _: KW_ONLY
    type: str = "server_error"
    code: str | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Stall:
    """Send nothing for ``seconds``; the response is dropped early if the client leaves."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Abruptly close the TCP connection (no terminating chunk, no ``[DONE]``)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Report these numbers instead of the computed usage."""

    prompt_tokens: int
    completion_tokens: int


Step: TypeAlias = Text | ToolCall | Error | Stall | Disconnect | Usage
Response: TypeAlias = Step | Sequence[Step]
Matcher: TypeAlias = str | Callable[[dict[str, Any]], bool] | None
_STEP_TYPES = (Text, ToolCall, Error, Stall, Disconnect, Usage)
_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Split like a tokenizer: words keep their leading whitespace; the parts join to text."""
    return _TOKEN_RE.findall(text)


def _as_steps(response: Response) -> list[Step]:
    return [response] if isinstance(response, _STEP_TYPES) else list(response)


def _error(message: str, type_: str, code: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages") or ():
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _usage(body: dict[str, Any], sent: int, override: Usage | None) -> dict[str, Any]:
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    prompt = sum(len(_text_of(m.get("content")).split()) for m in messages)
    if override is not None:
        prompt, sent = override.prompt_tokens, override.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": sent,
        "total_tokens": prompt + sent,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _tool_deltas(call: ToolCall, index: int) -> list[dict[str, Any]]:
    """As OpenAI does: a header delta (id, type, name, arguments "") then argument fragments."""
    call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
    args = call.arguments if isinstance(call.arguments, str) else orjson.dumps(call.arguments)
    args = args.decode() if isinstance(args, bytes) else args
    fn = {"name": call.name, "arguments": ""}
    deltas = [{"index": index, "id": call_id, "type": "function", "function": fn}]
    size = math.ceil(len(args) / 3) or 1  # 2-3 fragments (1 if tiny)
    for i in range(0, len(args), size):
        deltas.append({"index": index, "function": {"arguments": args[i : i + size]}})
    return [{"tool_calls": [d]} for d in deltas]


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the fake saw it (headers lowercased; body ``{}`` if absent/invalid)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    method: str = "POST"


@dataclass(eq=False)
class Rule:
    """A match plus the responses it has left, consumed one per matching request."""

    match: Matcher
    responses: deque[list[Step]]

    def matches(self, body: dict[str, Any]) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match in _first_user_text(body)
        return bool(self.match(body))


class _Abort(Exception):
    """Drop the connection without a proper ending (scripted disconnect, client gone)."""


class _Conn:
    """One client connection: buffered writes that notice when the client went away."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: list[bytes] = []

    async def flush(self) -> None:
        if self.reader.at_eof() or self.writer.transport.is_closing():
            raise _Abort("client went away")
        if self.pending:
            self.writer.write(b"".join(self.pending))
            self.pending.clear()
        await self.writer.drain()

    async def stall(self, seconds: float) -> None:
        await self.flush()
        try:  # the client sends nothing mid-response: any read result means it left
            await asyncio.wait_for(self.reader.read(1), timeout=min(seconds, 1e7))
        except TimeoutError:
            return
        raise _Abort("client went away")

    def respond(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        """Buffer a status line, headers and (optional) body; flush() sends them."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        headers = {"x-request-id": f"req_{uuid.uuid4().hex[:24]}", **headers}
        lines = [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
        self.pending.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class _Events:
    """Encodes ``chat.completion.chunk`` SSE events as HTTP/1.1 chunks."""

    def __init__(self, model: str) -> None:
        self.head = b'{"id":"chatcmpl-%s","object":"chat.completion.chunk","created":%d,' % (
            uuid.uuid4().hex[:24].encode(),
            int(time.time()),
        )
        self.head += b'"model":%s,"system_fingerprint":null,"choices":' % orjson.dumps(model)

    def event(self, payload: bytes) -> bytes:
        data = b"data: " + payload + b"\n\n"
        return b"%x\r\n%s\r\n" % (len(data), data)

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = b'[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}'
        return self.event(self.head + choice % (orjson.dumps(delta), orjson.dumps(finish)))

    def usage(self, usage: dict[str, Any]) -> bytes:
        return self.event(self.head + b'[],"usage":' + orjson.dumps(usage) + b"}")


@dataclass
class _Played:
    sent: int = 0
    tools: int = 0
    usage: Usage | None = None
    error: Error | None = None


class FakeOpenAI:
    """The fake server; see the module docstring."""

    def __init__(self, default: Response | None = None, *, api_key: str | None = None) -> None:
        self.default: list[Step] = _as_steps(Text(_HELLO) if default is None else default)
        self.api_key = api_key
        self.rules: list[Rule] = []
        self.requests: list[Received] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def add(self, match: Matcher, *responses: Response) -> Rule:
        """Add a rule; each of ``responses`` answers one matching request, in order."""
        if not responses:
            raise ValueError("a rule needs at least one response")
        rule = Rule(match, deque(_as_steps(r) for r in responses))
        self.rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget all rules and recorded requests."""
        self.rules.clear()
        self.requests.clear()

    def script_for(self, body: dict[str, Any]) -> list[Step]:
        """Pick (and consume) the steps that answer a chat request."""
        for rule in self.rules:
            if rule.matches(body):
                steps = rule.responses.popleft()
                if not rule.responses:
                    self.rules.remove(rule)
                return steps
        return self.default

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._stopping = False
        self._server = await asyncio.start_server(self._on_connect, host, port, backlog=4096)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop every connection and wait for every handler to finish."""
        if self._server is None:
            return
        self._stopping = True
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports run connection_lost
        self._server = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine, so the task is tracked before it ever runs.
        task = asyncio.get_running_loop().create_task(self._serve(_Conn(reader, writer)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: _Conn) -> None:
        abort = True
        try:
            while await self._serve_one(conn):
                pass
            abort = False
        except (_Abort, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            logger.exception("fake OpenAI server: unexpected error")
        finally:
            if abort or self._stopping:
                conn.writer.transport.abort()
            else:
                conn.writer.close()

    async def _serve_one(self, conn: _Conn) -> bool:
        """Serve one request; return whether the connection stays open."""
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return False  # a clean close between requests
        request_line, *lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = request_line.split()
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)
            }
            length = int(headers.get("content-length") or 0)
            if "chunked" in headers.get("transfer-encoding", ""):
                raise ValueError("chunked request bodies are not supported")
            raw = await conn.reader.readexactly(length) if length else b""
        except ValueError as exc:
            raise _Abort("malformed request") from exc
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]
        try:
            body: Any = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(
            Received(path, headers, body if isinstance(body, dict) else {}, method)
        )

        route = path.removeprefix("/v1")
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            error = Error(401, "Incorrect API key provided", type=_INVALID, code="invalid_api_key")
        elif method == "GET" and route == "/models":
            return await self._json(conn, keep, 200, _MODELS)
        elif method != "POST" or route != "/chat/completions":
            error = Error(404, f"Invalid URL ({method} {path})", type=_INVALID)
        elif not isinstance(body, dict):
            error = Error(400, "We could not parse the JSON body of your request.", type=_INVALID)
        elif not isinstance(body.get("messages"), list):
            msg = "Missing required parameter: 'messages'."
            error = Error(400, msg, type=_INVALID, code="missing_required_parameter")
        else:
            return await self._chat(conn, keep, body)
        return await self._send_error(conn, keep, error)

    async def _chat(self, conn: _Conn, keep: bool, body: dict[str, Any]) -> bool:
        steps = self.script_for(body)
        if steps and isinstance(steps[0], Error):
            return await self._send_error(conn, keep, steps[0])
        if body.get("stream"):
            return await self._stream(conn, keep, body, steps)
        return await self._complete(conn, keep, body, steps)

    async def _json(
        self, conn: _Conn, keep: bool, status: int, obj: Any, extra: dict[str, str] | None = None
    ) -> bool:
        payload = orjson.dumps(obj)
        headers = {"content-type": "application/json", "content-length": str(len(payload))}
        headers["connection"] = "keep-alive" if keep else "close"
        conn.respond(status, {**headers, **(extra or {})}, payload)
        await conn.flush()
        return keep

    async def _send_error(self, conn: _Conn, keep: bool, e: Error) -> bool:
        return await self._json(conn, keep, e.status, _error(e.message, e.type, e.code), e.headers)

    async def _play(self, conn: _Conn, steps: list[Step], emit: Callable[[Any], None]) -> _Played:
        """Run the steps, passing each delta to ``emit``; pacing, stalls and disconnects act
        on the connection. Stops at a non-first Error, which the caller reports."""
        played = _Played()
        loop = asyncio.get_running_loop()
        for step in steps:
            if isinstance(step, Text):
                deadline = loop.time()  # absolute deadlines: the rate holds under load
                for piece in step.pieces():
                    if step.delay > 0:
                        await conn.flush()
                        deadline += step.delay
                        await asyncio.sleep(deadline - loop.time())
                    emit({"content": piece})
                    played.sent += 1
            elif isinstance(step, ToolCall):
                for delta in _tool_deltas(step, played.tools):
                    emit(delta)
                    played.sent += 1
                played.tools += 1
            elif isinstance(step, Stall):
                await conn.stall(step.seconds)
            elif isinstance(step, Disconnect):
                await conn.flush()
                raise _Abort("scripted disconnect")
            elif isinstance(step, Error):
                played.error = step
                break
            elif isinstance(step, Usage):
                played.usage = step
        return played

    async def _stream(
        self, conn: _Conn, keep: bool, body: dict[str, Any], steps: list[Step]
    ) -> bool:
        headers = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}
        headers["connection"] = "keep-alive" if keep else "close"
        events = _Events(str(body.get("model") or "fake-model"))
        conn.respond(200, headers)  # sent with the role chunk, at the first flush
        conn.pending.append(events.delta({"role": "assistant", "content": ""}))
        played = await self._play(conn, steps, lambda d: conn.pending.append(events.delta(d)))
        if played.error is not None:  # mid-stream failure, as OpenAI reports it
            e = played.error
            conn.pending.append(events.event(orjson.dumps(_error(e.message, e.type, e.code))))
        else:
            conn.pending.append(events.delta({}, "tool_calls" if played.tools else "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                conn.pending.append(events.usage(_usage(body, played.sent, played.usage)))
            conn.pending.append(events.event(b"[DONE]"))
        conn.pending.append(b"0\r\n\r\n")  # the last chunk
        await conn.flush()
        return keep

    async def _complete(
        self, conn: _Conn, keep: bool, body: dict[str, Any], steps: list[Step]
    ) -> bool:
        deltas: list[dict[str, Any]] = []
        played = await self._play(conn, steps, deltas.append)
        if played.error is not None:
            return await self._send_error(conn, keep, played.error)
        content = "".join(d["content"] for d in deltas if "content" in d)
        calls: list[dict[str, Any]] = []
        for tc in (tc for d in deltas for tc in d.get("tool_calls", ())):
            if "id" in tc:  # reassemble as a client would
                calls.append({"id": tc["id"], "type": "function", "function": {**tc["function"]}})
            else:
                calls[-1]["function"]["arguments"] += tc["function"]["arguments"]
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            message["tool_calls"] = calls
            message["content"] = content or None
        choice = {"index": 0, "message": message, "logprobs": None}
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or "fake-model"),
            "choices": [{**choice, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": _usage(body, played.sent, played.usage),
            "system_fingerprint": None,
        }
        return await self._json(conn, keep, 200, completion)


async def _serve_forever(args: argparse.Namespace) -> None:
    words = " ".join(f"tok{i}" for i in range(args.tokens))
    fake = FakeOpenAI(default=Text(words, delay=args.delay), api_key=args.api_key)
    await fake.start(args.host, args.port)
    print(f"listening on {fake.base_url}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m realtime.testing.fake_openai",
        description="Serve a fake OpenAI Chat Completions API (streaming and not) that "
        "answers every request with N word tokens, for benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port; 0 picks a free one (8001)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per response (200)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between tokens (0)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer API_KEY'")
    args = parser.parse_args(argv)
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve_forever(args))


if __name__ == "__main__":
    main()
