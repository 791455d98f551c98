"""A node dies or is stopped mid-answer: its visitor resumes on another node and loses
nothing. Two real ``realtime serve`` processes (``scripts/cluster.py``, no nginx) on one
PostgreSQL and one Redis, answering from the fake OpenAI server of this test process."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.testing import FakeOpenAI, Text
from scripts.cluster import Cluster
from tests.cluster.support import running_cluster
from tests.databases import PostgresDatabases
from tests.integration.test_confirmations import last_user
from tests.support import TERMINAL, UNIT, Client, only, text_of

pytestmark = pytest.mark.anyio

LEASE_TTL = 1.5  # a lost node's run ends after about 1.5x this


@pytest.fixture
async def nodes(
    tmp_path: Path, postgres: PostgresDatabases, redis_prefix: str, fake_llm: FakeOpenAI
) -> AsyncIterator[Cluster]:
    env = {
        "REALTIME_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "sk-test",
        "REALTIME_LLM_MAX_RETRIES": "0",
        "REALTIME_RUN_LEASE_TTL": str(LEASE_TTL),
        "REALTIME_DRAIN_TIMEOUT": "15",
    }
    async with running_cluster(
        tmp_path / "cluster",
        postgres,
        redis_prefix,
        nodes=2,
        nginx=False,
        env=env,
        stop_timeout=20 * UNIT,
    ) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def visitor(cluster: Cluster, node: int) -> AsyncIterator[Client]:
    async with connect(cluster.node_ws_url(node), open_timeout=10 * UNIT, max_queue=None) as ws:
        yield Client(ws)


async def start_two_turns(client: Client) -> tuple[str, int, list[dict[str, Any]]]:
    """Ask a slow question, read a few of its tokens, queue a second question behind it."""
    welcome = await client.hello(session_id="traveller")
    assert welcome["type"] == "welcome"
    await client.send(type="message.send", id="1", content="slow")
    ack = await client.recv()
    frames = [await client.recv() for _ in range(6)]
    assert only(frames, "run.token"), frames
    await client.send(
        type="message.send", id="2", content="after", conversation_id=ack["conversation_id"]
    )
    frames += await client.recv_until("ack")
    return ack["conversation_id"], ack["epoch"], frames


async def resume_until_second_answer(
    cluster: Cluster, node: int, cid: str, epoch: int, seen: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    last = max(f["seq"] for f in seen if "seq" in f)
    async with visitor(cluster, node) as client:
        await client.hello(
            session_id="traveller",
            resume={"conversation_id": cid, "after_seq": last, "epoch": epoch},
        )
        rest: list[dict[str, Any]] = []
        while len([f for f in rest if f["type"] in TERMINAL]) < 2:
            rest.append(await client.recv(wait=30 * UNIT))
    return rest


async def stored_messages(cluster: Cluster, node: int, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=cluster.node_url(node), timeout=10) as http:
        got = await http.get(
            f"/realtime/v1/conversations/{cid}/messages", params={"session_id": "traveller"}
        )
    assert got.status_code == 200, got.text
    return list(got.json()["messages"])


def check_gapless(seen: list[dict[str, Any]], rest: list[dict[str, Any]]) -> None:
    before = [f["seq"] for f in seen if "seq" in f]
    after = [f["seq"] for f in rest if "seq" in f]
    assert after[0] == before[-1] + 1, (before[-3:], after[:3])
    assert before + after == sorted(set(before + after))


async def test_a_killed_nodes_run_ends_as_node_lost_and_the_next_turn_goes_on(
    nodes: Cluster, fake_llm: FakeOpenAI
) -> None:
    slow = " ".join(f"s{i}" for i in range(300))
    fake_llm.add(last_user("slow"), [Text(slow, delay=0.03)])
    fake_llm.add(last_user("after"), [Text("the second answer")])
    async with visitor(nodes, 1) as client:
        cid, epoch, seen = await start_two_turns(client)
        seen += [await client.recv() for _ in range(5)]
        await anyio.to_thread.run_sync(nodes.kill, 1)
        with pytest.raises(ConnectionClosed):  # what is left in flight, then the drop
            while True:
                seen.append(await client.recv())

    rest = await resume_until_second_answer(nodes, 2, cid, epoch, seen)
    check_gapless(seen, rest)
    failed, completed = [f for f in rest if f["type"] in TERMINAL]
    assert (failed["type"], failed["code"], failed["retryable"]) == (
        "run.failed",
        "node_lost",
        True,
    )
    streamed = text_of(seen) + text_of([f for f in rest if f.get("run_id") == failed["run_id"]])
    assert streamed and slow.startswith(streamed)
    assert failed["partial"]["content"] == streamed
    assert completed["type"] == "run.completed"
    assert completed["message"]["content"] == "the second answer"
    stored = await stored_messages(nodes, 2, cid)
    assert [(m["role"], m.get("status"), m["content"]) for m in stored] == [
        ("user", None, "slow"),
        ("user", None, "after"),
        ("assistant", "failed", streamed),
        ("assistant", "completed", "the second answer"),
    ]


async def test_sigterm_drains_the_run_and_hands_the_queue_to_another_node(
    nodes: Cluster, fake_llm: FakeOpenAI
) -> None:
    slow = " ".join(f"d{i}" for i in range(60))
    fake_llm.add(last_user("slow"), [Text(slow, delay=0.05)])
    fake_llm.add(last_user("after"), [Text("answered elsewhere")])
    node = nodes.node(1)
    async with visitor(nodes, 1) as client:
        cid, epoch, seen = await start_two_turns(client)
        assert node.pid is not None
        os.kill(node.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                seen.append(await client.recv())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

    rest = await resume_until_second_answer(nodes, 2, cid, epoch, seen)
    check_gapless(seen, rest)
    first, second = [f for f in rest if f["type"] in TERMINAL]
    assert first["type"] == "run.completed" and first["message"]["content"] == slow
    assert text_of(seen) + text_of([f for f in rest if f.get("run_id") == first["run_id"]]) == slow
    assert second["type"] == "run.completed"
    assert second["message"]["content"] == "answered elsewhere"
    # uvicorn re-raises the signal once it has shut down gracefully: the exit says SIGTERM.
    assert node.popen is not None
    assert await anyio.to_thread.run_sync(node.popen.wait, 30) == -signal.SIGTERM
    assert "Application shutdown complete" in node.log.read_text()
    stored = await stored_messages(nodes, 2, cid)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "slow"),
        ("user", "after"),
        ("assistant", slow),
        ("assistant", "answered elsewhere"),
    ]
