"""Signed context envelopes end to end: minted by the admin API, presented in ``/ws`` hello and
to the history endpoint; the envelope's user owns their conversations from any device."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest

from realtime.envelopes import mint
from realtime.testing import FakeOpenAI, Text
from tests.support import Client, RunningServer, only, ws_client

pytestmark = pytest.mark.anyio


async def mint_via_admin(server: RunningServer, tenant: str = "default", **body: Any) -> str:
    body.setdefault("channel", "demo")
    async with server.admin() as admin:
        got = await admin.post(f"/admin/v1/tenants/{tenant}/envelopes", json=body)
    assert got.status_code == 201, got.text
    answer = got.json()
    assert set(answer) == {"signed_context", "expires_at"}
    assert answer["expires_at"].endswith("Z")
    token: str = answer["signed_context"]
    return token


async def hello(client: Client, token: str, **extra: Any) -> dict[str, Any]:
    await client.send(type="hello", id="h", signed_context=token, **extra)
    frame = await client.recv()
    assert frame.get("id") == "h", frame
    return frame


async def secret_of(server: RunningServer, tenant: str = "default") -> str:
    secret = await server.engine.store.signing_secret(tenant)
    assert isinstance(secret, str) and len(secret) >= 32
    return secret


async def test_an_envelope_user_owns_a_conversation_on_every_device(server: RunningServer) -> None:
    first = await mint_via_admin(
        server, user="u-1", route="orders.show", context={"order": 7}, ttl=600
    )
    async with ws_client(server) as phone:
        welcome = await hello(phone, first)
        assert welcome["type"] == "welcome", welcome
        assert welcome["session"] == {"kind": "user", "id": "u-1"}
        assert welcome["bot"]["id"] == "demo"
        frames = await phone.ask("How do I resume after a disconnect?", id="m1")
    ack = frames[0]
    assert ack["type"] == "ack" and frames[-1]["type"] == "run.completed", frames
    cid = ack["conversation_id"]
    stored = await server.engine.store.list_messages(cid)
    user_message = next(m for m in stored if m.role == "user")
    assert user_message.meta["route_name"] == "orders.show"
    assert user_message.meta["context_hash"] == hashlib.sha256(b'{"order":7}').hexdigest()

    # Another device, with a freshly minted envelope for the same user (and another page).
    second = await mint_via_admin(server, user="u-1", route="orders.index", context={"page": 2})
    async with ws_client(server) as laptop:
        assert (await hello(laptop, second, bot="demo"))["type"] == "welcome"
        await laptop.send(type="subscribe", id="s", conversation_id=cid, after_seq=0)
        assert (await laptop.recv())["type"] == "ack"
        replayed = await laptop.recv_until("run.completed")
        assert only(replayed, "message.created")[0]["message"]["id"] == user_message.id
        more = await laptop.ask("Which error codes can the WebSocket send?", conversation_id=cid)
        acks = only(more, "ack")
        assert acks and acks[0]["conversation_id"] == cid
        assert more[-1]["type"] == "run.completed"
    async with server.http() as http:
        history = await http.get(
            f"/realtime/v1/conversations/{cid}/messages", params={"signed_context": first}
        )
    assert history.status_code == 200, history.text
    contents = [m["content"] for m in history.json()["messages"] if m["role"] == "user"]
    assert contents == [
        "How do I resume after a disconnect?",
        "Which error codes can the WebSocket send?",
    ]
    latest = [m for m in await server.engine.store.list_messages(cid) if m.role == "user"][-1]
    assert latest.meta["route_name"] == "orders.index"
    assert latest.meta["context_hash"] == hashlib.sha256(b'{"page":2}').hexdigest()

    # The same user through an API key of the tenant is the same identity (DECISIONS 2).
    async with server.admin() as admin:
        key = (await admin.post("/admin/v1/tenants/default/keys", json={})).json()["key"]
    async with ws_client(server) as api:
        await api.send(type="hello", id="h", bot="demo", api_key=key, user="u-1")
        assert (await api.recv())["type"] == "welcome"
        await api.send(type="subscribe", id="s", conversation_id=cid)
        assert (await api.recv())["type"] == "ack"


async def test_another_user_cannot_read_the_conversation(server: RunningServer) -> None:
    mine = await mint_via_admin(server, user="alice")
    async with ws_client(server) as alice:
        await hello(alice, mine)
        frames = await alice.ask("How do I resume after a disconnect?")
    cid = frames[0]["conversation_id"]

    theirs = await mint_via_admin(server, user="bob")
    async with ws_client(server) as bob:
        await hello(bob, theirs)
        await bob.send(type="subscribe", id="s", conversation_id=cid)
        refused = await bob.recv()
        assert (refused["type"], refused["code"]) == ("error", "conversation_not_found")
        await bob.send(type="message.send", id="m", content="hi", conversation_id=cid)
        assert (await bob.recv())["code"] == "conversation_not_found"
    async with ws_client(server) as anonymous:  # a session named like the user is not them
        await anonymous.hello(session_id="alice")
        await anonymous.send(type="subscribe", id="s", conversation_id=cid)
        assert (await anonymous.recv())["code"] == "conversation_not_found"
    async with server.http() as http:
        got = await http.get(
            f"/realtime/v1/conversations/{cid}/messages", params={"signed_context": theirs}
        )
        tampered = await http.get(
            f"/realtime/v1/conversations/{cid}/messages", params={"signed_context": mine[:-2]}
        )
    assert got.status_code == 404
    assert got.json()["error"]["code"] == "conversation_not_found"
    assert tampered.status_code == 403
    assert tampered.json()["error"]["code"] == "envelope_tampered"
    assert len(await server.engine.store.list_messages(cid)) == 2  # nothing was added


async def test_refused_envelopes_get_their_typed_errors(server: RunningServer) -> None:
    secret = await secret_of(server)
    good = await mint_via_admin(server, user="u-1")
    body, signature = good.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    base = {"user": "u-1", "route": "r", "channel": "demo", "context": {}}
    cases = [
        (mint(secret, **base, now=time.time() - 2000), {}, "envelope_expired"),
        (f"{body}.{flipped}", {}, "envelope_tampered"),
        (f"{body[:-1]}.{signature}", {}, "envelope_tampered"),
        (mint("not-the-secret", **base), {}, "envelope_tampered"),
        (mint(secret, **base, tenant="ghost"), {}, "envelope_tampered"),  # no such tenant
        (good, {"bot": "default/other"}, "envelope_channel"),
        (good, {"bot": "other"}, "envelope_channel"),
        (good, {"bot": "00000000-0000-4000-8000-000000000000"}, "envelope_channel"),
        ("abc", {}, "envelope_malformed"),
        (good + ".x", {}, "envelope_malformed"),
        (
            _signed(secret, '{"v":2,"u":"u","r":"r","c":"demo","e":9999999999,"p":{}}'),
            {},
            "envelope_version",
        ),
        (
            _signed(secret, '{"v":1,"u":7,"r":"r","c":"demo","e":9999999999,"p":{}}'),
            {},
            "envelope_invalid",
        ),
        (mint(secret, **{**base, "user": None}), {}, "envelope_anonymous"),
        (mint(secret, **{**base, "channel": "nope"}), {}, "bot_not_found"),
        (good, {"api_key": "rtk_whatever"}, "invalid_field"),
    ]
    async with ws_client(server) as client:
        for token, extra, code in cases:
            refused = await hello(client, token, **extra)
            assert (refused["type"], refused["code"]) == ("error", code), (token, extra)
        # Expired before wrong channel, as the format orders them.
        expired = mint(secret, **base, now=time.time() - 2000)
        assert (await hello(client, expired, bot="other"))["code"] == "envelope_expired"
        # The connection stays usable: a good envelope is welcomed on it.
        assert (await hello(client, good))["type"] == "welcome"


def _signed(secret: str, body: str) -> str:
    """A token signed by hand (a body mint() would refuse to write)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    encoded = b64(body.encode())
    return f"{encoded}.{b64(hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest())}"


