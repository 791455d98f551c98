"""Cluster-wide rules on two nodes sharing one Redis and one database: one run at a time per
conversation, the queue limit, cancel and confirmations from the other node, claims, and
presence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from realtime.config import Settings
from realtime.testing import FakeOpenAI, Text, ToolCall
from tests.integration.test_confirmations import WIDGET, last_user, until, widgets
from tests.integration.test_handoff import PASSWORD, console, reply, setup_desk
from tests.integration.test_handoff import until as until_kind
from tests.support import (
    REDIS_URL,
    TERMINAL,
    RunningServer,
    llm_settings,
    make_settings,
    only,
    run_server,
    text_of,
    ws_client,
)

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def two_nodes(settings: Settings, prefix: str) -> AsyncIterator[tuple[RunningServer, ...]]:
    shared = replace(settings, redis_url=REDIS_URL, redis_prefix=prefix)
    async with (
        run_server(replace(shared, node_id="node-a")) as a,
        run_server(replace(shared, node_id="node-b")) as b,
    ):
        yield a, b


def runs_in_order(frames: list[dict[str, Any]]) -> list[str]:
    """The runs of a conversation's stream in order, checking that none overlaps another."""
    current, order = None, []
    for frame in frames:
        if frame["type"] == "run.started":
            assert current is None, f"run {frame['run_id']} started while {current} ran"
            current = frame["run_id"]
            order.append(current)
        elif frame["type"] in TERMINAL and frame["run_id"] == current:
            current = None
    return order


