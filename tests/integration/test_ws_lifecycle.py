"""Retries, resume, cancel, queueing and history over a real WebSocket."""

from __future__ import annotations

import asyncio

import pytest

from realtime.testing import FakeOpenAI, Text
from tests.support import TERMINAL, UNIT, RunningServer, only, text_of, ws_client

pytestmark = pytest.mark.anyio

SLOW = " ".join(f"w{i}" for i in range(60))  # 60 tokens


async def history(server: RunningServer, conversation_id: str, session_id: str = "s-1") -> dict:
    async with server.http() as http:
        response = await http.get(
            f"/realtime/v1/conversations/{conversation_id}/messages",
            params={"session_id": session_id},
        )
    assert response.status_code == 200, response.text
    return response.json()


async def test_same_client_id_twice_is_stored_and_answered_once(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello()
        first = await client.ask("What is an epoch?", id="retry-1")
        await client.send(type="message.send", id="retry-1", content="What is an epoch?")
        duplicate = await client.recv()
        await client.send(type="ping", id="p")
        after = await client.recv()
    ack = first[0]
    assert duplicate == {
        "type": "ack",
        "id": "retry-1",
        "conversation_id": ack["conversation_id"],
        "message_id": ack["message_id"],
        "duplicate": True,
    }
    assert after == {"type": "pong", "id": "p"}  # nothing else came in between
    stored = await history(server, ack["conversation_id"])
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


async def test_retry_on_a_new_connection_after_a_drop(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello()
        await client.send(type="message.send", id="lost-ack", content="hello there")
        ack = await client.recv()
    async with ws_client(server) as client:
        await client.hello()
        await client.send(type="message.send", id="lost-ack", content="hello there")
        again = await client.recv()
        assert again["duplicate"] is True
        assert again["message_id"] == ack["message_id"]
        await client.send(
            type="subscribe", id="sub", conversation_id=ack["conversation_id"], after_seq=0
        )
        frames = await client.recv_until(*TERMINAL)
    assert frames[0]["type"] == "ack"
    created = only(frames, "message.created")
    assert len(created) == 1 and created[0]["seq"] == 1
    stored = await history(server, ack["conversation_id"])
    assert len([m for m in stored["messages"] if m["role"] == "user"]) == 1


async def test_resume_after_disconnect_mid_run_has_no_gap_and_no_duplicate(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add("resume me", [Text(SLOW, delay=0.02)])
    async with ws_client(llm_server) as client:
        await client.hello()
        await client.send(type="message.send", id="m", content="resume me please")
        seen = []
        while len(only(seen, "run.token")) < 10:
            seen.append(await client.recv())
    conversation_id = seen[0]["conversation_id"]
    epoch = seen[0]["epoch"]
    last = max(f["seq"] for f in seen if "seq" in f)
    await asyncio.sleep(0.2 * UNIT)  # the run goes on without us
    async with ws_client(llm_server) as client:
        await client.hello(
            resume={"conversation_id": conversation_id, "after_seq": last, "epoch": epoch}
        )
        rest = await client.recv_until(*TERMINAL)
    done = rest[-1]
    assert done["type"] == "run.completed"
    seqs = [f["seq"] for f in seen + rest if "seq" in f]
    assert seqs == sorted(set(seqs)), "a seq was delivered twice or out of order"
    assert text_of(seen) + text_of(rest) == done["message"]["content"] == SLOW


async def test_disconnect_mid_run_does_not_stop_it(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add("keep going", [Text(SLOW, delay=0.005)])
    async with ws_client(llm_server) as client:
        await client.hello()
        await client.send(type="message.send", content="keep going")
        ack = await client.recv()
        await client.recv_until("run.token")
    for _ in range(100):
        stored = await history(llm_server, ack["conversation_id"])
        if len(stored["messages"]) == 2:
            break
        await asyncio.sleep(0.05 * UNIT)
    assert stored["messages"][1]["content"] == SLOW
    assert stored["messages"][1]["status"] == "completed"
    assert stored["active_run"] is None


async def test_cancel_stops_generation_and_stores_what_was_said(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add("cancel me", [Text(SLOW, delay=0.05)])
    async with ws_client(llm_server) as client:
        await client.hello()
        await client.send(type="message.send", content="cancel me")
        frames = await client.recv_until("run.token")
        frames += [await client.recv(), await client.recv()]
        conversation_id = frames[0]["conversation_id"]
        await client.send(type="run.cancel", id="stop", conversation_id=conversation_id)
        frames += await client.recv_until("run.cancelled")
        cancelled = frames[-1]
        ack = [f for f in frames if f.get("id") == "stop"][0]
        assert ack["type"] == "ack" and ack["run_id"] == cancelled["run_id"]
        # Nothing more arrives for that run, and the stream to the model was closed.
        await client.send(type="ping", id="after")
        assert (await client.recv()) == {"type": "pong", "id": "after"}
        await client.send(type="run.cancel", id="again", conversation_id=conversation_id)
        assert (await client.recv())["code"] == "no_active_run"
    said = text_of(frames)
    assert 0 < len(said) < len(SLOW)
    assert cancelled["message"]["content"] == said
    assert cancelled["message"]["status"] == "cancelled"
    stored = await history(llm_server, conversation_id)
    assert stored["messages"][-1]["content"] == said


async def test_message_during_a_run_is_queued_and_answered_after(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add("first", [Text("one two three four", delay=0.05)])
    fake_llm.add(
        lambda body: body["messages"][-1]["content"] == "second question", [Text("five six")]
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        await client.send(type="message.send", id="a", content="first question")
        ack = await client.recv()
        cid = ack["conversation_id"]
        await client.recv_until("run.token")
        await client.send(
            type="message.send", id="b", content="second question", conversation_id=cid
        )
        frames = await client.recv_until("run.completed")
        frames += await client.recv_until("run.completed")
    kinds = [
        (f["type"], f.get("id"))
        for f in frames
        if f["type"] in ("ack", "run.started", "run.completed")
    ]
    assert kinds == [
        ("ack", "b"),
        ("run.completed", None),
        ("run.started", None),
        ("run.completed", None),
    ]
    completed = only(frames, "run.completed")
    assert [c["message"]["content"] for c in completed] == ["one two three four", "five six"]
    # The second run's model request saw the first exchange, and not itself twice.
    messages = fake_llm.requests[-1].body["messages"]
    assert [m["content"] for m in messages if m["role"] != "system"] == [
        "first question",
        "one two three four",
        "second question",
    ]


async def test_queue_is_bounded(llm_server: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.add("block", [Text(SLOW, delay=0.05)])
    async with ws_client(llm_server) as client:
        await client.hello()
        await client.send(type="message.send", content="block the queue")
        cid = (await client.recv())["conversation_id"]
        await client.recv_until("run.token")
        replies = []
        for i in range(6):
            await client.send(
                type="message.send", id=f"q{i}", content=f"waiting {i}", conversation_id=cid
            )
            while True:
                frame = await client.recv()
                if frame.get("id") == f"q{i}":
                    replies.append(frame)
                    break
        await client.send(type="run.cancel", conversation_id=cid)
    assert [r["type"] for r in replies] == ["ack"] * 5 + ["error"]
    assert replies[-1]["code"] == "queue_full"
    stored = await history(llm_server, cid)
    assert "waiting 5" not in [m["content"] for m in stored["messages"]]


async def test_history_reload_and_ownership(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello(session_id="owner")
        frames = await client.ask("How do I configure an OpenAI endpoint?")
    cid = frames[0]["conversation_id"]
    stored = await history(server, cid, session_id="owner")
    assert stored["last_seq"] == frames[-1]["seq"]
    assert stored["epoch"] == 1
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["id"] == frames[-1]["message"]["id"]
    async with server.http() as http:
        other = await http.get(
            f"/realtime/v1/conversations/{cid}/messages", params={"session_id": "intruder"}
        )
        unknown = await http.get(
            "/realtime/v1/conversations/not-a-uuid/messages", params={"session_id": "owner"}
        )
        anonymous = await http.get(f"/realtime/v1/conversations/{cid}/messages")
    assert other.status_code == 404
    assert (
        other.json()
        == unknown.json()
        == {"error": {"code": "conversation_not_found", "message": "no such conversation"}}
    )
    assert anonymous.status_code == 400
    async with ws_client(server) as client:
        await client.hello(session_id="intruder")
        await client.send(type="message.send", id="x", content="hi", conversation_id=cid)
        error = await client.recv()
        await client.send(type="subscribe", id="y", conversation_id=cid)
        error2 = await client.recv()
    assert error["code"] == error2["code"] == "conversation_not_found"
    assert (await history(server, cid, session_id="owner"))["messages"] == stored["messages"]
