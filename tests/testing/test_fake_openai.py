"""The fake OpenAI server, driven by the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from realtime.testing import Disconnect, Error, FakeOpenAI, Stall, Text, ToolCall, Usage
from realtime.testing.fake_openai import split_tokens

pytestmark = pytest.mark.timeout(30)

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "say hello please"},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def collect(client: openai.AsyncOpenAI, messages: list[Any], **kw: Any) -> list[Any]:
    stream = await client.chat.completions.create(
        model="gpt-test", messages=messages, stream=True, **kw
    )
    return [chunk async for chunk in stream]


def test_split_tokens_examples() -> None:
    assert split_tokens("Hello world.") == ["Hello", " world."]
    assert split_tokens(" a  b ") == [" a", "  b", " "]
    assert split_tokens("") == []


@given(st.text())
def test_split_tokens_joins_back(text: str) -> None:
    assert "".join(split_tokens(text)) == text


@pytest.mark.anyio
async def test_streamed_text_chunks_and_usage(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add("hello", Text("Hello there, world."))
    chunks = await collect(client, MESSAGES, stream_options={"include_usage": True})
    first, *middle, final, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in middle] == ["Hello", " there,", " world."]
    assert final.choices[0].finish_reason == "stop"
    assert all(c.model == "gpt-test" and c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == 3
    assert usage.usage.prompt_tokens == 6  # "You are terse." + "say hello please"
    assert usage.usage.total_tokens == 9

    received = fake.requests[-1]
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-test"
    assert received.body["model"] == "gpt-test"
    assert received.body["messages"] == MESSAGES


@pytest.mark.anyio
async def test_fixed_chunks_no_usage_and_override(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add(None, Text("abcdefg", chunk=3), [Text("x"), Usage(7, 11)])
    chunks = await collect(client, user("hi"))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["abc", "def", "g"]
    assert all(c.usage is None for c in chunks)
    chunks = await collect(client, user("hi"), stream_options={"include_usage": True})
    assert chunks[-1].usage.prompt_tokens == 7
    assert chunks[-1].usage.completion_tokens == 11


@pytest.mark.anyio
async def test_streamed_tool_calls(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add("one", ToolCall("get_weather", {"city": "Paris"}, id="call_abc"))
    fake.add(
        "two",
        [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", '{"tz": "UTC"}')],
    )

    async with client.chat.completions.stream(model="m", messages=user("one")) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].id == "call_abc"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}

    chunks = await collect(client, user("two"))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) >= 6  # header + 2..3 fragments per call
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    for d in deltas:
        if d.id:
            ids[d.index] = d.id
            assert d.type == "function"
        if d.function and d.function.name:
            names[d.index] = d.function.name
        if d.function and d.function.arguments:
            args[d.index] = args.get(d.index, "") + d.function.arguments
    assert names == {0: "get_weather", 1: "get_time"}
    assert all(re.fullmatch(r"call_[0-9a-f]+", i) for i in ids.values()) and len(ids) == 2
    assert json.loads(args[0]) == {"city": "Paris"} and json.loads(args[1]) == {"tz": "UTC"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.anyio
async def test_non_streaming(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add(None, Text("Plain answer."), ToolCall("lookup", {"q": "x"}, id="call_1"))
    done = await client.chat.completions.create(model="m", messages=user("a b c"))
    assert done.object == "chat.completion"
    assert done.choices[0].message.content == "Plain answer."
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 2)

    done = await client.chat.completions.create(model="m", messages=user("again"))
    message = done.choices[0].message
    assert done.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id == "call_1"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"q": "x"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (401, openai.AuthenticationError),
        (400, openai.BadRequestError),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_errors(
    fake: FakeOpenAI,
    client: openai.AsyncOpenAI,
    status: int,
    exc: type[openai.APIStatusError],
    stream: bool,
) -> None:
    fake.add(None, Error(status, "nope", code="some_code", headers={"retry-after": "0"}))
    with pytest.raises(exc) as info:
        await client.chat.completions.create(model="m", messages=user("x"), stream=stream)
    assert info.value.status_code == status
    assert info.value.code == "some_code"
    assert info.value.response.headers["retry-after"] == "0"
    assert "nope" in info.value.message
    # the keep-alive connection is still good afterwards
    done = await client.chat.completions.create(model="m", messages=user("x"))
    assert done.choices[0].message.content == "Hello from the fake model."


@pytest.mark.anyio
async def test_api_key_mismatch() -> None:
    async with FakeOpenAI(api_key="sk-right") as fake:
        bad = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0)
        good = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-right", max_retries=0)
        async with bad, good:
            with pytest.raises(openai.AuthenticationError) as info:
                await bad.chat.completions.create(model="m", messages=user("x"))
            assert info.value.code == "invalid_api_key"
            assert (await good.models.list()).data[0].id == "fake-model"


@pytest.mark.anyio
async def test_stall_times_out(fake: FakeOpenAI) -> None:
    fake.add(None, [Text("partial"), Stall(3600)])
    timeout = openai.Timeout(5, read=0.3)
    async with openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="sk", max_retries=0, timeout=timeout
    ) as client:
        start = time.monotonic()
        seen: list[str | None] = []
        with pytest.raises(openai.APITimeoutError):
            async for chunk in await client.chat.completions.create(
                model="m", messages=user("x"), stream=True
            ):
                seen.append(chunk.choices[0].delta.content)
        assert seen == ["", "partial"]
        assert time.monotonic() - start < 3
    # the server notices the client left and the stalled handler ends by itself
    for _ in range(100):
        if not fake._tasks:
            break
        await asyncio.sleep(0.01)
    assert not fake._tasks


@pytest.mark.anyio
async def test_disconnect_mid_stream(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add(None, [Text("one two"), Disconnect()])
    seen: list[str | None] = []
    # httpx2 reports the truncated chunked body as a RemoteProtocolError, which the
    # openai client maps to APIConnectionError (not its APITimeoutError subclass).
    with pytest.raises(openai.APIConnectionError) as info:
        async for chunk in await client.chat.completions.create(
            model="m", messages=user("x"), stream=True
        ):
            seen.append(chunk.choices[0].delta.content)
    assert type(info.value) is openai.APIConnectionError
    assert seen == ["", "one", " two"]
    done = await client.chat.completions.create(model="m", messages=user("x"))
    assert done.choices[0].message.content == "Hello from the fake model."


@pytest.mark.anyio
async def test_mid_stream_error_event(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add(None, [Text("so far"), Error(500, "model overloaded")])
    with pytest.raises(openai.APIError, match="model overloaded"):
        await collect(client, user("x"))


@pytest.mark.anyio
async def test_rules_concurrent_and_exhaustion(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.add("apple", Text("A1", chunk=1, delay=0.01), Text("A2"))
    fake.add(lambda body: "banana" in json.dumps(body), Text("B1", chunk=1, delay=0.01))

    async def text(prompt: str) -> str:
        chunks = await collect(client, user(prompt))
        return "".join(c.choices[0].delta.content or "" for c in chunks)

    a, b = await asyncio.gather(text("an apple"), text("a banana"))
    assert (a, b) == ("A1", "B1")
    assert len(fake.rules) == 1
    assert await text("apple again") == "A2"
    assert fake.rules == []
    assert await text("apple once more") == "Hello from the fake model."
    assert await text("banana") == "Hello from the fake model."


@pytest.mark.anyio
async def test_match_uses_first_user_message(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add("needle", Text("found"))
    messages: list[Any] = [
        {"role": "system", "content": "needle in the system prompt does not count"},
        {"role": "user", "content": [{"type": "text", "text": "hay"}]},
        {"role": "user", "content": "needle too late"},
    ]
    done = await client.chat.completions.create(model="m", messages=messages)
    assert done.choices[0].message.content == "Hello from the fake model."
    messages[1] = {"role": "user", "content": [{"type": "text", "text": "a needle"}]}
    done = await client.chat.completions.create(model="m", messages=messages)
    assert done.choices[0].message.content == "found"


@pytest.mark.anyio
async def test_raw_lines(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add(None, [Text("a b c"), ToolCall("f", {"x": 1})])
    async with client.chat.completions.with_streaming_response.create(
        model="m",
        messages=user("x"),
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        lines = [line async for line in resp.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert payloads[0]["system_fingerprint"] is None
    assert payloads[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert payloads[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}


@pytest.mark.anyio
async def test_models_404_and_bad_json(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    with pytest.raises(openai.NotFoundError) as nf:
        await client.post("/nowhere", cast_to=object, body={})
    assert nf.value.type == "invalid_request_error"

    reader, writer = await asyncio.open_connection(fake.host, fake.port)
    body = b"{not json"
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(payload)["error"]["type"] == "invalid_request_error"
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/nowhere", "/v1/chat/completions"]


@pytest.mark.anyio
async def test_delay_pacing(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.add(None, Text("a b c d e", delay=0.05))
    start = time.monotonic()
    chunks = await collect(client, user("x"))
    assert time.monotonic() - start >= 0.2
    assert len(chunks) == 7


@pytest.mark.anyio
async def test_stop_with_stream_in_flight() -> None:
    fake = FakeOpenAI(default=[Text("x"), Stall(3600)])
    await fake.start()
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk", max_retries=0) as client:
        stream = await client.chat.completions.create(model="m", messages=user("x"), stream=True)
        await stream.__anext__()
        await fake.stop()
        assert not fake._tasks
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass


@pytest.mark.anyio
async def test_many_concurrent_streams(fake: FakeOpenAI) -> None:
    fake.default = [Text(" ".join(f"w{i}" for i in range(50)))]
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk", max_retries=0) as client:
        results = await asyncio.gather(*(collect(client, user("x")) for _ in range(50)))
    assert all(len(chunks) == 52 for chunks in results)


@pytest.mark.anyio
async def test_cli() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realtime.testing.fake_openai",
        "--port",
        "0",
        "--tokens",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+/v1)\n", line)
        assert match, line
        async with openai.AsyncOpenAI(base_url=match[1], api_key="sk", max_retries=0) as client:
            chunks = await collect(client, user("x"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == "tok0 tok1 tok2 tok3 tok4"
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
    assert proc.returncode == 0  # SIGTERM is a clean shutdown
    assert stderr == b""  # no tracebacks, no runpy double-import warning