async def test_one_run_at_a_time_across_nodes(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    for n in range(4):
        words = " ".join(f"a{n}-{i}" for i in range(15))
        fake_llm.add(last_user(f"question {n}"), [Text(words, delay=0.01)])
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a, ws_client(b) as on_b:
            await on_a.hello(session_id="same")
            await on_b.hello(session_id="same")
            await on_a.send(type="message.send", id="0", content="question 0")
            ack = await on_a.recv()
            cid = ack["conversation_id"]
            await on_b.send(type="subscribe", id="s", conversation_id=cid, after_seq=0)
            await on_b.recv_until("ack")
            # While node A answers, both nodes take messages for the same conversation.
            for n, client in ((1, on_b), (2, on_a), (3, on_b)):
                await client.send(
                    type="message.send", id=str(n), content=f"question {n}", conversation_id=cid
                )
            frames: list[dict[str, Any]] = []
            while len(only(frames, "run.completed")) < 4:
                frames.append(await on_b.recv(wait=15))
        async with b.http() as http:
            url = f"/realtime/v1/conversations/{cid}/messages"
            history = (await http.get(url, params={"session_id": "same"})).json()
    order = runs_in_order(frames)
    assert len(order) == len(set(order)) == 4
    # Answered in the order the messages were stored (their time of arrival, which orders
    # the history and the queue alike), whichever node took them. The order in which the
    # nodes published message.created may differ: each publishes after its own commit.
    users = [m for m in history["messages"] if m["role"] == "user"]
    asked = [int(m["content"].split()[-1]) for m in users]
    assert sorted(asked) == [0, 1, 2, 3]
    answers = [f["message"]["content"] for f in only(frames, "run.completed")]
    assert answers == [" ".join(f"a{n}-{i}" for i in range(15)) for n in asked]
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(set(seqs))


async def test_the_queue_limit_counts_messages_from_every_node(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    fake_llm.add(last_user("slow"), [Text(" ".join(["w"] * 100), delay=0.02)])
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url, queue_limit=1)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a, ws_client(b) as on_b:
            await on_a.hello(session_id="same")
            await on_b.hello(session_id="same")
            await on_a.send(type="message.send", id="0", content="slow")
            cid = (await on_a.recv())["conversation_id"]
            await on_a.recv_until("run.token")
            await on_b.send(type="message.send", id="1", content="one", conversation_id=cid)
            first = (await on_b.recv_until("ack", "error"))[-1]
            await on_a.send(type="message.send", id="2", content="two", conversation_id=cid)
            second = (await on_a.recv_until("ack", "error"))[-1]
    assert first["type"] == "ack"
    assert (second["type"], second["code"]) == ("error", "queue_full")


async def test_a_run_on_node_a_is_cancelled_from_node_b(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    fake_llm.add(None, [Text(" ".join(["w"] * 300), delay=0.02)])
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a, ws_client(b) as on_b:
            await on_a.hello(session_id="same")
            await on_b.hello(session_id="same")
            await on_a.send(type="message.send", id="0", content="talk a lot")
            cid = (await on_a.recv())["conversation_id"]
            started = (await on_a.recv_until("run.started"))[-1]
            streamed = await on_a.recv_until("run.token")
            streamed += [await on_a.recv() for _ in range(5)]
            # Node B reads the history: the run going on on node A, with its text so far.
            async with b.http() as http:
                url = f"/realtime/v1/conversations/{cid}/messages"
                history = (await http.get(url, params={"session_id": "same"})).json()
            await on_b.send(type="run.cancel", id="c", conversation_id=cid)
            cancel_ack = (await on_b.recv_until("ack", "error"))[-1]
            ended = (await on_a.recv_until(*TERMINAL))[-1]
    assert cancel_ack["type"] == "ack", cancel_ack
    active = history["active_run"]
    assert active["run_id"] == started["run_id"]
    assert text_of(streamed).startswith(active["content"]) or active["content"].startswith(
        text_of(streamed)
    )
    assert len(active["content"].split()) >= 1
    assert ended["type"] == "run.cancelled" and ended["run_id"] == started["run_id"]
    assert 0 < len(ended["message"]["content"].split()) < 300


async def test_a_write_requested_on_node_a_is_approved_on_node_b_once(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    fake_llm.add(
        last_user("add a widget"),
        [ToolCall("create_record", WIDGET, id="w1")],
        [Text("Added the widget.")],
    )
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a, ws_client(b) as on_b:
            await on_a.hello(session_id="same")
            await on_b.hello(session_id="same")
            await on_a.send(type="message.send", id="ask", content="add a widget")
            asked = await until(on_a, "awaiting_confirmation")
            cid = asked[0]["conversation_id"]
            requested = only(asked, "confirmation.requested")[0]
            await on_b.send(type="subscribe", id="s", conversation_id=cid)
            await on_b.recv_until("ack")
            # Both nodes get a decision at the same moment: exactly one is taken.
            decide = {"type": "confirmation.resolve", "conversation_id": cid}
            decide |= {"tool_call_id": requested["tool_call_id"], "decision": "approve"}
            await asyncio.gather(on_a.send(id="x", **decide), on_b.send(id="y", **decide))
            rest_b = await on_b.recv_until(*TERMINAL)
            rest_a = await on_a.recv_until(*TERMINAL)
    answers = [f for f in rest_a + rest_b if f.get("id") in ("x", "y")]
    assert sorted(f["type"] for f in answers) == ["ack", "error"], answers
    assert [f["code"] for f in answers if f["type"] == "error"] == ["confirmation_not_pending"]
    assert rest_b[-1]["type"] == "run.completed", rest_b[-1]
    assert rest_b[-1]["message"]["content"] == "Added the widget."
    assert len(only(rest_b, "confirmation.resolved")) == 1
    assert await widgets(settings) == 1


async def test_claims_and_presence_across_nodes(
    tmp_path: Path, redis_prefix: str, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, presence_grace=0.5)
    async with two_nodes(settings, redis_prefix) as (a, b):
        await setup_desk(a)
        async with ws_client(a) as visitor:
            welcome = await visitor.hello()
            assert welcome["bot"]["handoff_available"] is False
            frames = await visitor.ask("What is an epoch?")
            cid = frames[0]["conversation_id"]
            async with console(a, "alice") as alice:
                # Alice is on node A; Bob, signing in on node B, sees her online.
                async with ws_client(b, path="/ws/console") as raw:
                    await raw.send(
                        type="hello",
                        id="h",
                        tenant="default",
                        email="bob@example.com",
                        password=PASSWORD,
                    )
                    bob_welcome = await raw.recv()
                assert bob_welcome["agents"].get(alice.me["id"]) == "online", bob_welcome
                async with console(b, "bob") as bob:
                    await bob.send(type="queue.subscribe", id="q")
                    await reply(bob, "q")
                    async with ws_client(b) as second:
                        assert (await second.hello())["bot"]["handoff_available"] is True
                    await visitor.send(type="handoff.request", id="h", conversation_id=cid)
                    await reply(visitor, "h")
                    requested = await until_kind(visitor, "handoff.requested")
                    assert requested["agents_online"] is True
                    added = await until_kind(bob, "queue.added")
                    assert added["item"]["conversation"]["id"] == cid
                    # Two agents on two nodes claim at once: exactly one wins.
                    await asyncio.gather(
                        alice.send(type="conversation.claim", id="c", conversation_id=cid),
                        bob.send(type="conversation.claim", id="c", conversation_id=cid),
                    )
                    replies = [await reply(alice, "c"), await reply(bob, "c")]
                    assert sorted(r["type"] for r in replies) == ["ack", "error"], replies
                    assert [r["code"] for r in replies if r["type"] == "error"] == [
                        "already_claimed"
                    ]
                    owner = alice if replies[0]["type"] == "ack" else bob
                    await owner.send(
                        type="conversation.send", id="m", conversation_id=cid, content="Hi there"
                    )
                    await reply(owner, "m")
                    said = await until_kind(visitor, "message.created")
                    while said["message"]["role"] != "agent":
                        said = await until_kind(visitor, "message.created")
                    assert said["message"]["content"] == "Hi there"
        # Both agents gone: once the grace ends, nobody is online on either node.
        for _ in range(60):
            async with ws_client(b) as later:
                if (await later.hello())["bot"]["handoff_available"] is False:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("agents stayed online after leaving")


async def test_a_forgotten_lease_is_taken_back_and_the_run_is_not_taken_over(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    """Redis restarting empty forgets every lease: the live holder takes its lease back at its
    next renewal, before the other node would believe it dead."""
    import redis.asyncio as redis

    words = " ".join(f"w{i}" for i in range(150))
    fake_llm.add(None, [Text(words, delay=0.03)])
    ttl = 1.5  # renewed every 0.5 s
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url, run_lease_ttl=ttl)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a:
            await on_a.hello()
            await on_a.send(type="message.send", id="0", content="talk")
            cid = (await on_a.recv())["conversation_id"]
            await on_a.recv_until("run.token")
            lease = f"{redis_prefix}lease:conversation:{cid}"
            client = redis.Redis.from_url(REDIS_URL)
            held = []
            try:
                assert await client.get(lease) == b"node-a"
                for _ in range(3):
                    await client.delete(lease)  # as a Redis restart would
                    await b.engine.runs.sweep()  # node B looks at once: the lease is free
                    await asyncio.sleep(ttl / 3 + 0.3)  # node A renews meanwhile
                    held.append(await client.get(lease))
                    await b.engine.runs.sweep()  # and node B sees it held again
            finally:
                await client.aclose()
            ended = (await on_a.recv_until(*TERMINAL, wait=20))[-1]
    assert held == [b"node-a"] * 3
    assert ended["type"] == "run.completed", ended
    assert ended["message"]["content"] == words


async def test_a_burst_across_two_nodes_gets_exactly_the_rate_limit(
    tmp_path: Path, redis_prefix: str, database_url: str
) -> None:
    """The per-session message limit is one GCRA bucket in Redis: 30 messages racing through
    two nodes, 10 a minute allowed, exactly 10 are stored."""
    settings = make_settings(
        tmp_path, database_url=database_url, messages_per_minute=10, queue_limit=100
    )
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a, ws_client(b) as on_b:
            await on_a.hello(session_id="burst")
            await on_b.hello(session_id="burst")
            await on_a.send(type="message.send", id="first", content="What is an epoch?")
            cid = (await on_a.recv_until("ack"))[-1]["conversation_id"]
            sends = [
                client.send(
                    type="message.send", id=f"m{i}", content=f"again {i}", conversation_id=cid
                )
                for i in range(30)
                for client in ((on_a, on_b)[i % 2],)
            ]
            await asyncio.gather(*sends)
            answers: dict[str, dict[str, Any]] = {}
            for client in (on_a, on_b):
                while len([k for k in answers if int(k[1:]) % 2 == (client is on_b)]) < 15:
                    frame = await client.recv(wait=15)
                    if frame.get("id", "").startswith("m") and frame["type"] in ("ack", "error"):
                        answers[frame["id"]] = frame
        async with a.http() as http:
            url = f"/realtime/v1/conversations/{cid}/messages"
            history = (await http.get(url, params={"session_id": "burst"})).json()
    accepted = [k for k, f in answers.items() if f["type"] == "ack"]
    refused = [f for f in answers.values() if f["type"] == "error"]
    assert len(accepted) == 9, answers  # the first message took one of the 10
    assert {f["code"] for f in refused} == {"rate_limited"}
    assert all(f["retry_after"] > 0 for f in refused)
    users = [m for m in history["messages"] if m["role"] == "user"]
    assert len(users) == 10


async def test_a_holder_whose_run_was_ended_elsewhere_stops_without_a_second_end(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    """Node B believed node A lost (its lease was gone), took the lease and ended A's run as
    node_lost: A, at its next renewal, finds the lease taken and its run ended, and stops the
    run without publishing an end of its own."""
    from realtime.runs import lease_name

    words = " ".join(f"w{i}" for i in range(150))
    fake_llm.add(None, [Text(words, delay=0.03)])
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url, run_lease_ttl=0.9)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with ws_client(a) as on_a:
            await on_a.hello()
            await on_a.send(type="message.send", id="0", content="talk")
            cid = (await on_a.recv())["conversation_id"]
            rid = (await on_a.recv_until("run.started"))[-1]["run_id"]
            first = await on_a.recv_until("run.token")
            lease = lease_name(cid)
            await b.engine.coordination.release(lease, "node-a")  # as a restart loses it
            assert await b.engine.coordination.acquire(lease, "node-b", 30)
            run = await b.engine.store.get_run(rid)
            assert run is not None
            assert await b.engine.runs._end_lost(run, "node_lost", "the node went away")
            frames = await on_a.recv_until(*TERMINAL)
            later: list[dict[str, Any]] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    later.append(await on_a.recv(wait=1.5))
            assert a.engine.runs.active(cid) is None  # A stopped it
            stored = await a.engine.store.get_run(rid)
    assert frames[-1]["type"] == "run.failed" and frames[-1]["code"] == "node_lost"
    assert not [f for f in later if f["type"] in TERMINAL], later
    streamed = text_of(first + frames + later)
    assert words.startswith(streamed) and len(streamed) < len(words) // 2  # A stopped early
    assert stored is not None and (stored.status, stored.error_code) == ("failed", "node_lost")


async def burst(
    nodes: tuple[RunningServer, ...], session_id: str, count: int
) -> tuple[str, dict[str, dict[str, Any]]]:
    """One message, then ``count`` more racing through the nodes in turn into the same
    conversation: the conversation and each racing message's answer (``ack`` or ``error``)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws_client(node)) for node in nodes]
        for client in clients:
            await client.hello(session_id=session_id)
        await clients[0].send(type="message.send", id="first", content="What is an epoch?")
        first = (await clients[0].recv_until("ack", "error"))[-1]
        assert first["type"] == "ack", first
        cid = first["conversation_id"]
        await asyncio.gather(
            *(
                clients[i % len(clients)].send(
                    type="message.send", id=f"m{i}", content=f"again {i}", conversation_id=cid
                )
                for i in range(count)
            )
        )
        answers: dict[str, dict[str, Any]] = {}
        for n, client in enumerate(clients):
            mine = len(range(n, count, len(clients)))
            while len([k for k in answers if int(k[1:]) % len(clients) == n]) < mine:
                frame = await client.recv(wait=15)
                if str(frame.get("id", "")).startswith("m") and frame["type"] in ("ack", "error"):
                    answers[frame["id"]] = frame
    return cid, answers


async def stored_user_messages(node: RunningServer, cid: str, session_id: str) -> int:
    async with node.http() as http:
        url = f"/realtime/v1/conversations/{cid}/messages"
        history = (await http.get(url, params={"session_id": session_id})).json()
    return len([m for m in history["messages"] if m["role"] == "user"])


async def test_a_tenant_quota_racing_through_two_nodes_admits_exactly_the_quota(
    tmp_path: Path, redis_prefix: str, database_url: str
) -> None:
    """The monthly quota is one conditional update in the store: 30 messages racing through
    two nodes against a quota of 8 store exactly 8; the rest get quota_exceeded with the
    seconds until next month, and store nothing."""
    settings = make_settings(tmp_path, database_url=database_url, queue_limit=100)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with a.admin() as admin:
            quota = await admin.patch("/admin/v1/tenants/default", json={"monthly_messages": 8})
            assert quota.status_code == 200, quota.text
            assert quota.json()["monthly_messages"] == 8
        cid, answers = await burst((a, b), "quota", 30)
        async with b.admin() as admin:
            tenant = (await admin.get("/admin/v1/tenants/default")).json()
        stored = await stored_user_messages(b, cid, "quota")
    accepted = [k for k, f in answers.items() if f["type"] == "ack"]
    refused = [f for f in answers.values() if f["type"] == "error"]
    assert len(accepted) == 7, answers  # the first message took one of the 8
    assert {f["code"] for f in refused} == {"quota_exceeded"}
    assert all(f["retry_after"] > 0 for f in refused)
    assert stored == 8
    assert tenant["usage"]["messages"] == 8


async def test_a_bot_override_is_stricter_and_never_looser_than_the_server(
    tmp_path: Path, redis_prefix: str, database_url: str
) -> None:
    """Server: 10 a minute. The demo bot says 4: 4 pass (through both nodes). Said 50, the
    server's 10 still hold."""
    settings = make_settings(
        tmp_path, database_url=database_url, messages_per_minute=10, queue_limit=100
    )
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with a.admin() as admin:
            bot = "/admin/v1/tenants/default/bots/demo"
            patched = await admin.patch(bot, json={"rate_limits": {"messages_per_minute": 4}})
            assert patched.status_code == 200, patched.text
            bad = await admin.patch(bot, json={"rate_limits": {"messages_per_minute": 0}})
            unknown = await admin.patch(bot, json={"rate_limits": {"per_fortnight": 3}})
        _, strict = await burst((a, b), "strict", 12)
        async with a.admin() as admin:
            await admin.patch(bot, json={"rate_limits": {"messages_per_minute": 50}})
        _, loose = await burst((a, b), "loose", 20)
    assert (bad.status_code, unknown.status_code) == (400, 400)
    assert len([f for f in strict.values() if f["type"] == "ack"]) == 3
    assert {f["code"] for f in strict.values() if f["type"] == "error"} == {"rate_limited"}
    assert len([f for f in loose.values() if f["type"] == "ack"]) == 9


async def test_the_per_address_connection_limit_holds_across_nodes(
    tmp_path: Path, redis_prefix: str, database_url: str
) -> None:
    """Three WebSockets per address in the cluster: two on A and one on B fill it, a fourth
    on either node is refused (1013); one closed on A frees a place on B."""
    settings = make_settings(tmp_path, database_url=database_url, connections_per_ip=3)
    async with two_nodes(settings, redis_prefix) as (a, b):
        async with contextlib.AsyncExitStack() as stack:
            held = [await stack.enter_async_context(ws_client(node)) for node in (a, a, b)]
            for client in held:
                await client.hello()
            refused = []
            for node in (a, b):
                async with ws_client(node) as extra:
                    refused.append(await extra.recv())
                    with pytest.raises(ConnectionClosed) as closed:
                        await extra.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            await held[0].close()
            for _ in range(100):  # the release reaches the coordination after the close
                if a.engine.connections.count("127.0.0.1") == 1:
                    break
                await asyncio.sleep(0.02)
            async with ws_client(b) as later:
                welcome = await later.hello()
    assert [f["code"] for f in refused] == ["too_many_connections"] * 2
    assert welcome["type"] == "welcome"
