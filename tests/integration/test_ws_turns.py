"""Full turns over a real WebSocket against a real server: offline and with the fake OpenAI."""

from __future__ import annotations

import pytest

from realtime.testing import FakeOpenAI, Text, ToolCall
from tests.support import RunningServer, only, text_of, ws_client

pytestmark = pytest.mark.anyio


async def test_offline_answer_is_streamed_and_cited(server: RunningServer) -> None:
    async with ws_client(server) as client:
        welcome = await client.hello()
        assert welcome["server"]["provider"] == "offline"
        assert welcome["bot"]["id"] == "demo"
        assert welcome["bot"]["suggested_questions"]
        frames = await client.ask("What does history.reset mean?", id="m1")

    ack, created = frames[0], frames[1]
    assert ack == {
        "type": "ack",
        "id": "m1",
        "conversation_id": ack["conversation_id"],
        "message_id": ack["message_id"],
        "epoch": 1,
    }
    assert created["type"] == "message.created"
    assert created["message"]["id"] == ack["message_id"]
    assert [f["stage"] for f in only(frames, "run.status")] == ["retrieving", "generating"]
    done = frames[-1]
    assert done["type"] == "run.completed"
    message = done["message"]
    assert message["content"] == text_of(frames)
    assert len(only(frames, "run.token")) >= 1
    assert message["citations"], message
    assert any(c["url"].startswith("/docs/protocol.md") for c in message["citations"])
    assert "[1]" in message["content"]
    assert 0 < done["confidence"] <= 1
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1


async def test_offline_says_plainly_when_it_does_not_know(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello()
        frames = await client.ask("zebra xylophone quokka?")
    done = frames[-1]
    assert done["type"] == "run.completed"
    assert "couldn't find" in done["message"]["content"]
    assert done["message"]["citations"] == []
    assert done["confidence"] == 0.0


async def test_openai_text_turn(llm_server: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.add("capital", [Text("The capital of France is Paris.")])
    async with ws_client(llm_server) as client:
        welcome = await client.hello()
        assert welcome["server"]["provider"] == "openai"
        frames = await client.ask("What is the capital of France?", id="q")
    done = frames[-1]
    assert done["type"] == "run.completed", done
    assert text_of(frames) == "The capital of France is Paris."
    assert done["message"]["content"] == "The capital of France is Paris."
    assert done["usage"]["output_tokens"] > 0
    assert done["usage"]["total_tokens"] == (
        done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    )
    request = fake_llm.requests[-1].body
    assert request["stream"] is True
    assert request["messages"][-1] == {"role": "user", "content": "What is the capital of France?"}
    assert request["messages"][0]["role"] == "system"


async def test_openai_tool_call_turn(llm_server: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.add(
        "resume",
        [ToolCall("search_knowledge", {"query": "resume after_seq history.reset"}, id="call_1")],
        [Text("Send hello with resume and after_seq [1].")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await client.ask("How do I resume after a disconnect?")
    done = frames[-1]
    assert done["type"] == "run.completed", done
    steps = only(frames, "run.step")
    assert len(steps) == 1
    step = steps[0]
    assert step["step"] == 1
    assert step["action"] == "search_knowledge"
    assert step["tool_call_id"] == "call_1"
    assert step["params"] == {"query": "resume after_seq history.reset"}
    assert step["observation"].startswith("[")
    stages = [f["stage"] for f in only(frames, "run.status")]
    assert stages == ["retrieving", "generating", "executing_tool", "generating"]
    # The second model call saw the tool result, and the history stayed valid.
    second = fake_llm.requests[-1].body["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_1"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": step["observation"],
    }
    citations = done["message"]["citations"]
    assert [c["marker"] for c in citations] == [1]
    assert citations[0]["url"].startswith("/docs/")


async def test_tool_call_with_bad_arguments_is_an_observation(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        "broken",
        [ToolCall("search_knowledge", "{not json", id="c1"), ToolCall("no_such_tool", {}, id="c2")],
        [Text("Sorry.")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await client.ask("broken tools please")
    assert frames[-1]["type"] == "run.completed"
    steps = only(frames, "run.step")
    assert [s["observation"][:6] for s in steps] == ["error:", "error:"]
    assert [s["step"] for s in steps] == [1, 2]