async def test_a_guest_envelope_needs_a_session_id(server: RunningServer) -> None:
    guest = await mint_via_admin(server, user=None, route="home")
    async with ws_client(server) as client:
        assert (await hello(client, guest))["code"] == "envelope_anonymous"
        welcome = await hello(client, guest, session_id="g-1")
        assert welcome["session"] == {"kind": "session", "id": "g-1"}


async def test_envelopes_of_another_tenant_and_a_private_bot(server: RunningServer) -> None:
    async with server.admin() as admin:
        assert (
            await admin.post("/admin/v1/tenants", json={"name": "Acme", "id": "acme"})
        ).is_success
        bot = await admin.post(
            "/admin/v1/tenants/acme/bots",
            json={"bot_id": "shop", "privacy": "private", "welcome_message": "Hi from Acme"},
        )
        assert bot.status_code == 201
    shop_uuid = bot.json()["uuid"]
    acme = await mint_via_admin(server, "acme", user="u-1", channel="shop", g="Hello, Ada")
    default = await mint_via_admin(server, user="u-1")
    async with ws_client(server) as client:
        await client.send(type="hello", id="h", bot="acme/shop", session_id="s")
        assert (await client.recv())["code"] == "forbidden"  # private: no anonymous sessions
        assert (await hello(client, acme, bot="demo"))["code"] == "envelope_channel"
        assert (await hello(client, default, bot="acme/shop"))["code"] == "envelope_channel"
        assert (await hello(client, default, bot=shop_uuid))["code"] == "envelope_channel"
        secret = await secret_of(server)  # the default tenant's secret does not sign for acme
        forged = mint(secret, user="u-1", route="", channel="shop", context={}, tenant="acme")
        assert (await hello(client, forged))["code"] == "envelope_tampered"
        welcome = await hello(client, acme, bot=shop_uuid)
        assert welcome["type"] == "welcome", welcome
        assert welcome["bot"]["id"] == "shop"
        assert welcome["bot"]["welcome_message"] == "Hello, Ada"  # the envelope's greeting
        frames = await client.ask("Hello?")
        assert frames[-1]["type"] in ("run.completed", "run.failed")
    acme_cid = frames[0]["conversation_id"]
    async with ws_client(server) as client:  # the user u-1 of default is someone else
        await hello(client, default)
        await client.send(type="subscribe", id="s", conversation_id=acme_cid)
        assert (await client.recv())["code"] == "conversation_not_found"
    conversation = await server.engine.store.get_conversation(acme_cid)
    assert (conversation.tenant_id, conversation.owner) == ("acme", "user:u-1")


