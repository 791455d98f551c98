"""The admin API's tenants, API keys, webhooks and OpenAPI document, over real HTTP; and random
bodies against every admin write, which must never answer 5xx nor store anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.admin import WEBHOOK_EVENTS
from realtime.transport.admin import routes
from tests.strategies import json_values
from tests.support import (
    ADMIN_KEY,
    Client,
    RunningServer,
    make_settings,
    run_server,
    ws_client,
)

pytestmark = pytest.mark.anyio

SECRET = "whsec-0123456789abcdef"


async def refused_hello(client: Client, api_key: str) -> dict[str, Any]:
    await client.send(type="hello", id="hello", bot="demo", api_key=api_key, user="u-1")
    return await client.recv()


async def test_keys_are_listed_without_secrets_used_and_revoked(server: RunningServer) -> None:
    async with server.admin() as admin:
        made = await admin.post("/admin/v1/tenants/default/keys", json={"name": "site"})
        assert made.status_code == 201, made.text
        key = made.json()
        chat = await admin.post(
            "/admin/v1/tenants/default/keys", json={"name": "widget", "scope": "chat"}
        )
        assert chat.json()["scope"] == "chat"
        listed = (await admin.get("/admin/v1/tenants/default/keys")).json()["keys"]
    assert [k["name"] for k in listed] == ["site", "widget"]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert key["key"].startswith("rtk_") and key["prefix"] == key["key"][4:12]
    assert listed[0]["last_used_at"] is None and listed[0]["revoked_at"] is None

    async with ws_client(server) as client:
        welcome = await client.hello(session_id=None, api_key=key["key"], user="u-1")
        assert welcome["type"] == "welcome", welcome
    async with server.admin() as admin:
        used = (await admin.get("/admin/v1/tenants/default/keys")).json()["keys"][0]
        revoked = await admin.delete(f"/admin/v1/tenants/default/keys/{key['id']}")
        again = await admin.delete(f"/admin/v1/tenants/default/keys/{key['id']}")
        unknown = await admin.delete("/admin/v1/tenants/default/keys/nope")
    assert used["last_used_at"] is not None
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # revoked once
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "key_not_found"
    async with ws_client(server) as client:
        refused = await refused_hello(client, key["key"])
    assert (refused["type"], refused["code"]) == ("error", "unauthorized")


async def test_webhooks_are_validated_and_their_secret_never_shown(
    server: RunningServer,
) -> None:
    base = "/admin/v1/tenants/default/webhooks"
    good = {"url": "https://hooks.example.com/rt", "events": ["message.sent"], "secret": SECRET}
    async with server.admin() as admin:
        made = await admin.post(base, json=good)
        bad = [
            await admin.post(base, json={**good, **change})
            for change in (
                {"url": "ftp://example.com/x"},
                {"url": "https://"},
                {"url": "https://a b.example.com"},
                {"events": []},
                {"events": ["message.sent", "everything"]},
                {"events": "message.sent"},
                {"secret": "short"},
                {"secret": None},
            )
        ]
        listed = await admin.get(base)
        more = [await admin.post(base, json=good) for _ in range(10)]
        gone = await admin.delete(f"{base}/{made.json()['id']}")
        gone_again = await admin.delete(f"{base}/{made.json()['id']}")
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["url"] == good["url"] and hook["events"] == ["message.sent"]
    assert [r.status_code for r in bad] == [400] * len(bad)
    assert {r.json()["error"]["code"] for r in bad} == {"invalid_field"}
    assert listed.json()["webhooks"] == [hook]
    assert [r.status_code for r in more] == [201] * 9 + [409]
    assert more[-1].json()["error"]["code"] == "webhook_limit"
    assert (gone.status_code, gone_again.status_code) == (204, 404)
    everything = made.text + listed.text + "".join(r.text for r in more + bad)
    assert SECRET not in everything
    assert set(WEBHOOK_EVENTS) >= {"message.received", "handoff.requested"}


async def test_tenants_are_listed_and_one_tenant_never_reaches_another(
    server: RunningServer,
) -> None:
    async with server.admin() as admin:
        acme = (await admin.post("/admin/v1/tenants", json={"name": "Acme"})).json()
        key = (await admin.post("/admin/v1/tenants/acme/keys", json={})).json()
        hook = await admin.post(
            "/admin/v1/tenants/acme/webhooks",
            json={
                "url": "https://acme.example.com/hook",
                "events": ["lead.captured"],
                "secret": SECRET,
            },
        )
        tenants = (await admin.get("/admin/v1/tenants")).json()["tenants"]
        one = await admin.get("/admin/v1/tenants/acme")
        missing = await admin.get("/admin/v1/tenants/nobody")
        # Through tenant default's paths, acme's key and webhook do not exist.
        cross_key = await admin.delete(f"/admin/v1/tenants/default/keys/{key['id']}")
        cross_hook = await admin.delete(f"/admin/v1/tenants/default/webhooks/{hook.json()['id']}")
        acme_keys = (await admin.get("/admin/v1/tenants/acme/keys")).json()["keys"]
    assert [t["id"] for t in tenants] == ["default", "acme"]
    assert set(acme) == {"id", "name", "monthly_messages", "created_at"}
    assert one.json() == {**acme, "usage": {"month": one.json()["usage"]["month"], "messages": 0}}
    assert missing.status_code == 404
    assert (cross_key.status_code, cross_hook.status_code) == (404, 404)
    assert acme_keys[0]["revoked_at"] is None  # untouched
    # acme's key does not open the demo bot of tenant default.
    async with ws_client(server) as client:
        refused = await refused_hello(client, key["key"])
    assert (refused["type"], refused["code"]) == ("error", "bot_not_found")


async def test_the_openapi_document_describes_every_admin_route(server: RunningServer) -> None:
    async with server.http() as http:
        got = await http.get("/admin/v1/openapi.json")
    assert got.status_code == 200
    document = got.json()
    assert document["openapi"].startswith("3.1")
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    served = {
        (route.path, method.lower())
        for route in routes
        for method in (route.methods or ())
        if method != "HEAD" and route.path != "/admin/v1/openapi.json"
    }
    assert described == served
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            refs = str(op).split("#/components/schemas/")[1:]
            for ref in refs:
                assert ref.split("'")[0] in document["components"]["schemas"]


# -- random bodies -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server for the whole module, driven from a sync test (Hypothesis calls it many
    times): the server's event loop runs in a thread of its own."""
    settings = make_settings(Path(tmp_path_factory.mktemp("admin-fuzz")))
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(run_server(settings)) as running:
            with httpx.Client(
                base_url=running.url,
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=10,
            ) as client:
                yield client


