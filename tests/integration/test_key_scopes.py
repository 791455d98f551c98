"""API key scopes (DECISIONS 3): a `chat` key opens its bot to anonymous sessions and nothing
more; a `full` key speaks for users and manages its own tenant through the admin API."""

from __future__ import annotations

import pytest

from tests.support import RunningServer, ws_client

pytestmark = pytest.mark.anyio

TENANT = "/admin/v1/tenants/default"


async def keys(server: RunningServer) -> dict[str, str]:
    async with server.admin() as admin:
        made = {
            scope: (await admin.post(f"{TENANT}/keys", json={"scope": scope})).json()["key"]
            for scope in ("chat", "full")
        }
        bound = await admin.post(f"{TENANT}/keys", json={"scope": "full", "bot_id": "demo"})
        made["bound"] = bound.json()["key"]
        await admin.post("/admin/v1/tenants", json={"name": "Other", "id": "other"})
        await admin.patch(f"{TENANT}/bots/demo", json={"privacy": "private"})
    return made


async def test_a_chat_key_opens_a_private_bot_to_sessions_and_never_speaks_for_a_user(
    server: RunningServer,
) -> None:
    made = await keys(server)
    async with ws_client(server) as visitor:
        await visitor.send(type="hello", id="1", bot="demo", api_key=made["chat"], user="alice")
        as_user = await visitor.recv()
        await visitor.send(type="hello", id="2", bot="demo", api_key=made["chat"])
        no_session = await visitor.recv()
        await visitor.send(type="hello", id="3", bot="demo", session_id="s-1")
        public_way = await visitor.recv()  # the bot is private now
        await visitor.send(type="hello", id="4", bot="demo", api_key=made["chat"], session_id="s-1")
        welcome = await visitor.recv()
        frames = await visitor.ask("What is an epoch?")
    cid = frames[0]["conversation_id"]
    async with server.http() as http:
        url = f"/realtime/v1/conversations/{cid}/messages"
        # The conversation belongs to the session; a full key speaks for users, not sessions.
        as_alice = await http.get(
            url, params={"user": "alice"}, headers={"x-api-key": made["full"]}
        )
    assert (as_user["type"], as_user["code"], as_user["id"]) == ("error", "key_scope", "1")
    assert (no_session["code"], public_way["code"]) == ("missing_field", "forbidden")
    assert welcome["type"] == "welcome"
    assert frames[-1]["type"] == "run.completed"
    assert as_alice.status_code == 404


async def test_the_admin_api_takes_a_tenants_full_key_for_that_tenant_only(
    server: RunningServer,
) -> None:
    made = await keys(server)
    async with server.http() as http:

        def auth(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        own = await http.get(f"{TENANT}/bots", headers=auth(made["full"]))
        listed = await http.get("/admin/v1/tenants", headers={"x-api-key": made["full"]})
        created = await http.post(
            f"{TENANT}/bots", json={"bot_id": "second"}, headers=auth(made["full"])
        )
        other = await http.get("/admin/v1/tenants/other/bots", headers=auth(made["full"]))
        nobody = await http.get("/admin/v1/tenants/nobody/bots", headers=auth(made["full"]))
        new_tenant = await http.post(
            "/admin/v1/tenants", json={"name": "Mine"}, headers=auth(made["full"])
        )
        quota = await http.patch(
            TENANT, json={"monthly_messages": 10**6}, headers=auth(made["full"])
        )
        chat = await http.get(f"{TENANT}/bots", headers=auth(made["chat"]))
        bound = await http.get(f"{TENANT}/bots", headers=auth(made["bound"]))
        wrong = await http.get(f"{TENANT}/bots", headers=auth(made["full"] + "x"))
    assert own.status_code == 200 and "demo" in [b["bot_id"] for b in own.json()["bots"]]
    assert [t["id"] for t in listed.json()["tenants"]] == ["default"]
    assert created.status_code == 201
    # Another tenant's paths are as absent as a tenant that does not exist.
    assert (other.status_code, other.json()) == (nobody.status_code, nobody.json())
    assert other.status_code == 404 and other.json()["error"]["code"] == "tenant_not_found"
    assert (new_tenant.status_code, quota.status_code) == (403, 403)
    assert chat.status_code == 403 and chat.json()["error"]["code"] == "key_scope"
    assert bound.status_code == 403 and bound.json()["error"]["code"] == "key_scope"
    assert wrong.status_code == 401
