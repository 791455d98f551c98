"""Data tools and confirmation round-trips over a real WebSocket, on the real demo shop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from realtime.config import Settings
from realtime.testing import FakeOpenAI, Text, ToolCall
from tests.support import (
    TERMINAL,
    UNIT,
    Client,
    RunningServer,
    demo_shop_rows,
    llm_settings,
    only,
    run_server,
    text_of,
    ws_client,
)

pytestmark = pytest.mark.anyio

WIDGET = {"table": "products", "data": {"name": "New Widget", "price": 29.99, "category_id": 1}}


async def widgets(settings: Settings, name: str = "New Widget") -> int:
    rows = await demo_shop_rows(settings, "SELECT id FROM products WHERE name = :name", name=name)
    return len(rows)


def last_user(text: str) -> Any:
    """A fake-model rule for requests whose latest user message is ``text``."""

    def match(body: dict[str, Any]) -> bool:
        users = [m for m in body["messages"] if m["role"] == "user"]
        return bool(users) and users[-1]["content"] == text

    return match


async def ask_until_confirmation(client: Client, content: str) -> list[dict[str, Any]]:
    """Send a message; read up to the run's pause (``run.status: awaiting_confirmation``)."""
    await client.send(type="message.send", id="ask", content=content)
    return await until(client, "awaiting_confirmation")


async def resolve(
    client: Client, conversation_id: str, tool_call_id: str, decision: str, **extra: Any
) -> None:
    await client.send(
        type="confirmation.resolve",
        conversation_id=conversation_id,
        tool_call_id=tool_call_id,
        decision=decision,
        **extra,
    )


async def until(client: Client, *kinds: str) -> list[dict[str, Any]]:
    """Frames up to the first whose type, or whose run.status stage, is one of ``kinds``."""
    frames = []
    while True:
        frame = await client.recv()
        frames.append(frame)
        if frame["type"] in kinds or frame.get("stage") in kinds:
            return frames