WRITES = [
    ("POST", "/admin/v1/tenants"),
    ("POST", "/admin/v1/tenants/default/keys"),
    ("POST", "/admin/v1/tenants/default/webhooks"),
    ("POST", "/admin/v1/tenants/default/agents"),
    ("POST", "/admin/v1/tenants/default/bots"),
    ("PATCH", "/admin/v1/tenants/default/bots/demo"),
    ("POST", "/admin/v1/tenants/default/bots/demo/sources"),
]


def _state(client: httpx.Client) -> dict[str, Any]:
    reads = ("", "/default/keys", "/default/webhooks", "/default/agents", "/default/bots")
    state = {path: client.get(f"/admin/v1/tenants{path}").json() for path in reads}
    state["sources"] = client.get("/admin/v1/tenants/default/bots/demo/sources").json()
    return state


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    write=st.sampled_from(WRITES),
    body=st.one_of(
        json_values(),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "id",
                    "scope",
                    "bot_id",
                    "url",
                    "events",
                    "secret",
                    "email",
                    "password",
                    "content",
                    "kind",
                    "title",
                    "temperature",
                    "privacy",
                ]
            ),
            json_values(leaves=3),
            max_size=5,
        ),
        st.binary(max_size=40),
    ),
)
def test_random_admin_bodies_never_fail_the_server_nor_leave_half_rows(
    anyio_backend: str, live: httpx.Client, write: tuple[str, str], body: object
) -> None:
    before = _state(live)
    if isinstance(body, bytes):
        answer = live.request(write[0], write[1], content=body)
    else:
        answer = live.request(write[0], write[1], json=body)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert error["code"] and error["message"]
        assert _state(live) == before, "a refused write changed something"


async def test_every_http_answer_carries_the_security_headers(server: RunningServer) -> None:
    async with server.http() as http:
        answers = [
            await http.get("/health"),
            await http.get("/metrics"),
            await http.get("/docs/protocol.md"),
            await http.get("/docs/nothing.md"),
            await http.get("/admin/v1/tenants"),  # 401
            await http.get("/admin/v1/openapi.json"),
            await http.post("/realtime/v1/agents/login", content=b"{"),
        ]
    for answer in answers:
        headers = answer.headers
        assert headers["x-content-type-options"] == "nosniff", answer.url
        assert headers["x-frame-options"] == "DENY"
        assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert headers["referrer-policy"] == "no-referrer"
        assert len(headers.get_list("content-security-policy")) == 1
    assert [a.status_code for a in answers][3:5] == [404, 401]