async def test_the_admin_endpoint_refuses_bad_requests(server: RunningServer) -> None:
    async with server.admin() as admin:
        await admin.post("/admin/v1/tenants", json={"name": "Acme", "id": "acme"})
        url = "/admin/v1/tenants/default/envelopes"
        bad = [
            {},
            {"channel": 5},
            {"channel": "demo", "ttl": 0},
            {"channel": "demo", "ttl": 86401},
            {"channel": "demo", "ttl": "900"},
            {"channel": "demo", "user": ""},
            {"channel": "demo", "user": "u" * 300},
            {"channel": "demo", "context": [1, 2]},
            {"channel": "demo", "route": ["r"]},
            {"channel": "demo", "t": "search_knowledge"},
            {"channel": "demo", "xt": -1},
            {"channel": "demo", "unknown": 1},
            {"channel": "demo", "context": {"big": "x" * 40000}},
        ]
        for body in bad:
            got = await admin.post(url, json=body)
            assert got.status_code == 400, (body, got.text)
            error = got.json()["error"]
            assert set(error) == {"code", "message"} and error["code"] in (
                "invalid_field",
                "missing_field",
            )
        not_json = await admin.post(url, content=b"{", headers={"content-type": "application/json"})
        assert not_json.status_code == 400
        for tenant, channel in (("nobody", "demo"), ("default", "nope"), ("acme", "demo")):
            got = await admin.post(
                f"/admin/v1/tenants/{tenant}/envelopes", json={"channel": channel}
            )
            assert got.status_code == 404, (tenant, channel, got.text)
            assert got.json()["error"]["code"] in ("tenant_not_found", "bot_not_found")
    async with server.http() as http:
        anonymous = await http.post(url, json={"channel": "demo"})
    assert anonymous.status_code == 401


async def test_the_signing_secret_never_leaves_the_server(server: RunningServer) -> None:
    async with server.admin() as admin:
        created = await admin.post("/admin/v1/tenants", json={"name": "Acme", "id": "acme"})
        await admin.post("/admin/v1/tenants/acme/bots", json={"bot_id": "shop"})
        answers = [
            created,
            await admin.get("/admin/v1/tenants"),
            await admin.get("/admin/v1/tenants/acme"),
            await admin.get("/admin/v1/tenants/default"),
            await admin.post("/admin/v1/tenants/acme/keys", json={}),
            await admin.get("/admin/v1/tenants/acme/keys"),
            await admin.get("/admin/v1/tenants/acme/bots"),
            await admin.post("/admin/v1/tenants/acme/envelopes", json={"channel": "shop"}),
            await admin.post("/admin/v1/tenants/acme/envelopes", json={"channel": "x"}),
            await admin.post("/admin/v1/tenants/acme/envelopes", json={"ttl": -1}),
            await admin.get("/admin/v1/openapi.json"),
        ]
    secrets = [await secret_of(server, "acme"), await secret_of(server, "default")]
    for answer in answers:
        assert answer.status_code < 500
        for secret in secrets:
            assert secret not in answer.text, answer.request.url
    token = answers[7].json()["signed_context"]
    body = base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()
    assert all(secret not in body for secret in secrets)
    tenant = await server.engine.store.get_tenant("acme")
    assert secrets[0] not in repr(tenant)


async def test_the_page_context_and_prompt_reach_the_model_and_t_narrows_the_tools(
    llm_server: RunningServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add("capital", [Text("Paris.")], [Text("Paris.")])
    token = await mint_via_admin(
        llm_server,
        user="u-1",
        route="atlas.show",
        context={"page": "atlas/france"},
        pr="Answer in one word.",
        t=["search_knowledge"],
    )
    async with ws_client(llm_server) as client:
        await hello(client, token)
        frames = await client.ask("What is the capital of France?")
    assert frames[-1]["type"] == "run.completed", frames
    request = fake_llm.requests[-1].body
    system = request["messages"][0]
    assert system["role"] == "system"
    assert "Answer in one word." in system["content"]
    assert '{"page":"atlas/france"}' in system["content"]
    assert [tool["function"]["name"] for tool in request["tools"]] == ["search_knowledge"]

    async with ws_client(llm_server) as client:  # without an envelope: the bot's own tools
        await client.hello()
        frames = await client.ask("What is the capital of France?")
    plain = fake_llm.requests[-1].body
    assert "Answer in one word." not in plain["messages"][0]["content"]
    assert len(plain["tools"]) > 1