async def test_read_tool_runs_at_once(llm_server: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.add(
        last_user("how many products?"),
        [ToolCall("count_records", {"table": "products"}, id="c1")],
        [Text("There are 80 products.")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await client.ask("how many products?")
    step = only(frames, "run.step")[0]
    assert (step["action"], step["observation"]) == ("count_records", "Count: 80")
    assert frames[-1]["type"] == "run.completed"
    assert not only(frames, "confirmation.requested")
    system = fake_llm.requests[0].body["messages"][0]["content"]
    assert "products (Products; allowed: read, create, update, delete)" in system
    tools = {t["function"]["name"] for t in fake_llm.requests[0].body["tools"]}
    assert {"search_records", "count_records", "aggregate", "create_record"} <= tools


async def test_write_waits_then_runs_once_when_approved(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget"),
        [Text("Let me add it."), ToolCall("create_record", WIDGET, id="call_w1")],
        [Text("Done: the widget is in the shop.")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget")
        cid = frames[0]["conversation_id"]
        step, requested = only(frames, "run.step")[0], only(frames, "confirmation.requested")[0]
        assert frames[-1] == {**frames[-1], "type": "run.status", "stage": "awaiting_confirmation"}
        assert "observation" not in step
        assert (step["step"], step["action"], step["params"]) == (1, "create_record", WIDGET)
        assert frames.index(step) < frames.index(requested)
        assert (requested["tool_call_id"], requested["tool"], requested["params"]) == (
            "call_w1",
            "create_record",
            WIDGET,
        )
        assert requested["expires_at"].endswith("Z")
        assert await widgets(llm_server.settings) == 0, "a write ran before confirmation"
        assert len(fake_llm.requests) == 1

        await resolve(client, cid, "call_w1", "approve", id="ok")
        rest = await until(client, *TERMINAL)
    ack = rest[0]
    assert ack == {
        "type": "ack",
        "id": "ok",
        "conversation_id": cid,
        "tool_call_id": "call_w1",
        "decision": "approve",
    }
    again, resolved = only(rest, "run.step")[0], only(rest, "confirmation.resolved")[0]
    assert again["step"] == 1 and again["tool_call_id"] == "call_w1"
    assert again["observation"].startswith("Created products #81")
    assert rest.index(again) < rest.index(resolved)
    assert (resolved["decision"], resolved["by"]) == ("approved", "visitor")
    done = rest[-1]
    assert done["type"] == "run.completed"
    assert done["run_id"] == requested["run_id"] == step["run_id"]
    assert done["message"]["content"] == text_of(frames) + text_of(rest)
    assert await widgets(llm_server.settings) == 1
    second = fake_llm.requests[1].body["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_w1"
    assert second[-1]["content"] == again["observation"]


async def test_rejected_write_never_runs_and_the_model_is_told(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget please"),
        [
            ToolCall("create_record", WIDGET, id="call_r1"),
            ToolCall("count_records", {"table": "products"}, id="call_r2"),
        ],
        [Text("Alright, I left the shop as it was.")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget please")
        cid = frames[0]["conversation_id"]
        await resolve(client, cid, "call_r1", "reject", id="no")
        rest = await until(client, *TERMINAL)
    resolved = only(rest, "confirmation.resolved")[0]
    assert (resolved["decision"], resolved["by"]) == ("rejected", "visitor")
    assert not only(rest, "run.step"), "a rejected write has no observation step"
    assert rest[-1]["type"] == "run.completed"
    assert await widgets(llm_server.settings) == 0
    tool_messages = [m for m in fake_llm.requests[1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_r1", "call_r2"]
    assert "declined" in tool_messages[0]["content"]
    assert "Not executed" in tool_messages[1]["content"]


async def test_edited_params_are_validated_then_used(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget, edit it"),
        [ToolCall("create_record", WIDGET, id="call_e1")],
        [Text("Added.")],
    )
    edited = {"table": "products", "data": {"name": "Edited Widget", "price": 5}}
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget, edit it")
        cid = frames[0]["conversation_id"]
        bad = {"table": "products", "data": {"colour": "red"}}
        await resolve(client, cid, "call_e1", "approve", id="bad", params=bad)
        error = await client.recv()
        other_table = {"table": "customers", "data": {"name": "x"}}
        await resolve(client, cid, "call_e1", "approve", id="bad2", params=other_table)
        error2 = await client.recv()
        await resolve(client, cid, "call_e1", "approve", id="good", params=edited)
        rest = await until(client, *TERMINAL)
    assert (error["code"], error["id"]) == ("invalid_params", "bad")
    assert "colour" in error["message"]
    assert (error2["code"], error2["id"]) == ("invalid_params", "bad2")
    step = only(rest, "run.step")[0]
    assert step["params"] == edited and "Edited Widget" in step["observation"]
    assert (
        await widgets(llm_server.settings) == 0
        and await widgets(llm_server.settings, "Edited Widget") == 1
    )


async def test_unanswered_confirmation_expires(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget later"),
        [Text("Adding."), ToolCall("create_record", WIDGET, id="call_x1")],
    )
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url, confirmation_ttl=0.5)
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget later")
        cid = frames[0]["conversation_id"]
        rest = await until(client, *TERMINAL)
        await resolve(client, cid, "call_x1", "approve", id="late")
        late = await client.recv()
    resolved = only(rest, "confirmation.resolved")[0]
    assert (resolved["decision"], resolved["by"]) == ("expired", "timeout")
    failed = rest[-1]
    assert (failed["type"], failed["code"]) == ("run.failed", "confirmation_expired")
    assert failed["partial"]["content"] == "Adding."
    assert (late["type"], late["code"]) == ("error", "confirmation_expired")
    assert await widgets(settings) == 0


async def test_two_concurrent_approvals_execute_once(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add one widget"),
        [ToolCall("create_record", WIDGET, id="call_c1")],
        [Text("Added once.")],
    )
    async with ws_client(llm_server) as a, ws_client(llm_server) as b:
        await a.hello(session_id="twice")
        await b.hello(session_id="twice")
        frames = await ask_until_confirmation(a, "add one widget")
        cid = frames[0]["conversation_id"]
        resolve = {
            "type": "confirmation.resolve",
            "conversation_id": cid,
            "tool_call_id": "call_c1",
            "decision": "approve",
        }
        await asyncio.gather(a.send(**resolve, id="a"), b.send(**resolve, id="b"))
        reply_a = [f for f in await until(a, *TERMINAL) if f.get("id") == "a"][0]
        reply_b = await b.recv()
    assert sorted([reply_a["type"], reply_b["type"]]) == ["ack", "error"]
    error = reply_a if reply_a["type"] == "error" else reply_b
    assert error["code"] == "confirmation_not_pending"
    assert await widgets(llm_server.settings) == 1


async def test_approve_after_reconnecting_on_a_new_socket(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget, I'll be back"),
        [ToolCall("create_record", WIDGET, id="call_n1")],
        [Text("All set.")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget, I'll be back")
    cid, epoch = frames[0]["conversation_id"], frames[0]["epoch"]
    last = max(f["seq"] for f in frames if "seq" in f)
    async with llm_server.http() as http:
        history = (
            await http.get(
                f"/realtime/v1/conversations/{cid}/messages", params={"session_id": "s-1"}
            )
        ).json()
    assert history["pending_confirmation"]["tool_call_id"] == "call_n1"
    assert history["pending_confirmation"]["params"] == WIDGET
    async with ws_client(llm_server) as client:
        await client.hello(resume={"conversation_id": cid, "after_seq": last, "epoch": epoch})
        await resolve(client, cid, "call_n1", "approve", id="ok")
        rest = await until(client, *TERMINAL)
    assert rest[0]["type"] == "ack"
    assert rest[-1]["type"] == "run.completed"
    assert [f["seq"] for f in rest if "seq" in f][0] == last + 1
    assert await widgets(llm_server.settings) == 1


async def test_another_session_cannot_resolve(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget, mine"),
        [ToolCall("create_record", WIDGET, id="call_o1")],
        [Text("ok")],
    )
    async with ws_client(llm_server) as owner, ws_client(llm_server) as intruder:
        await owner.hello(session_id="owner")
        await intruder.hello(session_id="intruder")
        frames = await ask_until_confirmation(owner, "add a widget, mine")
        cid = frames[0]["conversation_id"]
        await resolve(intruder, cid, "call_o1", "approve", id="x")
        refused = await intruder.recv()
        await resolve(owner, cid, "call_unknown", "approve", id="y")
        unknown = await owner.recv()
        await resolve(owner, cid, "call_o1", "maybe", id="z")
        invalid = await owner.recv()
    assert (refused["code"], refused["id"]) == ("conversation_not_found", "x")
    assert (unknown["code"], unknown["id"]) == ("confirmation_not_found", "y")
    assert (invalid["code"], invalid["id"]) == ("invalid_field", "z")
    assert await widgets(llm_server.settings) == 0
    async with llm_server.http() as http:
        history = (
            await http.get(
                f"/realtime/v1/conversations/{cid}/messages", params={"session_id": "owner"}
            )
        ).json()
    assert history["pending_confirmation"]["status"] == "pending"


async def test_new_message_rejects_the_pending_write(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget now"),
        [Text("Adding."), ToolCall("create_record", WIDGET, id="call_m1")],
    )
    fake_llm.add(last_user("actually, never mind"), [Text("Sure, nothing changed.")])
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget now")
        cid = frames[0]["conversation_id"]
        await client.send(
            type="message.send", id="m2", content="actually, never mind", conversation_id=cid
        )
        rest = await until(client, "run.completed")
    kinds = [f["type"] for f in rest]
    resolved = only(rest, "confirmation.resolved")[0]
    assert (resolved["decision"], resolved["by"]) == ("rejected", "new_message")
    cancelled = only(rest, "run.cancelled")[0]
    assert cancelled["run_id"] == frames[-1]["run_id"]
    assert cancelled["message"]["content"] == "Adding."
    assert kinds.index("confirmation.resolved") < kinds.index("run.cancelled")
    assert kinds.index("run.cancelled") < kinds.index("run.started")
    assert rest[-1]["message"]["content"] == "Sure, nothing changed."
    assert await widgets(llm_server.settings) == 0


async def test_several_writes_in_one_turn_are_confirmed_one_by_one(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    second = {"table": "products", "data": {"name": "Second Widget", "price": 3, "category_id": 2}}
    fake_llm.add(
        last_user("add two widgets"),
        [
            ToolCall("create_record", WIDGET, id="call_a"),
            ToolCall("count_records", {"table": "products"}, id="call_b"),
            ToolCall("create_record", second, id="call_c"),
        ],
        [Text("Both added.")],
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add two widgets")
        cid = frames[0]["conversation_id"]
        assert [r["tool_call_id"] for r in only(frames, "confirmation.requested")] == ["call_a"]
        await resolve(client, cid, "call_a", "approve", id="1")
        middle = await until(client, "awaiting_confirmation")
        assert (
            await widgets(llm_server.settings) == 1
            and await widgets(llm_server.settings, "Second Widget") == 0
        )
        steps = only(middle, "run.step")
        assert [(s["step"], s["tool_call_id"]) for s in steps] == [
            (1, "call_a"),
            (2, "call_b"),
            (3, "call_c"),
        ]
        assert steps[1]["observation"] == "Count: 81" and "observation" not in steps[2]
        await resolve(client, cid, "call_c", "approve", id="2")
        rest = await until(client, *TERMINAL)
    assert rest[-1]["type"] == "run.completed"
    assert (
        await widgets(llm_server.settings) == 1
        and await widgets(llm_server.settings, "Second Widget") == 1
    )
    tool_ids = [
        m["tool_call_id"] for m in fake_llm.requests[1].body["messages"] if m["role"] == "tool"
    ]
    assert tool_ids == ["call_a", "call_b", "call_c"]


async def test_a_pending_write_survives_a_restart(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(
        last_user("add a widget across restarts"),
        [ToolCall("create_record", WIDGET, id="call_s1")],
        [Text("Added after all.")],
    )
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget across restarts")
    cid = frames[0]["conversation_id"]
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        await client.send(type="subscribe", id="s", conversation_id=cid)
        await client.recv()
        await resolve(client, cid, "call_s1", "approve", id="ok")
        rest = await until(client, *TERMINAL)
    assert rest[-1]["type"] == "run.completed"
    assert rest[-1]["message"]["content"] == "Added after all."
    assert await widgets(settings) == 1
    await asyncio.sleep(0.01 * UNIT)


async def test_cancel_ends_a_waiting_run(llm_server: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.add(
        last_user("add a widget, or not"), [ToolCall("create_record", WIDGET, id="call_k1")]
    )
    async with ws_client(llm_server) as client:
        await client.hello()
        frames = await ask_until_confirmation(client, "add a widget, or not")
        cid, run_id = frames[0]["conversation_id"], frames[-1]["run_id"]
        await client.send(type="run.cancel", id="stop", conversation_id=cid)
        rest = await until(client, *TERMINAL)
        await resolve(client, cid, "call_k1", "approve", id="late")
        late = await client.recv()
    assert rest[0] == {"type": "ack", "id": "stop", "conversation_id": cid, "run_id": run_id}
    resolved = only(rest, "confirmation.resolved")[0]
    assert (resolved["decision"], resolved["by"]) == ("rejected", "cancel")
    assert rest[-1]["type"] == "run.cancelled" and rest[-1]["message"] is None
    assert late["code"] == "confirmation_not_pending"
    assert await widgets(llm_server.settings) == 0


async def test_the_offline_responder_never_proposes_writes(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello()
        frames = await client.ask("Please create a product called New Widget for 29.99")
    assert frames[-1]["type"] == "run.completed"
    assert not only(frames, "confirmation.requested") and not only(frames, "run.step")
    assert await widgets(server.settings) == 0
