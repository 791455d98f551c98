"""The admin API, health endpoints, metrics and the demo docs, over real HTTP."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import RunningServer, ws_client

pytestmark = pytest.mark.anyio

RETURNS = """# Returns

## Returning items

You can send back unworn items in their original condition within 30 days of delivery.
Refunds go to the original payment method within five business days.

## Exchanges

Exchanges for another size are free of charge.
"""


async def test_admin_requires_the_admin_key(server: RunningServer) -> None:
    async with server.http() as http:
        missing = await http.post("/admin/v1/tenants", json={"name": "Acme"})
        wrong = await http.post(
            "/admin/v1/tenants", json={"name": "Acme"}, headers={"Authorization": "Bearer nope"}
        )
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {
        "error": {"code": "unauthorized", "message": "a valid admin key is required"}
    }


async def test_tenant_key_bot_and_sources(server: RunningServer) -> None:
    async with server.admin() as admin:
        tenant = await admin.post("/admin/v1/tenants", json={"name": "Acme Shop"})
        assert tenant.status_code == 201, tenant.text
        tid = tenant.json()["id"]
        assert tid == "acme-shop"
        again = await admin.post("/admin/v1/tenants", json={"name": "x", "id": "acme-shop"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "tenant_exists"

        bot = await admin.post(
            f"/admin/v1/tenants/{tid}/bots",
            json={
                "bot_id": "shop",
                "name": "Shop helper",
                "welcome_message": "Hello!",
                "suggested_questions": ["Can I return a jacket?"],
                "handoff_enabled": True,
            },
        )
        assert bot.status_code == 201, bot.text
        body = bot.json()
        assert body["bot_id"] == "shop" and body["uuid"] and body["privacy"] == "public"
        assert body["citations_enabled"] is True

        bad = await admin.post(
            f"/admin/v1/tenants/{tid}/bots",
            json={"bot_id": "x!", "temperature": 5, "privacy": "open", "bogus": 1},
        )
        assert bad.status_code == 400
        bad2 = await admin.post(
            f"/admin/v1/tenants/{tid}/bots", json={"bot_id": "okay", "temperature": 5}
        )
        assert bad2.status_code == 400 and "temperature" in bad2.json()["error"]["message"]
        dup = await admin.post(f"/admin/v1/tenants/{tid}/bots", json={"bot_id": "shop"})
        assert dup.status_code == 409

        patched = await admin.patch(
            f"/admin/v1/tenants/{tid}/bots/shop", json={"welcome_message": "Welcome back"}
        )
        assert patched.status_code == 200 and patched.json()["welcome_message"] == "Welcome back"
        assert patched.json()["name"] == "Shop helper"
        rename = await admin.patch(f"/admin/v1/tenants/{tid}/bots/shop", json={"bot_id": "y"})
        assert rename.status_code == 400

        source = await admin.post(
            f"/admin/v1/tenants/{tid}/bots/shop/sources",
            json={"content": RETURNS, "kind": "markdown", "url": "https://acme.test/returns"},
        )
        assert source.status_code == 201, source.text
        assert source.json()["title"] == "Returns" and source.json()["chunks"] >= 2
        listed = await admin.get(f"/admin/v1/tenants/{tid}/bots/shop/sources")
        assert [s["id"] for s in listed.json()["sources"]] == [source.json()["id"]]
        bad_source = await admin.post(
            f"/admin/v1/tenants/{tid}/bots/shop/sources", json={"content": "x", "kind": "pdf"}
        )
        assert bad_source.status_code == 400

        key = await admin.post(
            f"/admin/v1/tenants/{tid}/keys", json={"name": "web", "scope": "chat"}
        )
        assert key.status_code == 201 and key.json()["key"].startswith("rtk_")
        assert key.json()["scope"] == "chat"
        bad_scope = await admin.post(f"/admin/v1/tenants/{tid}/keys", json={"scope": "root"})
        assert bad_scope.status_code == 400
        nobody = await admin.post("/admin/v1/tenants/nobody/keys", json={})
        assert nobody.status_code == 404

    async with ws_client(server) as client:
        welcome = await client.hello(bot=f"{tid}/shop")
        assert welcome["bot"]["welcome_message"] == "Welcome back"
        assert welcome["bot"]["suggested_questions"] == ["Can I return a jacket?"]
        frames = await client.ask("How many days do I have to return items?")
    done = frames[-1]
    assert done["type"] == "run.completed"
    assert "30 days" in done["message"]["content"]
    assert done["message"]["citations"][0]["url"] == "https://acme.test/returns#returning-items"

    async with server.admin() as admin:
        gone = await admin.delete(
            f"/admin/v1/tenants/{tid}/bots/shop/sources/{source.json()['id']}"
        )
        assert gone.status_code == 204
        deleted = await admin.delete(f"/admin/v1/tenants/{tid}/bots/shop")
        assert deleted.status_code == 204
        missing = await admin.get(f"/admin/v1/tenants/{tid}/bots/shop")
        assert missing.status_code == 404
    async with ws_client(server) as client:
        await client.send(type="hello", id="h", bot=f"{tid}/shop", session_id="s")
        assert (await client.recv())["code"] == "bot_not_found"


async def test_admin_rejects_bad_json(server: RunningServer) -> None:
    async with server.admin() as admin:
        broken = await admin.post(
            "/admin/v1/tenants", content=b"{nope", headers={"content-type": "application/json"}
        )
        listish = await admin.post("/admin/v1/tenants", json=[1, 2])
    assert broken.status_code == listish.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"


async def test_health_ready_metrics(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello()
        await client.ask("What is an epoch?")
        async with server.http() as http:
            health = await http.get("/health")
            ready = await http.get("/ready")
            metrics = await http.get("/metrics")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "broker": "ok"}}
    text = metrics.text
    assert 'realtime_ws_connections{endpoint="visitor"} 1.0' in text
    assert 'realtime_runs_finished_total{outcome="completed"} 1.0' in text
    assert "realtime_time_to_first_token_seconds_count 1.0" in text


async def test_demo_docs_are_served_for_citations(server: RunningServer) -> None:
    async with server.http() as http:
        doc = await http.get("/docs/protocol.md")
        escape = await http.get("/docs/..%2Fpyproject.toml")
        missing = await http.get("/docs/nope.md")
    assert doc.status_code == 200 and doc.text.startswith("# The visitor WebSocket protocol")
    assert doc.headers["content-type"].startswith("text/markdown")
    assert escape.status_code == missing.status_code == 404


async def test_identical_creations_at_once_conflict_cleanly(server: RunningServer) -> None:
    async with server.admin() as admin:
        tenant_requests = [
            admin.post("/admin/v1/tenants", json={"name": "Twin", "id": "twin"}) for _ in range(3)
        ]
        tenants = await asyncio.gather(*tenant_requests)
        bot_requests = [
            admin.post("/admin/v1/tenants/twin/bots", json={"bot_id": "same"}) for _ in range(3)
        ]
        bots = await asyncio.gather(*bot_requests)
        agent_requests = [
            admin.post(
                "/admin/v1/tenants/twin/agents",
                json={"name": "Tia", "email": "tia@example.com", "password": "password1"},
            )
            for _ in range(3)
        ]
        agents = await asyncio.gather(*agent_requests)
    for responses, code in (
        (tenants, "tenant_exists"),
        (bots, "bot_exists"),
        (agents, "agent_exists"),
    ):
        assert sorted(r.status_code for r in responses) == [201, 409, 409]
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {code}
