"""What the agent console needs beside the handoff itself: the live bot conversations to
watch, who a transfer went to, agents by name, whether agents may approve writes, sign-out."""

from __future__ import annotations

import pytest

from tests.integration.test_handoff import (
    console,
    reply,
    setup_desk,
    start_conversation,
    until,
)
from tests.support import RunningServer, ws_client

pytestmark = pytest.mark.anyio


async def test_live_conversations_assignments_names_and_the_context_flag(
    server: RunningServer,
) -> None:
    await setup_desk(server, agent_confirmations=True)
    async with ws_client(server) as visitor, console(server, "alice") as alice:
        await visitor.hello()
        cid = await start_conversation(visitor)
        await alice.send(type="conversations.live", id="live")
        live = await reply(alice, "live")
        await alice.send(type="conversations.live", id="bad", minutes=0)
        bad = await reply(alice, "bad")
        await alice.send(type="queue.subscribe", id="q")
        await reply(alice, "q")
        async with console(server, "bob") as bob:
            names = alice_sees = await until(alice, "presence.updated", agent_id=bob.me["id"])
            await alice.send(type="conversation.take_over", id="t", conversation_id=cid)
            taken = await reply(alice, "t")
            context = await until(alice, "handoff.context")
            await alice.send(
                type="conversation.transfer", id="x", conversation_id=cid, to_agent_id=bob.me["id"]
            )
            assert (await reply(alice, "x"))["type"] == "ack"
            assigned = await until(alice, "conversation.assigned")
            await bob.send(type="conversation.watch", id="w", conversation_id=cid)
            bob_opens = await reply(bob, "w")
            await alice.send(type="conversation.watch", id="w2", conversation_id=cid)
            alice_looks = await reply(alice, "w2")
        await alice.send(type="conversations.live", id="after")
        after = await reply(alice, "after")
    assert [item["conversation"]["id"] for item in live["conversations"]] == [cid]
    assert live["conversations"][0]["active_run"] is False  # answered already
    assert bad["code"] == "invalid_field"
    assert (names["status"], alice_sees["label"]) == ("online", "Bob")
    assert taken["type"] == "ack"
    assert context["agent_confirmations"] is True
    assert assigned["conversation_id"] == cid
    assert (assigned["agent_id"], assigned["from_agent_id"]) == (bob.me["id"], alice.me["id"])
    assert assigned["reason"] == "transfer"
    assert assigned["context"]["agent"]["id"] == bob.me["id"]
    assert assigned["context"]["agent_confirmations"] is True
    assert assigned["context"]["summary"].startswith("The visitor asked")
    assert bob_opens["context"] == assigned["context"]  # its owner opening it anew
    assert "context" not in alice_looks  # not hers any more
    assert after["conversations"] == []  # with a human now, not the bot


async def test_the_welcome_names_every_agent_and_sign_out_ends_the_token(
    server: RunningServer,
) -> None:
    await setup_desk(server)
    async with server.http() as http:
        login = await http.post(
            "/realtime/v1/agents/login",
            json={"tenant": "default", "email": "alice@example.com", "password": "correct horse"},
        )
        token = login.json()["token"]
        async with console(server, "bob") as bob:
            async with ws_client(server, path="/ws/console") as alice:
                await alice.send(type="hello", id="h", token=token)
                welcome = await alice.recv()
            headers = {"Authorization": f"Bearer {token}"}
            out = await http.post("/realtime/v1/agents/logout", headers=headers)
            again = await http.post("/realtime/v1/agents/logout", headers=headers)
            async with ws_client(server, path="/ws/console") as alice:
                await alice.send(type="hello", id="h", token=token)
                refused = await alice.recv()
    info = welcome["agents_info"]
    assert {entry["label"] for entry in info.values()} == {"Alice", "Bob"}
    assert info[bob.me["id"]]["status"] == "online"
    assert info[welcome["agent"]["id"]]["status"] == "online"
    assert (out.status_code, again.status_code) == (204, 401)
    assert refused["type"] == "error" and refused["code"] == "unauthorized"
