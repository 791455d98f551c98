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


async def count_conversations(server: RunningServer) -> int:
    async with server.engine.store.read() as conn:
        from sqlalchemy import func, select

        from realtime.store.schema import conversations

        return int(
            (await conn.execute(select(func.count()).select_from(conversations))).scalar_one()
        )


async def test_a_person_or_the_contact_form_before_any_message_starts_a_conversation(
    server: RunningServer,
) -> None:
    async with ws_client(server) as visitor:
        await visitor.hello()
        await visitor.send(type="handoff.request", id="h0")
        refused = await reply(visitor, "h0")  # the demo bot does not hand off (yet)
        await visitor.send(type="contact.submit", id="c0", fields={"name": "Ann"})
        no_form = await reply(visitor, "c0")
    empty = await count_conversations(server)
    async with server.admin() as admin:
        await admin.patch(
            "/admin/v1/tenants/default/bots/demo",
            json={"handoff_enabled": True, "contact_form_enabled": True},
        )
    async with ws_client(server) as visitor:
        await visitor.hello()
        await visitor.send(type="contact.submit", id="c1", fields={"name": "Ann", "email": "x"})
        bad = await reply(visitor, "c1")
        still_empty = await count_conversations(server)
        await visitor.send(
            type="contact.submit", id="c2", fields={"name": "Ann", "email": "ann@example.com"}
        )
        seen = await visitor.recv_until("lead.captured")
        seen += [] if any(f.get("id") == "c2" for f in seen) else await visitor.recv_until("ack")
        form = next(f for f in seen if f.get("id") == "c2")
        lead = [f for f in seen if f["type"] == "lead.captured"]
        await visitor.send(type="handoff.request", id="h1")
        seen = await visitor.recv_until("handoff.requested")
        seen += [] if any(f.get("id") == "h1" for f in seen) else await visitor.recv_until("ack")
        asked = next(f for f in seen if f.get("id") == "h1")
        requested = [f for f in seen if f["type"] == "handoff.requested"]
    assert (refused["code"], no_form["code"]) == ("handoff_unavailable", "contact_form_unavailable")
    assert (empty, still_empty) == (0, 0)  # nothing was started for a refusal
    assert (bad["code"], bad["field"]) == ("invalid_field", "email")
    assert form["type"] == "ack" and lead[-1]["conversation_id"] == form["conversation_id"]
    assert asked["type"] == "ack" and asked["queued"] is True
    assert asked["conversation_id"] != form["conversation_id"]  # each started its own
    assert requested[-1]["conversation_id"] == asked["conversation_id"]
    assert await count_conversations(server) == 2
