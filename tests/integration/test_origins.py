"""A bot's allowed origins on /ws and on the history read, with CORS for the allowed ones."""

from __future__ import annotations

import pytest

from tests.support import RunningServer, ws_client

pytestmark = pytest.mark.anyio

SHOP = "https://shop.example.com"


async def test_a_bot_is_usable_from_its_allowed_origins_only(server: RunningServer) -> None:
    async with server.admin() as admin:
        patched = await admin.patch(
            "/admin/v1/tenants/default/bots/demo", json={"allowed_origins": [SHOP]}
        )
        assert patched.status_code == 200, patched.text
    async with ws_client(server, origin="https://evil.example.com") as evil:
        await evil.send(type="hello", id="h", bot="demo", session_id="s-1")
        refused = await evil.recv()
    async with ws_client(server, origin=SHOP) as shop:
        welcome = await shop.hello()
        frames = await shop.ask("What is an epoch?")
    async with ws_client(server) as no_browser:  # no Origin: not a browser
        assert (await no_browser.hello())["type"] == "welcome"
    assert (refused["type"], refused["code"]) == ("error", "origin_not_allowed")
    assert welcome["type"] == "welcome"
    cid = frames[0]["conversation_id"]

    url = f"/realtime/v1/conversations/{cid}/messages"
    async with server.http() as http:
        good = await http.get(url, params={"session_id": "s-1"}, headers={"origin": SHOP})
        bad = await http.get(
            url, params={"session_id": "s-1"}, headers={"origin": "https://evil.example.com"}
        )
        plain = await http.get(url, params={"session_id": "s-1"})
        preflight = await http.options(
            url, headers={"origin": SHOP, "access-control-request-method": "GET"}
        )
        preflight_bad = await http.options(
            url,
            headers={"origin": "https://evil.example.com", "access-control-request-method": "GET"},
        )
        preflight_unknown = await http.options(
            "/realtime/v1/conversations/00000000-0000-4000-8000-000000000000/messages",
            headers={"origin": SHOP},
        )
    assert good.status_code == 200 and len(good.json()["messages"]) == 2
    assert good.headers["access-control-allow-origin"] == SHOP
    assert good.headers["vary"] == "Origin"
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in bad.headers
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "x-api-key" in preflight.headers["access-control-allow-headers"]
    # The preflight tells nothing about which conversations exist: one answer for all (the
    # read above is where another site is refused).
    for other in (preflight_bad, preflight_unknown):
        assert other.status_code == 204
        assert other.headers["access-control-allow-methods"] == "GET, OPTIONS"


async def test_without_a_list_every_origin_may(server: RunningServer) -> None:
    async with ws_client(server, origin="https://anywhere.example") as client:
        assert (await client.hello())["type"] == "welcome"
