"""Three real ``realtime serve`` processes on one PostgreSQL and one Redis, behind Debian's
nginx, started by ``scripts/cluster.py`` (DECISIONS 24): what a deployment looks like.

Every test gets a cluster of its own on a new PostgreSQL database and a Redis prefix of its
own; processes, nginx and the database are gone when it ends, failed or not. nginx missing
is a failure, not a skip (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from scripts.cluster import Cluster, compose_nginx_conf, free_port
from tests.cluster.support import running_cluster
from tests.databases import PostgresDatabases
from tests.support import ADMIN_KEY, REPO, TERMINAL, UNIT, Client, text_of

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse"
NODE_ENV = {
    "REALTIME_PROVIDER": "offline",
    "REALTIME_DRAIN_TIMEOUT": "2",
    "REALTIME_LLM_MAX_RETRIES": "0",
}


@pytest.fixture
async def cluster(
    tmp_path: Path, postgres: PostgresDatabases, redis_prefix: str
) -> AsyncIterator[Cluster]:
    async with running_cluster(
        tmp_path / "cluster", postgres, redis_prefix, nodes=3, env=NODE_ENV
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    async with connect(url, open_timeout=10 * UNIT, max_queue=None) as ws:
        yield Client(ws)


async def visitor_hello(visitor: Client, session_id: str) -> dict[str, Any]:
    await visitor.send(type="hello", id="hello", bot="demo", session_id=session_id)
    welcome = await visitor.recv(10)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def until(c: Client, kind: str, **match: Any) -> dict[str, Any]:
    """The next frame of ``kind`` matching ``match``, looking first at the frames that earlier
    calls skipped (events may come before or after a command's ``ack``). An ``error``
    answering the awaited ``id`` fails."""
    seen: list[dict[str, Any]] = c.__dict__.setdefault("seen", [])

    def fits(frame: dict[str, Any]) -> bool:
        if frame["type"] == "error" and "id" in match and frame.get("id") == match["id"]:
            raise AssertionError(frame)
        return frame["type"] == kind and all(frame.get(k) == v for k, v in match.items())

    for i, frame in enumerate(seen):
        if fits(frame):
            return seen.pop(i)
    while True:
        frame = await c.recv(10)
        if fits(frame):
            return frame
        seen.append(frame)


def ws(http_url: str, path: str = "/ws") -> str:
    return http_url.replace("http://", "ws://", 1) + path


async def test_a_visitor_through_nginx_gets_a_complete_answer(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10 * UNIT) as http:
        ready = await http.get("/ready")
        nodes = {(await http.get("/health")).json()["node"] for _ in range(6)}
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert (checks["store"], checks["broker"]) == ("ok", "ok"), checks
    assert len(nodes) > 1, f"nginx sent every request to {nodes}"

    async with client(cluster.ws_url) as visitor:
        welcome = await visitor_hello(visitor, "via-nginx")
        assert welcome["server"]["node"] in {"node-1", "node-2", "node-3"}
        frames = await visitor.ask("Which close codes mean reconnect?", id="m1")
    assert frames[0]["type"] == "ack"
    assert frames[-1]["type"] == "run.completed", frames[-1]
    tokens = [f for f in frames if f["type"] == "run.token"]
    assert tokens, "the answer was not streamed"
    assert text_of(frames) == frames[-1]["message"]["content"]
    assert "4008" in frames[-1]["message"]["content"] or frames[-1]["message"]["citations"]


async def test_a_visitor_on_node_1_and_an_agent_on_node_3_converse_live(
    cluster: Cluster,
) -> None:
    admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        base_url=cluster.node_url(2), timeout=10 * UNIT, headers=admin_headers
    ) as admin:
        patched = await admin.patch(
            "/admin/v1/tenants/default/bots/demo",
            json={"handoff_enabled": True, "handoff_trigger": "both"},
        )
        assert patched.status_code == 200, patched.text
        created = await admin.post(
            "/admin/v1/tenants/default/agents",
            json={"name": "Alice Doe", "email": "alice@example.com", "password": PASSWORD},
        )
        assert created.status_code == 201, created.text

    async with (
        client(ws(cluster.node_url(3), "/ws/console")) as agent,
        client(ws(cluster.node_url(1))) as visitor,
    ):
        await agent.send(
            type="hello", id="hello", tenant="default", email="alice@example.com", password=PASSWORD
        )
        welcome = await until(agent, "welcome")
        assert welcome["server"]["node"] == "node-3"
        await agent.send(type="queue.subscribe", id="q")
        assert (await until(agent, "ack", id="q"))["queue"] == []

        assert (await visitor_hello(visitor, "visitor-on-1"))["server"]["node"] == "node-1"
        answered = await visitor.ask("What is an epoch?", id="first")
        assert answered[-1]["type"] == "run.completed", answered[-1]
        cid = answered[0]["conversation_id"]

        await visitor.send(type="handoff.request", id="h", conversation_id=cid)
        assert (await until(visitor, "ack", id="h"))["queued"] is True
        requested = await until(visitor, "handoff.requested")
        assert requested["agents_online"] is True, "node 1 does not see the agent on node 3"

        added = await until(agent, "queue.added")
        assert added["item"]["conversation"]["id"] == cid
        await agent.send(type="conversation.claim", id="c", conversation_id=cid)
        claimed = await until(agent, "ack", id="c")
        assert [m["role"] for m in claimed["history"]["messages"]] == ["user", "assistant"]
        accepted = await until(visitor, "handoff.accepted")
        assert accepted["agent"]["id"] == welcome["agent"]["id"]

        await visitor.send(
            type="message.send", id="v1", content="Is someone there?", conversation_id=cid
        )
        await until(visitor, "ack", id="v1")
        heard = await until(agent, "message.created")
        assert (heard["message"]["role"], heard["message"]["content"]) == (
            "user",
            "Is someone there?",
        )

        await agent.send(
            type="conversation.send", id="a1", conversation_id=cid, content="Yes, Alice here."
        )
        await until(agent, "ack", id="a1")
        said = await until(visitor, "message.created")
        while said["message"]["role"] != "agent":
            said = await until(visitor, "message.created")
        assert said["message"]["content"] == "Yes, Alice here."
        assert said["message"]["agent"]["id"] == welcome["agent"]["id"]


async def test_a_killed_node_is_skipped(cluster: Cluster) -> None:
    await anyio.to_thread.run_sync(cluster.kill, 2)
    assert not cluster.node(2).alive()

    seen = set()
    for i in range(6):  # least_conn would give node-2 at least one of these if it could
        async with client(cluster.ws_url) as visitor:
            welcome = await visitor_hello(visitor, f"after-kill-{i}")
            seen.add(welcome["server"]["node"])
            if i < 2:
                frames = await visitor.ask("How do I resume after a disconnect?", id="m")
                assert frames[-1]["type"] in TERMINAL
                assert frames[-1]["type"] == "run.completed", frames[-1]
    assert seen <= {"node-1", "node-3"} and seen, seen
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10 * UNIT) as http:
        assert (await http.get("/ready")).status_code == 200

    await anyio.to_thread.run_sync(cluster.restart, 2)
    async with httpx.AsyncClient(timeout=10 * UNIT) as http:
        health = (await http.get(f"{cluster.node_url(2)}/health")).json()
    assert health["node"] == "node-2"


def test_deploy_nginx_conf_is_the_scripts_template() -> None:
    """docker-compose.yml mounts deploy/nginx.conf: it must be what the script renders."""
    assert (REPO / "deploy" / "nginx.conf").read_text() == compose_nginx_conf(3), (
        "run: python scripts/cluster.py nginx-config --compose > deploy/nginx.conf"
    )


async def test_the_command_line(
    tmp_path: Path, postgres: PostgresDatabases, redis_prefix: str
) -> None:
    """up, kill, start, status, down: a one-node cluster through the CLI."""
    script = [sys.executable, str(REPO / "scripts" / "cluster.py")]
    directory = str(tmp_path / "cli")

    async def run(*args: str) -> dict[str, Any]:
        done = await anyio.run_process([*script, *args, "--dir", directory], check=False)
        assert done.returncode == 0, done.stderr.decode()
        return orjson.loads(done.stdout)  # type: ignore[no-any-return]

    def leftovers() -> None:
        """What a failed step left running (the CLI's processes outlive it)."""
        if (Path(directory) / "cluster.json").exists():
            Cluster.load(directory).stop()

    with postgres.database() as database_url:
        port = free_port()
        try:
            up = await run(
                "up",
                "--nodes",
                "1",
                "--port",
                str(port),
                "--database-url",
                database_url,
                "--redis-prefix",
                redis_prefix,
                "--admin-key",
                ADMIN_KEY,
                *(f"-e{k}={v}" for k, v in NODE_ENV.items()),
            )
            assert up["url"] == f"http://127.0.0.1:{port}"
            assert up["admin_key"] == "***"
            assert [n["id"] for n in up["nodes"]] == ["node-1"]
            async with httpx.AsyncClient(timeout=10 * UNIT) as http:
                assert (await http.get(f"{up['url']}/ready")).status_code == 200
            killed = await run("kill", "node-1")
            assert killed["nodes"][0]["alive"] is False
            started = await run("start", "1")
            assert started["nodes"][0]["alive"] is True
            assert started["nodes"][0]["port"] == up["nodes"][0]["port"]
            assert (await run("status"))["nodes"][0]["alive"] is True
            down = await run("down")
            assert down["nginx"]["pid"] is None
            assert [n["alive"] for n in down["nodes"]] == [False]
        finally:
            await anyio.to_thread.run_sync(leftovers)
