"""A visitor's thumbs on answers, and the contact form (lead capture), over /ws."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from realtime.contact import DEFAULT_FIELDS
from tests.support import RunningServer, only, ws_client

pytestmark = pytest.mark.anyio


async def reply(client: Any, command_id: str) -> dict[str, Any]:
    while True:
        frame = await client.recv()
        if frame.get("id") == command_id and frame["type"] in ("ack", "error"):
            return frame  # type: ignore[no-any-return]


async def history(server: RunningServer, cid: str) -> dict[str, Any]:
    async with server.http() as http:
        url = f"/realtime/v1/conversations/{cid}/messages"
        return (await http.get(url, params={"session_id": "s-1"})).json()  # type: ignore[no-any-return]


async def test_feedback_is_kept_on_the_answer_and_only_there(server: RunningServer) -> None:
    async with ws_client(server) as visitor:
        await visitor.hello()
        frames = await visitor.ask("What is an epoch?")
        cid = frames[0]["conversation_id"]
        answer = only(frames, "run.completed")[0]["message"]["id"]
        user = only(frames, "message.created")[0]["message"]["id"]
        sent = {}
        for n, (message_id, value) in enumerate(
            [
                (answer, "negative"),
                (answer, "positive"),
                (user, "positive"),  # not an answer
                (str(uuid.uuid4()), "positive"),
                ("not-a-uuid", "positive"),
                (answer, "meh"),
            ]
        ):
            await visitor.send(
                type="feedback", id=f"f{n}", conversation_id=cid, message_id=message_id, value=value
            )
            sent[n] = await reply(visitor, f"f{n}")
        await visitor.send(type="feedback", id="gone", conversation_id=cid, message_id=answer)
        no_value = await reply(visitor, "gone")
    async with ws_client(server) as stranger:
        await stranger.hello(session_id="s-2")
        await stranger.send(
            type="feedback", id="x", conversation_id=cid, message_id=answer, value="negative"
        )
        foreign = await reply(stranger, "x")
    stored = {m["id"]: m.get("feedback") for m in (await history(server, cid))["messages"]}
    assert sent[0] == {"type": "ack", "id": "f0", "message_id": answer, "value": "negative"}
    assert sent[1]["type"] == "ack"
    assert [sent[n]["code"] for n in (2, 3, 4)] == ["message_not_found"] * 3
    assert sent[5]["code"] == "invalid_field" and no_value["code"] == "missing_field"
    assert foreign["code"] == "conversation_not_found"
    assert stored == {user: None, answer: "positive"}  # the last word, not the stranger's


async def test_the_contact_form_checks_the_bots_fields_and_captures_the_lead(
    server: RunningServer,
) -> None:
    async with ws_client(server) as visitor:
        welcome = await visitor.hello()
        frames = await visitor.ask("What is an epoch?")
        cid = frames[0]["conversation_id"]
        await visitor.send(
            type="contact.submit", id="off", conversation_id=cid, fields={"name": "Ann"}
        )
        disabled = await reply(visitor, "off")
    async with server.admin() as admin:
        patched = await admin.patch(
            "/admin/v1/tenants/default/bots/demo",
            json={
                "contact_form_enabled": True,
                "contact_form_success_message": "Thanks, we will write back.",
                "contact_form_fields": [
                    {"name": "name", "label": "Your name", "type": "text", "required": True},
                    {"name": "phone", "label": "Phone", "type": "tel", "required": False},
                    {"name": "email", "label": "Email", "type": "email", "required": True},
                ],
            },
        )
        bad_fields = await admin.patch(
            "/admin/v1/tenants/default/bots/demo",
            json={"contact_form_fields": [{"name": "x", "type": "colour"}]},
        )
    assert patched.status_code == 200, patched.text
    async with ws_client(server) as visitor:
        enabled = await visitor.hello()
        answers = {}
        for n, fields in enumerate(
            [
                {"name": "Ann"},  # no email
                {"name": "Ann", "email": "not-an-email"},
                {"name": "Ann", "email": "ann@example.com", "phone": "call me maybe"},
                {"name": "Ann", "email": "ann@example.com", "shoe_size": "38"},
                {"name": "Ann", "email": "ann@example.com", "phone": 5},
                {"name": " Ann Lee ", "email": "ann@example.com", "phone": "+44 20 7946 0000"},
            ]
        ):
            await visitor.send(
                type="contact.submit", id=f"c{n}", conversation_id=cid, fields=fields
            )
            answers[n] = await reply(visitor, f"c{n}")
        await visitor.send(type="subscribe", id="s", conversation_id=cid)
        await reply(visitor, "s")
    stored = await server.engine.store.get_conversation(cid)
    lead = {"name": "Ann Lee", "email": "ann@example.com", "phone": "+44 20 7946 0000"}
    assert welcome["bot"]["contact_form_enabled"] is False
    assert welcome["bot"]["contact_form_fields"] == DEFAULT_FIELDS
    assert disabled["code"] == "contact_form_unavailable"
    assert bad_fields.status_code == 400
    assert enabled["bot"]["contact_form_success_message"] == "Thanks, we will write back."
    assert [f["label"] for f in enabled["bot"]["contact_form_fields"]] == [
        "Your name",
        "Phone",
        "Email",
    ]
    assert [answers[n].get("code") for n in range(5)] == [
        "missing_field",
        "invalid_field",
        "invalid_field",
        "invalid_field",
        "invalid_field",
    ]
    assert answers[5] == {"type": "ack", "id": "c5", "conversation_id": cid, "visitor": lead}
    assert stored is not None and stored.meta["visitor_info"] == lead  # only the accepted one
