"""Human handoff end to end: a visitor on /ws, human agents on /ws/console, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from realtime.testing import FakeOpenAI, Text, ToolCall
from tests.support import (
    UNIT,
    Client,
    RunningServer,
    llm_settings,
    make_settings,
    only,
    run_server,
    ws_client,
)

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse"


async def setup_desk(
    server: RunningServer, *, trigger: str = "both", capacity: int = 5, **bot: Any
) -> None:
    """Enable handoff on the demo bot and create agents alice and bob."""
    async with server.admin() as admin:
        patched = await admin.patch(
            "/admin/v1/tenants/default/bots/demo",
            json={
                "handoff_enabled": True,
                "handoff_trigger": trigger,
                "handoff_offline_message": "Nobody is here right now.",
                **bot,
            },
        )
        assert patched.status_code == 200, patched.text
        for name in ("alice", "bob"):
            created = await admin.post(
                "/admin/v1/tenants/default/agents",
                json={
                    "name": name.title(),
                    "email": f"{name}@example.com",
                    "password": PASSWORD,
                    "capacity": capacity,
                },
            )
            assert created.status_code == 201, created.text


@contextlib.asynccontextmanager
async def console(server: RunningServer, name: str, **hello: Any) -> AsyncIterator[Client]:
    async with ws_client(server, path="/ws/console") as agent:
        await agent.send(
            type="hello",
            id="hello",
            tenant="default",
            email=f"{name}@example.com",
            password=PASSWORD,
            **hello,
        )
        welcome = await agent.recv()
        assert welcome["type"] == "welcome", welcome
        agent.me = welcome["agent"]  # type: ignore[attr-defined]
        yield agent


async def reply(client: Client, client_id: str) -> dict[str, Any]:
    """Read until the reply to ``client_id``; other frames are kept on ``client.seen``."""
    seen = client.__dict__.setdefault("seen", [])
    while True:
        frame = await client.recv()
        if frame.get("id") == client_id and frame["type"] in ("ack", "error", "welcome"):
            return frame
        seen.append(frame)


async def until(client: Client, kind: str, **match: Any) -> dict[str, Any]:
    """The next frame of ``kind`` (matching ``match``), checking frames seen before first."""
    seen = client.__dict__.setdefault("seen", [])
    for i, frame in enumerate(seen):
        if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
            return seen.pop(i)  # type: ignore[no-any-return]
    while True:
        frame = await client.recv()
        if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
            return frame
        seen.append(frame)


async def start_conversation(visitor: Client, text: str = "What is an epoch?") -> str:
    frames = await visitor.ask(text, id="first")
    assert frames[-1]["type"] == "run.completed"
    return str(frames[0]["conversation_id"])


async def test_request_claim_race_talk_transfer_release_close(server: RunningServer) -> None:
    await setup_desk(server)
    async with (
        ws_client(server) as visitor,
        console(server, "alice") as alice,
        console(server, "bob") as bob,
    ):
        await visitor.hello()
        cid = await start_conversation(visitor)
        for agent in (alice, bob):
            await agent.send(type="queue.subscribe", id="q")
            assert (await reply(agent, "q"))["queue"] == []

        await visitor.send(type="handoff.request", id="h", conversation_id=cid)
        assert (await reply(visitor, "h"))["queued"] is True
        requested = await until(visitor, "handoff.requested")
        assert (requested["queue_position"], requested["reason"]) == (1, "button")
        assert requested["agents_online"] is True
        assert (await until(visitor, "conversation.updated"))["status"] == "pending_human"
        for agent in (alice, bob):
            added = await until(agent, "queue.added")
            assert added["item"]["conversation"]["id"] == cid
            assert "What is an epoch?" in added["item"]["summary"]

        # Two agents claim at once: exactly one wins.
        await asyncio.gather(
            alice.send(type="conversation.claim", id="c", conversation_id=cid),
            bob.send(type="conversation.claim", id="c", conversation_id=cid),
        )
        replies = {"alice": await reply(alice, "c"), "bob": await reply(bob, "c")}
        winners = [n for n, r in replies.items() if r["type"] == "ack"]
        assert len(winners) == 1, replies
        loser = "bob" if winners == ["alice"] else "alice"
        assert replies[loser]["code"] == "already_claimed"
        owner, other = (alice, bob) if winners == ["alice"] else (bob, alice)
        history = replies[winners[0]]["history"]
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
        context = await until(owner, "handoff.context")
        assert context["summary"].startswith("The visitor asked: What is an epoch?")
        assert context["visitor"] == {"kind": "session", "id": "s-1", "info": None}
        await until(owner, "handoff.accepted")
        accepted = await until(visitor, "handoff.accepted")
        assert accepted["agent"] == {"id": owner.me["id"], "label": owner.me["label"]}
        removed = await until(other, "queue.removed")
        assert (removed["conversation_id"], removed["reason"]) == (cid, "claimed")

        # Messages both ways, live; the bot stays silent.
        await visitor.send(
            type="message.send", id="v1", content="Hello, is someone there?", conversation_id=cid
        )
        await reply(visitor, "v1")
        got = await until(owner, "message.created")
        assert (got["message"]["role"], got["message"]["content"]) == (
            "user",
            "Hello, is someone there?",
        )
        await owner.send(
            type="conversation.send", id="a1", conversation_id=cid, content="Yes, I'm here to help."
        )
        await reply(owner, "a1")
        said = await until(
            visitor,
            "message.created",
        )
        while said["message"]["role"] != "agent":
            said = await until(visitor, "message.created")
        assert said["message"]["content"] == "Yes, I'm here to help."
        assert said["message"]["agent"]["label"] == owner.me["label"]
        assert not only(visitor.__dict__["seen"], "run.started"), (
            "the bot spoke to a person's visitor"
        )

        # Typing both ways, and nobody sees their own.
        await visitor.send(type="typing", conversation_id=cid, on=True)
        typing = await until(owner, "typing")
        assert (typing["who"], typing["on"]) == ("visitor", True)
        await owner.send(type="typing", conversation_id=cid, on=True)
        typing = await until(visitor, "typing")
        assert (typing["who"], typing["agent"]["label"]) == ("agent", owner.me["label"])

        # Transfer to the other agent, who follows it.
        await owner.send(
            type="conversation.transfer", id="t", conversation_id=cid, to_agent_id=other.me["id"]
        )
        assert (await reply(owner, "t"))["type"] == "ack"
        moved = await until(visitor, "handoff.transferred")
        assert moved["agent"]["id"] == other.me["id"] and moved["reason"] == "transfer"
        await other.send(type="conversations.list", id="l")
        listed = (await reply(other, "l"))["conversations"]
        assert [c["conversation"]["id"] for c in listed] == [cid]
        await other.send(type="subscribe", id="s", conversation_id=cid)
        assert (await reply(other, "s"))["type"] == "ack"
        await owner.send(type="conversation.send", id="a2", conversation_id=cid, content="x")
        assert (await reply(owner, "a2"))["code"] == "not_yours"

        # Release to the bot: the bot answers again, knowing what the person said.
        await other.send(type="conversation.release", id="r", conversation_id=cid)
        assert (await reply(other, "r"))["type"] == "ack"
        released = await until(visitor, "handoff.released")
        assert (released["reason"], released["agent"]["id"]) == ("agent", other.me["id"])
        frames = await visitor.ask("And what is a seq?", conversation_id=cid, id="v2")
        assert frames[-1]["type"] == "run.completed"

        # Hand off again, claim, close.
        await visitor.send(type="handoff.request", id="h2", conversation_id=cid)
        await reply(visitor, "h2")
        await other.send(type="conversation.claim", id="c2", conversation_id=cid)
        assert (await reply(other, "c2"))["type"] == "ack"
        await other.send(type="conversation.close", id="x", conversation_id=cid)
        assert (await reply(other, "x"))["type"] == "ack"
        closed = await until(visitor, "conversation.updated", status="closed")
        assert closed["agent"]["id"] == other.me["id"]
        assert not [f for f in visitor.__dict__.get("seen", []) if f["type"] == "handoff.context"]


async def test_no_agent_online_then_one_arrives(server: RunningServer) -> None:
    await setup_desk(server)
    async with ws_client(server) as visitor:
        await visitor.hello()
        cid = await start_conversation(visitor)
        await visitor.send(type="handoff.request", id="h", conversation_id=cid)
        await reply(visitor, "h")
        requested = await until(visitor, "handoff.requested")
        assert requested["agents_online"] is False
        notice = await until(visitor, "message.created")
        assert (notice["message"]["role"], notice["message"]["content"]) == (
            "system",
            "Nobody is here right now.",
        )
        async with console(server, "alice") as alice:
            await alice.send(type="queue.subscribe", id="q")
            queue = (await reply(alice, "q"))["queue"]
            assert [item["conversation"]["id"] for item in queue] == [cid]
            assert queue[0]["queue_position"] == 1 and queue[0]["reason"] == "button"
            await alice.send(type="conversation.claim", id="c", conversation_id=cid)
            claimed = await reply(alice, "c")
        assert claimed["type"] == "ack"
        assert [m["role"] for m in claimed["history"]["messages"]] == [
            "user",
            "assistant",
            "system",
        ]
        assert (await until(visitor, "handoff.accepted"))["take_over"] is False


async def test_reconnect_within_grace_keeps_presence_and_assignments(
    tmp_path: Path, database_url: str
) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, presence_grace=1.0)
    ) as server:
        await setup_desk(server)
        async with ws_client(server) as visitor, console(server, "bob") as bob:
            await bob.send(type="queue.subscribe", id="q")
            await reply(bob, "q")
            await visitor.hello()
            cid = await start_conversation(visitor)
            await visitor.send(type="handoff.request", id="h", conversation_id=cid)
            await reply(visitor, "h")
            async with console(server, "alice") as alice:
                await alice.send(type="conversation.claim", id="c", conversation_id=cid)
                assert (await reply(alice, "c"))["type"] == "ack"
            await asyncio.sleep(0.3 * UNIT)  # a reload: back well within the grace period
            async with console(server, "alice") as alice:
                assert alice.me["label"] == "Alice"
                await alice.send(type="conversations.list", id="l")
                listed = (await reply(alice, "l"))["conversations"]
                assert [c["conversation"]["id"] for c in listed] == [cid]
                await alice.send(
                    type="conversation.send", id="m", conversation_id=cid, content="Still here."
                )
                assert (await reply(alice, "m"))["type"] == "ack"
            # Gone for longer than the grace period: offline, and the conversation is queued.
            moved = await until(visitor, "handoff.transferred")
            assert (moved["reason"], moved["agent"]) == ("agent_offline", None)
            assert moved["queue_position"] == 1
            # Alice's changes (Bob may also hear of himself: his own announcement can reach
            # the tenant's channel after his queue.subscribe did).
            alice_id = listed[0]["conversation"]["agent_id"]
            changes = [await until(bob, "presence.updated", agent_id=alice_id) for _ in range(2)]
            assert [c["status"] for c in changes] == ["online", "offline"], changes
            assert (await until(bob, "queue.added"))["item"]["conversation"]["id"] == cid


async def test_the_model_hands_off(tmp_path: Path, database_url: str, fake_llm: FakeOpenAI) -> None:
    fake_llm.add(None, [ToolCall("request_handoff", {"reason": "refund dispute"}, id="h1")])
    async with run_server(llm_settings(tmp_path, fake_llm, database_url=database_url)) as server:
        await setup_desk(server, trigger="auto")
        async with ws_client(server) as visitor:
            await visitor.hello()
            frames = await visitor.ask("I want my money back, now.", id="m")
            done = frames[-1]
            assert done["type"] == "run.completed"
            assert done["message"]["content"] == (
                "I'm passing this conversation to a person from our team."
            )
            assert only(frames, "run.step")[0]["action"] == "request_handoff"
            requested = await until(visitor, "handoff.requested")
            assert requested["reason"] == "model"
        tools = {t["function"]["name"] for t in fake_llm.requests[0].body["tools"]}
        assert "request_handoff" in tools
        assert len(fake_llm.requests) == 1  # no second model call after the handoff


async def test_asking_for_a_person_in_words_hands_off_without_a_run(server: RunningServer) -> None:
    await setup_desk(server, trigger="auto")
    async with ws_client(server) as visitor:
        await visitor.hello()
        cid = await start_conversation(visitor)
        await visitor.send(
            type="message.send",
            id="m",
            content="Can I talk to a human, please?",
            conversation_id=cid,
        )
        await reply(visitor, "m")
        requested = await until(visitor, "handoff.requested")
        assert requested["reason"] == "message"
        await visitor.send(type="handoff.request", id="b", conversation_id=cid)
        refused = await reply(visitor, "b")  # the button is not this bot's trigger
        assert (refused["type"], refused.get("queued")) == ("ack", False)
    assert not only(visitor.__dict__.get("seen", []), "run.started")


async def test_offline_responder_hands_off_when_it_cannot_answer(server: RunningServer) -> None:
    await setup_desk(server, trigger="auto")
    async with ws_client(server) as visitor:
        await visitor.hello()
        frames = await visitor.ask("zebra quokka xylophone?", id="m")
        assert frames[-1]["message"]["content"].endswith("to a person from our team.")
        requested = await until(visitor, "handoff.requested")
        assert requested["reason"] == "auto"


async def test_button_needs_the_button_trigger(server: RunningServer) -> None:
    await setup_desk(server, trigger="auto")
    async with ws_client(server) as visitor:
        await visitor.hello()
        cid = await start_conversation(visitor)
        await visitor.send(type="handoff.request", id="b", conversation_id=cid)
        refused = await reply(visitor, "b")
    assert refused["code"] == "handoff_unavailable"


async def test_withdrawn_and_expired_requests_return_to_the_bot(
    tmp_path: Path, database_url: str
) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, handoff_timeout=0.6)
    ) as server:
        await setup_desk(server)
        async with ws_client(server) as visitor:
            await visitor.hello()
            cid = await start_conversation(visitor)
            await visitor.send(type="handoff.request", id="h", conversation_id=cid)
            await reply(visitor, "h")
            await visitor.send(type="handoff.cancel", id="x", conversation_id=cid)
            assert (await reply(visitor, "x"))["type"] == "ack"
            released = await until(visitor, "handoff.released")
            assert (released["reason"], released["agent"]) == ("cancelled", None)
            await visitor.send(type="handoff.cancel", id="y", conversation_id=cid)
            assert (await reply(visitor, "y"))["code"] == "not_queued"
            await visitor.send(type="handoff.request", id="h2", conversation_id=cid)
            await reply(visitor, "h2")
            expired = await until(visitor, "handoff.released", reason="timeout")
            assert expired["agent"] is None
            frames = await visitor.ask("What is an epoch?", conversation_id=cid)
            assert frames[-1]["type"] == "run.completed"


async def test_capacity_is_respected(server: RunningServer) -> None:
    await setup_desk(server, capacity=1)
    async with console(server, "alice") as alice:
        cids = []
        for n in range(2):
            async with ws_client(server) as visitor:
                await visitor.hello(session_id=f"v{n}")
                cid = await start_conversation(visitor)
                await visitor.send(type="handoff.request", id="h", conversation_id=cid)
                await reply(visitor, "h")
                cids.append(cid)
        await alice.send(type="conversation.claim", id="1", conversation_id=cids[0])
        assert (await reply(alice, "1"))["type"] == "ack"
        await alice.send(type="conversation.claim", id="2", conversation_id=cids[1])
        assert (await reply(alice, "2"))["code"] == "capacity_reached"
        await alice.send(type="conversation.claim", id="3", conversation_id=cids[0])
        assert (await reply(alice, "3"))["code"] == "already_yours"


async def test_watch_live_and_take_over_mid_answer(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    slow = " ".join(f"w{i}" for i in range(80))
    fake_llm.add(None, [Text(slow, delay=0.03)])
    async with run_server(llm_settings(tmp_path, fake_llm, database_url=database_url)) as server:
        await setup_desk(server)
        async with ws_client(server) as visitor, console(server, "alice") as alice:
            await visitor.hello()
            await visitor.send(type="message.send", id="m", content="tell me a long story")
            cid = (await reply(visitor, "m"))["conversation_id"]
            await until(visitor, "run.token")
            await alice.send(type="conversation.watch", id="w", conversation_id=cid)
            watched = await reply(alice, "w")
            assert watched["history"]["active_run"] is not None
            first = await until(alice, "run.token")
            assert first["delta"].strip().startswith("w")
            await alice.send(type="conversation.take_over", id="t", conversation_id=cid)
            assert (await reply(alice, "t"))["type"] == "ack"
            cancelled = await until(visitor, "run.cancelled")
            assert 0 < len(cancelled["message"]["content"]) < len(slow)
            accepted = await until(visitor, "handoff.accepted")
            assert accepted["take_over"] is True
            context = await until(alice, "handoff.context")
            assert context["summary"].startswith("The visitor asked: tell me a long story")
            await alice.send(
                type="conversation.send",
                id="s",
                conversation_id=cid,
                content="I'll take it from here.",
            )
            assert (await reply(alice, "s"))["type"] == "ack"


async def test_agents_see_only_their_tenant_and_visitors_are_not_agents(
    server: RunningServer,
) -> None:
    await setup_desk(server)
    async with server.admin() as admin:
        await admin.post("/admin/v1/tenants", json={"name": "Other", "id": "other"})
        made = await admin.post(
            "/admin/v1/tenants/other/agents",
            json={"name": "Olga", "email": "olga@example.com", "password": PASSWORD},
        )
        assert made.status_code == 201
        dup = await admin.post(
            "/admin/v1/tenants/default/agents",
            json={"name": "Alice", "email": "ALICE@example.com", "password": PASSWORD},
        )
        assert dup.status_code == 409
        short = await admin.post(
            "/admin/v1/tenants/default/agents",
            json={"name": "Zed", "email": "zed@example.com", "password": "short"},
        )
        assert short.status_code == 400
    async with server.http() as http:
        bad = await http.post(
            "/realtime/v1/agents/login",
            json={"tenant": "default", "email": "alice@example.com", "password": "wrong"},
        )
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
        good = await http.post(
            "/realtime/v1/agents/login",
            json={"tenant": "other", "email": "olga@example.com", "password": PASSWORD},
        )
        assert good.status_code == 200
        token = good.json()["token"]
    async with ws_client(server) as visitor:
        await visitor.hello()
        cid = await start_conversation(visitor)
        await visitor.send(type="conversation.claim", id="v", conversation_id=cid)
        assert (await visitor.recv())["code"] == "unknown_type"
        await visitor.send(type="handoff.request", id="h", conversation_id=cid)
        await reply(visitor, "h")
        async with ws_client(server, path="/ws/console") as olga:
            await olga.send(type="hello", id="x", token="rtg_forged")
            assert (await olga.recv())["code"] == "unauthorized"
            await olga.send(type="queue.subscribe", id="early")
            assert (await olga.recv())["code"] == "hello_required"
            await olga.send(type="hello", id="hello", token=token)
            assert (await olga.recv())["agent"]["tenant"] == "other"
            await olga.send(type="queue.subscribe", id="q")
            assert (await reply(olga, "q"))["queue"] == []
            for n, kind in enumerate(
                ("conversation.claim", "conversation.watch", "conversation.take_over", "subscribe")
            ):
                await olga.send(type=kind, id=str(n), conversation_id=cid)
                refused = await reply(olga, str(n))
                assert refused["code"] == "conversation_not_found", (kind, refused)
        async with console(server, "alice") as alice:
            await alice.send(
                type="conversation.send", id="s", conversation_id=cid, content="not claimed yet"
            )
            assert (await reply(alice, "s"))["code"] == "not_yours"
            await alice.send(type="conversation.release", id="r", conversation_id=cid)
            assert (await reply(alice, "r"))["code"] == "not_yours"


WIDGET = {"table": "products", "data": {"name": "Desk Widget", "price": 12, "category_id": 1}}


async def test_an_agent_may_answer_a_pending_write_when_the_bot_allows_it(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(None, [ToolCall("create_record", WIDGET, id="call_d1")])
    async with run_server(llm_settings(tmp_path, fake_llm, database_url=database_url)) as server:
        await setup_desk(server)
        async with ws_client(server) as visitor, console(server, "alice") as alice:
            await visitor.hello()
            await visitor.send(type="message.send", id="m", content="add the desk widget")
            cid = (await reply(visitor, "m"))["conversation_id"]
            await until(visitor, "run.status", stage="awaiting_confirmation")
            await visitor.send(type="handoff.request", id="h", conversation_id=cid)
            await reply(visitor, "h")
            await alice.send(type="conversation.claim", id="c", conversation_id=cid)
            claimed = await reply(alice, "c")
            assert claimed["history"]["pending_confirmation"]["tool_call_id"] == "call_d1"
            context = await until(alice, "handoff.context")
            assert context["pending_confirmation"]["params"] == WIDGET
            resolve = {
                "type": "confirmation.resolve",
                "conversation_id": cid,
                "tool_call_id": "call_d1",
                "decision": "approve",
            }
            await alice.send(**resolve, id="no")
            assert (await reply(alice, "no"))["code"] == "forbidden"  # not allowed by the bot
            async with server.admin() as admin:
                await admin.patch(
                    "/admin/v1/tenants/default/bots/demo", json={"agent_confirmations": True}
                )
            await alice.send(**resolve, id="yes")
            assert (await reply(alice, "yes"))["type"] == "ack"
            step = await until(visitor, "run.step")
            while "observation" not in step:  # the first one went out before the request
                step = await until(visitor, "run.step")
            assert step["observation"].startswith("Created products #")
            resolved = await until(visitor, "confirmation.resolved")
            assert (resolved["decision"], resolved["by"]) == ("approved", "agent")
            done = await until(visitor, "run.completed")
            assert done["message"]["content"] == ""
        assert len(fake_llm.requests) == 1  # the bot said nothing more: a person owns it


async def test_after_release_the_model_knows_what_the_person_said(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    async with run_server(llm_settings(tmp_path, fake_llm, database_url=database_url)) as server:
        await setup_desk(server)
        async with ws_client(server) as visitor, console(server, "alice") as alice:
            await visitor.hello()
            cid = await start_conversation(visitor, "Where is my parcel?")
            await visitor.send(type="handoff.request", id="h", conversation_id=cid)
            await reply(visitor, "h")
            await alice.send(type="conversation.claim", id="c", conversation_id=cid)
            await reply(alice, "c")
            await alice.send(
                type="conversation.send",
                id="s",
                conversation_id=cid,
                content="I re-sent your parcel today.",
            )
            await reply(alice, "s")
            await alice.send(type="conversation.release", id="r", conversation_id=cid)
            await reply(alice, "r")
            await until(visitor, "handoff.released")
            frames = await visitor.ask("Thanks! When will it arrive?", conversation_id=cid)
            assert frames[-1]["type"] == "run.completed"
    messages = fake_llm.requests[-1].body["messages"]
    spoken = [(m["role"], m["content"]) for m in messages if m["role"] != "system"]
    assert spoken[-2:] == [
        ("assistant", "[Alice, a person from the team]: I re-sent your parcel today."),
        ("user", "Thanks! When will it arrive?"),
    ]
    notes = [m["content"] for m in messages[1:] if m["role"] == "system"]
    assert any("handed the conversation back" in n for n in notes), notes


async def test_an_away_agent_is_not_available(server: RunningServer) -> None:
    await setup_desk(server)
    async with console(server, "alice") as alice, ws_client(server) as visitor:
        await alice.send(type="presence.set", id="p", status="away")
        assert (await reply(alice, "p"))["status"] == "away"
        await visitor.hello()
        cid = await start_conversation(visitor)
        await visitor.send(type="handoff.request", id="h", conversation_id=cid)
        await reply(visitor, "h")
        assert (await until(visitor, "handoff.requested"))["agents_online"] is False
        notice = await until(visitor, "message.created")
        assert notice["message"]["role"] == "system"
        await alice.send(type="presence.set", id="p2", status="online")
        assert (await reply(alice, "p2"))["status"] == "online"


async def test_a_message_waiting_behind_the_bot_is_dropped_by_a_handoff(
    tmp_path: Path, fake_llm: FakeOpenAI, database_url: str
) -> None:
    slow = " ".join(f"w{i}" for i in range(100))
    fake_llm.add(None, [Text(slow, delay=0.03)])
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    async with run_server(settings) as server:
        await setup_desk(server)
        async with ws_client(server) as visitor:
            await visitor.hello()
            await visitor.send(type="message.send", id="a", content="a long answer please")
            cid = (await reply(visitor, "a"))["conversation_id"]
            first = await until(visitor, "run.started")
            await until(visitor, "run.token")  # the first answer is under way
            await visitor.send(
                type="message.send", id="b", content="and then this", conversation_id=cid
            )
            await reply(visitor, "b")
            await visitor.send(type="handoff.request", id="h", conversation_id=cid)
            await reply(visitor, "h")
            ended = [await until(visitor, "run.cancelled") for _ in range(2)]
    assert ended[0]["run_id"] == first["run_id"]
    assert ended[1]["run_id"] != first["run_id"] and ended[1]["message"] is None
    started = [f for f in visitor.__dict__["seen"] if f["type"] == "run.started"]
    assert started == [], "the queued message was answered by the bot"
    asked = [r.body["messages"][-1]["content"] for r in fake_llm.requests]
    assert asked == ["a long answer please"]
