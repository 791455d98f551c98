"""What a real node writes to its log: never a credential, from a query string or anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from realtime.server import RedactQueries
from tests.cluster.support import running_cluster
from tests.databases import PostgresDatabases
from tests.support import ADMIN_KEY

pytestmark = pytest.mark.anyio

TOKEN = "eyJ2IjoxfQ.c2VjcmV0LXNpZ25hdHVyZQ"


async def test_access_log_lines_carry_no_query_strings(
    tmp_path: Path, postgres: PostgresDatabases, redis_prefix: str
) -> None:
    async with running_cluster(
        tmp_path / "cluster", postgres, redis_prefix, nodes=1, nginx=False
    ) as cluster:
        async with httpx.AsyncClient(base_url=cluster.node_url(1), timeout=10) as http:
            url = "/realtime/v1/conversations/00000000-0000-4000-8000-000000000000/messages"
            answer = await http.get(url, params={"signed_context": TOKEN, "session_id": "s-9f2"})
            await http.get("/health")
        log = cluster.node(1).log.read_text()
    assert answer.status_code in (403, 404)
    assert f'"GET {url}?[redacted] HTTP/1.1" {answer.status_code}' in log
    assert '"GET /health HTTP/1.1" 200' in log
    assert TOKEN not in log and "s-9f2" not in log


async def test_no_secret_reaches_the_log_at_debug_level(
    tmp_path: Path, postgres: PostgresDatabases, redis_prefix: str
) -> None:
    """Keys, a signing secret's envelope, a webhook secret and an agent's password used in
    every way (right, wrong, malformed, revoked) on a node logging at debug level: none of
    them, nor the admin key, appears in its log."""
    password = "pw-Zq81-correct-horse"
    hook_secret = "whsec-Lk22-very-secret-value"
    async with running_cluster(
        tmp_path / "cluster",
        postgres,
        redis_prefix,
        nodes=1,
        nginx=False,
        env={"REALTIME_LOG_LEVEL": "debug"},
    ) as cluster:
        base = cluster.node_url(1)
        admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=base, timeout=10, headers=admin_headers) as admin:
            tenant = "/admin/v1/tenants/default"
            full = (await admin.post(f"{tenant}/keys", json={"name": "backend"})).json()
            chat = (await admin.post(f"{tenant}/keys", json={"scope": "chat"})).json()
            revoked = (await admin.post(f"{tenant}/keys", json={})).json()
            await admin.delete(f"{tenant}/keys/{revoked['id']}")
            await admin.post(
                f"{tenant}/webhooks",
                json={"url": "https://h.example.com/", "events": ["lead.captured"],
                      "secret": hook_secret},
            )  # fmt: skip
            await admin.post(
                f"{tenant}/agents",
                json={"name": "Ann", "email": "ann@example.com", "password": password},
            )
            envelope = (
                await admin.post(f"{tenant}/envelopes", json={"user": "u-1", "channel": "demo"})
            ).json()["signed_context"]
        secrets = [full["key"], chat["key"], revoked["key"], hook_secret, password, ADMIN_KEY]
        secrets.append(envelope.rsplit(".", 1)[1])  # the signature: the body is not secret
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for key in (full["key"], chat["key"], revoked["key"], full["key"] + "x"):
                await http.get(f"{tenant}/keys", headers={"x-api-key": key})
                await http.get(
                    "/realtime/v1/conversations/00000000-0000-4000-8000-000000000000/messages",
                    params={"user": "u-1"},
                    headers={"Authorization": f"Bearer {key}"},
                )
            for attempt in (password, password + "-wrong"):
                await http.post(
                    "/realtime/v1/agents/login",
                    json={"tenant": "default", "email": "ann@example.com", "password": attempt},
                )
        ws = base.replace("http", "ws", 1) + "/ws"
        async with websockets.connect(ws) as visitor:
            for hello in (
                {"api_key": full["key"], "user": "u-1"},
                {"api_key": chat["key"], "user": "u-1"},
                {"api_key": revoked["key"], "user": "u-1"},
                {"signed_context": envelope},
                {"signed_context": envelope[:-2] + "xx"},
            ):
                await visitor.send(orjson.dumps({"type": "hello", "bot": "demo", **hello}))
                await visitor.recv()
        log = cluster.node(1).log.read_text()
    assert "DEBUG" in log or "debug" in log.lower()  # the level was what the test meant
    leaked = [secret for secret in secrets if secret in log]
    assert not leaked


def test_the_filter_keeps_paths_and_drops_queries() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/a?key=secret", "1.1", 200), None,
    )  # fmt: skip
    assert RedactQueries().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /a?[redacted] HTTP/1.1" 200'
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("/a?b",), None)
    assert RedactQueries().filter(other) and other.getMessage() == "plain /a?b"
