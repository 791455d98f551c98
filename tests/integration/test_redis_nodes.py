"""Servers on the Redis broker: a turn and a resume on one node, and events across two nodes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from realtime.config import Settings
from realtime.testing import FakeOpenAI, Text
from tests.support import (
    REDIS_URL,
    TERMINAL,
    llm_settings,
    make_settings,
    run_server,
    text_of,
    ws_client,
)

pytestmark = pytest.mark.anyio

URL = REDIS_URL


def on_redis(settings: Settings, redis_prefix: str, node: str = "") -> Settings:
    return replace(settings, redis_url=URL, redis_prefix=redis_prefix, node_id=node)


async def test_a_turn_and_a_resume_on_redis(
    tmp_path: Path, redis_prefix: str, fake_llm: FakeOpenAI, database_url: str
) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    fake_llm.add(None, [Text(words, delay=0.01)])
    settings = on_redis(llm_settings(tmp_path, fake_llm, database_url=database_url), redis_prefix)
    async with run_server(settings) as server:
        async with ws_client(server) as client:
            await client.hello()
            await client.send(type="message.send", id="m", content="stream please")
            seen = [await client.recv() for _ in range(8)]
        cid, epoch = seen[0]["conversation_id"], seen[0]["epoch"]
        last = max(f["seq"] for f in seen if "seq" in f)
        async with ws_client(server) as client:
            await client.hello(resume={"conversation_id": cid, "after_seq": last, "epoch": epoch})
            rest = await client.recv_until(*TERMINAL)
        async with server.http() as http:
            ready = (await http.get("/ready")).json()
    assert rest[-1]["type"] == "run.completed"
    assert text_of(seen) + text_of(rest) == words
    seqs = [f["seq"] for f in seen + rest if "seq" in f]
    assert seqs == sorted(set(seqs))
    assert ready["checks"]["broker"] == "ok"


async def test_events_cross_nodes(tmp_path: Path, redis_prefix: str, database_url: str) -> None:
    """A visitor on node A, the same session following the conversation on node B (one shared
    database: a SQLite file, or a PostgreSQL as in a real deployment)."""
    base = make_settings(tmp_path, database_url=database_url)
    async with (
        run_server(on_redis(base, redis_prefix, "node-a")) as a,
        run_server(on_redis(base, redis_prefix, "node-b")) as b,
    ):
        async with ws_client(a) as on_a, ws_client(b) as on_b:
            await on_a.hello(session_id="same")
            welcome_b = await on_b.hello(session_id="same")
            assert welcome_b["server"]["node"] == "node-b"
            await on_a.send(type="message.send", id="m", content="What is an epoch?")
            ack = await on_a.recv()
            await on_b.send(
                type="subscribe", id="s", conversation_id=ack["conversation_id"], after_seq=0
            )
            via_b = (await on_b.recv_until(*TERMINAL))[1:]
            via_a = await on_a.recv_until(*TERMINAL)
            # and a message sent on node B is answered, seen live on node A
            await on_b.send(
                type="message.send",
                id="m2",
                content="And a seq?",
                conversation_id=ack["conversation_id"],
            )
            second_a = await on_a.recv_until(*TERMINAL)
            second_b = await on_b.recv_until(*TERMINAL)
    assert via_b[0]["type"] == "message.created" and via_b[0]["seq"] == 1
    assert via_a[-1]["message"] == via_b[-1]["message"]
    assert second_a[-1]["message"] == second_b[-1]["message"]
    seqs = [f["seq"] for f in via_a + second_a if "seq" in f]
    assert seqs == sorted(set(seqs))
