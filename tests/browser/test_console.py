"""The agent console (``/console``) in a real Chromium against a real server: signing in and
out, presence, the queue, claiming, talking to a visitor, transfers (heard of through
``conversation.assigned``), the live list of bot conversations, watching one and taking it
over, a pending write (decided by the agent only when the bot allows it, also in a fresh
sign-in, which has the handoff context from its watch), and rendering what visitors write as
text.

Visitors are Python WebSocket clients of ``/ws`` (real clients of the real server). Every
test ends with no console error, page error or CSP violation on the pages it used.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from realtime.testing import FakeOpenAI, Text, ToolCall
from tests.browser.conftest import screenshot_path
from tests.browser.console_support import (
    PASSWORD,
    ConsolePage,
    ServerOnPort,
    Visitor,
    console_page,
    patient_expect,
    setup_desk,
)
from tests.support import (
    UNIT,
    TcpProxy,
    demo_shop_rows,
    llm_settings,
    make_settings,
    run_server,
    ws_client,
)

pytestmark = pytest.mark.anyio

QUESTION = "What is an epoch?"  # the demo docs answer it: the offline bot does not hand off


@pytest.fixture(autouse=True)
def _patient_expect() -> Iterator[None]:
    with patient_expect():
        yield


def no_problems(*consoles: ConsolePage) -> None:
    for console in consoles:
        assert console.problems == [], console.problems


async def test_sign_in_presence_reload_and_sign_out(browser: Browser, tmp_path: Path) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        agents = await setup_desk(server)
        async with console_page(browser, server) as alice:
            page = alice.page
            await expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
            await alice.sign_in("alice", password="not the password")
            await expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
            await expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
            # The refused login is a 401 the browser reports; nothing else may be.
            refused = [p for p in alice.problems if "401" in p]
            assert len(refused) == 1, alice.problems
            alice.problems.remove(refused[0])

            await alice.sign_in("alice")
            await alice.ready()
            await expect(page.locator(".me-name")).to_have_text("Alice Doe")
            await expect(page).to_have_title("Agent console")
            await expect(page.get_by_label("Your status")).to_have_value("online")

            # Presence: another agent's console hears of the switch, both ways.
            async with ws_client(server, path="/ws/console") as raw:
                bob = Visitor(raw)
                await bob.send(
                    type="hello",
                    id="h",
                    tenant="default",
                    email="bob@example.com",
                    password=PASSWORD,
                )
                assert (await bob.reply("h"))["agent"]["id"] == agents["bob"]["id"]
                await bob.send(type="queue.subscribe", id="q")
                await bob.reply("q")
                await page.get_by_label("Your status").select_option("away")
                changed = await bob.until("presence.updated", agent_id=agents["alice"]["id"])
                assert changed["status"] == "away"
                await expect(page.locator(".topbar")).to_have_attribute("data-presence", "away")
                await page.get_by_label("Your status").select_option("online")
                changed = await bob.until("presence.updated", agent_id=agents["alice"]["id"])
                assert changed["status"] == "online"

            # The token survives a reload (sessionStorage); signing out ends it on the server
            # (POST /realtime/v1/agents/logout), then forgets it.
            await page.reload()
            await alice.ready()
            await expect(page.locator(".me-name")).to_have_text("Alice Doe")
            token = await alice.token()
            async with page.expect_response("**/realtime/v1/agents/logout") as logout:
                await page.get_by_role("button", name="Sign out").click()
            answer = await logout.value
            assert answer.status == 204
            assert answer.request.headers["authorization"] == f"Bearer {token}"
            await expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
            assert await page.evaluate("sessionStorage.length") == 0
            async with ws_client(server, path="/ws/console") as raw:
                stale = Visitor(raw)
                await stale.send(type="hello", id="h", token=token)
                denied = await stale.reply("h")
                assert (denied["type"], denied["code"]) == ("error", "unauthorized")
            await page.reload()
            await expect(page.get_by_label("Email")).to_be_visible()
            await expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
            no_problems(alice)


async def test_queue_claim_context_reply_typing_and_unread(
    browser: Browser, tmp_path: Path
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        await setup_desk(server)
        async with (
            console_page(browser, server, "alice") as alice,
            ws_client(server) as first,
            ws_client(server) as second,
            ws_client(server) as third,
        ):
            page = alice.page
            visitor = Visitor(first)
            await visitor.hello("visitor-1")
            cid = await visitor.start(QUESTION)
            await expect(page).to_have_title("Agent console")
            bystander = Visitor(third)  # stays with the bot: on the live list
            await bystander.hello("visitor-3")
            with_bot = await bystander.start("How do I run several nodes?")
            await expect(alice.live_item(with_bot)).to_contain_text("How do I run several nodes?")
            await expect(alice.live_item(cid)).to_contain_text(QUESTION)

            # Asking for a person puts the conversation in the queue, with a title badge.
            await visitor.ask_for_a_person(cid)
            item = alice.queue_item(cid)
            await expect(item).to_contain_text(QUESTION)
            await expect(page).to_have_title("(1) Agent console")
            await expect(alice.live_item(cid)).to_have_count(0)  # not with the bot any more
            await page.screenshot(path=screenshot_path("console-queue"))

            await alice.claim(cid)
            await expect(item).to_have_count(0)
            await expect(page).to_have_title("Agent console")
            accepted = await visitor.until("handoff.accepted")
            assert accepted["agent"]["label"] == "Alice" and accepted["take_over"] is False

            # The handoff context is at the top, above the history.
            context = page.locator(".context")
            await expect(context).to_contain_text(f"The visitor asked: {QUESTION}")
            await expect(context).to_contain_text("visitor-1")
            await expect(alice.messages("user")).to_have_text([re.compile(QUESTION)])
            await expect(alice.messages("assistant")).to_have_count(1)
            context_box = await context.bounding_box()
            log_box = await page.locator(".log").bounding_box()
            assert context_box and log_box and context_box["y"] < log_box["y"]

            # Typing, then replying: the visitor sees both.
            reply = page.get_by_label("Your reply")
            await reply.press_sequentially("Hi, I'm Alice.", delay=5)
            typing = await visitor.until("typing")
            assert (typing["who"], typing["on"], typing["agent"]["label"]) == (
                "agent",
                True,
                "Alice",
            )
            await reply.press("Enter")
            said = await visitor.message("agent")
            assert said["content"] == "Hi, I'm Alice." and said["agent"]["label"] == "Alice"
            assert (await visitor.until("typing"))["on"] is False
            await expect(alice.messages("agent")).to_have_text([re.compile("Hi, I'm Alice.")])
            await expect(reply).to_have_value("")

            # The visitor types, then writes: the console shows both, live.
            await visitor.send(type="typing", conversation_id=cid, on=True)
            await expect(page.locator(".typing")).to_have_text("The visitor is typing…")
            await visitor.say(cid, "Thanks! My order number is 1234.", "v1")
            await expect(alice.messages("user")).to_have_count(2)
            await expect(alice.messages("user").last).to_contain_text("My order number is 1234.")
            await expect(page.locator(".typing")).to_have_text("")

            # A second conversation: claimed, then left; its new message counts as unread.
            other = Visitor(second)
            await other.hello("visitor-2")
            cid2 = await other.start("How do I resume a conversation?")
            await other.ask_for_a_person(cid2)
            await alice.claim(cid2)
            await alice.mine_item(cid).get_by_role("button").first.click()
            await expect(alice.view).to_have_attribute("data-conversation-id", cid)
            await other.say(cid2, "Hello? Anyone?", "o1")
            unread = alice.mine_item(cid2).locator("[data-unread]")
            await expect(unread).to_have_text("1")
            await expect(page).to_have_title("(1) Agent console")
            await visitor.say(cid, "Still there?", "v2")  # the open one: read at once
            await expect(alice.messages("user").last).to_contain_text("Still there?")
            await expect(alice.mine_item(cid).locator("[data-unread]")).to_be_hidden()
            await expect(unread).to_have_text("1")
            # The live list has the conversation still with the bot, not the handed-off ones.
            await expect(alice.live_item(with_bot)).to_be_visible()
            await expect(alice.live_item(cid)).to_have_count(0)
            await expect(alice.live_item(cid2)).to_have_count(0)
            await expect(context).to_contain_text(f"The visitor asked: {QUESTION}")
            await page.screenshot(path=screenshot_path("console-conversation"))

            await alice.mine_item(cid2).get_by_role("button").first.click()
            await expect(alice.messages("user").last).to_contain_text("Hello? Anyone?")
            await expect(unread).to_be_hidden()
            await expect(page).to_have_title("Agent console")
            no_problems(alice)


async def test_transfer_release_and_close(browser: Browser, tmp_path: Path) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        agents = await setup_desk(server)
        bob_id = agents["bob"]["id"]
        async with (
            console_page(browser, server, "bob") as bob,
            console_page(browser, server, "alice") as alice,
            ws_client(server) as client,
        ):
            visitor = Visitor(client)
            await visitor.hello("visitor-t")
            cid = await visitor.start(QUESTION)
            await visitor.ask_for_a_person(cid)
            await expect(bob.queue_item(cid)).to_be_visible()
            await alice.claim(cid)
            await expect(bob.queue_item(cid)).to_have_count(0)

            # The transfer picker names the colleagues who are there (not Alice herself), and
            # follows their presence.
            picker = alice.view.get_by_label("Transfer to")
            options = picker.locator("option")
            await expect(options).to_have_text(["Back to the queue", "Bob Doe"])
            await bob.page.get_by_label("Your status").select_option("away")
            await expect(options).to_have_text(["Back to the queue", "Bob Doe (away)"])
            await bob.page.get_by_label("Your status").select_option("online")
            await expect(options).to_have_text(["Back to the queue", "Bob Doe"])

            # Alice transfers it to Bob: the visitor is told; Bob's console hears of it at
            # once (conversation.assigned, not its 30 s safety refresh), with its context:
            # the event carries the handoff.context packet, so no replay is asked for it.
            await picker.select_option(label="Bob Doe")
            transferred_at = time.monotonic()
            await alice.button("Transfer")
            moved = await visitor.until("handoff.transferred")
            assert (moved["agent"]["id"], moved["reason"]) == (bob_id, "transfer")
            assert moved["from_agent"]["label"] == "Alice"
            await expect(alice.mine_item(cid)).to_have_count(0)
            await expect(alice.view.locator(".status-pill")).to_have_text("With Bob")
            await expect(alice.page.get_by_label("Your reply")).to_be_hidden()

            handed = bob.mine_item(cid)
            await expect(handed).to_contain_text("transferred by Alice", timeout=3000 * UNIT)
            await expect(bob.page).to_have_title("(1) Agent console", timeout=3000 * UNIT)
            await expect(bob.page.locator(".toast")).to_contain_text("Alice transferred")
            await handed.get_by_role("button").first.click()
            await expect(bob.view).to_have_attribute("data-conversation-id", cid)
            await expect(bob.page.locator(".context")).to_contain_text(
                f"The visitor asked: {QUESTION}", timeout=3000 * UNIT
            )
            await expect(bob.page.locator(".context")).to_contain_text("visitor-t")
            assert time.monotonic() - transferred_at < 3 * UNIT
            assert bob.watch_acks(cid), bob.frames  # Bob follows it from the transfer on
            assert bob.replays(cid) == [], bob.replays(cid)
            await expect(bob.page).to_have_title("Agent console")
            await expect(handed).not_to_contain_text("transferred by")
            await bob.page.get_by_label("Your reply").fill("Bob here, I'll take it from here.")
            await bob.page.get_by_role("button", name="Send", exact=True).click()
            said = await visitor.message("agent")
            assert said["agent"]["label"] == "Bob"

            # A reload keeps Bob signed in, on the same conversation, with its context.
            await bob.page.reload()
            await bob.ready()
            await expect(bob.view).to_have_attribute("data-conversation-id", cid)
            await expect(bob.page.locator(".context")).to_contain_text("The visitor asked")
            await expect(bob.messages("agent")).to_have_count(1)

            # Release to the bot.
            await bob.button("Release to bot")
            released = await visitor.until("handoff.released")
            assert (released["reason"], released["agent"]["id"]) == ("agent", bob_id)
            await visitor.until("conversation.updated", status="bot")
            await expect(bob.mine_item(cid)).to_have_count(0)
            await expect(bob.view.locator(".status-pill")).to_have_text("With the bot")

            # Asked again, claimed again, closed.
            await visitor.ask_for_a_person(cid, "again")
            await bob.claim(cid)
            await bob.button("Close")
            closed = await visitor.until("conversation.updated", status="closed")
            assert closed["agent"]["id"] == bob_id
            await expect(bob.view.locator(".status-pill")).to_have_text("Closed")
            await expect(bob.mine_item(cid)).to_have_count(0)
            assert not [f for f in visitor.seen if f["type"] == "handoff.context"]
            assert bob.replays(cid) == [], bob.replays(cid)
            no_problems(alice, bob)


async def test_watch_a_live_bot_conversation_and_take_it_over(
    browser: Browser, tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    slow = " ".join(f"w{i}" for i in range(600))  # some 18 s of streaming
    fake_llm.add(None, [Text(slow, delay=0.03)])
    async with run_server(llm_settings(tmp_path, fake_llm)) as server:
        await setup_desk(server)
        async with console_page(browser, server, "alice") as alice, ws_client(server) as client:
            visitor = Visitor(client)
            await visitor.hello("visitor-w")
            await visitor.send(type="message.send", id="m", content="tell me a long story")
            cid = (await visitor.reply("m"))["conversation_id"]
            await visitor.until("run.token")

            # The live list shows it (with its dot: the bot is answering); a click watches it.
            page = alice.page
            item = alice.live_item(cid)
            await expect(item).to_contain_text("tell me a long story")
            await expect(item.locator(".live-dot")).to_be_visible()
            await alice.watch(cid)
            await expect(item).to_contain_text("watching")
            await expect(alice.view).to_have_attribute("data-status", "bot")
            streaming = page.locator('.log li[data-streaming="true"]')
            await expect(streaming).to_contain_text(re.compile(r"w\d+ w\d+"))
            # Live: the answer keeps growing as the bot streams it.
            seen = len(await streaming.text_content() or "")
            await expect(streaming).not_to_have_text(re.compile(rf"^.{{0,{seen}}}$", re.S))

            await alice.button("Take over")
            cancelled = await visitor.until("run.cancelled")
            assert 0 < len(cancelled["message"]["content"]) < len(slow)
            accepted = await visitor.until("handoff.accepted")
            assert accepted["take_over"] is True
            await expect(alice.view).to_have_attribute("data-status", "with_human")
            await expect(alice.mine_item(cid)).to_be_visible()
            await expect(alice.live_item(cid)).to_have_count(0)
            await expect(page.locator(".context")).to_contain_text(
                "The visitor asked: tell me a long story"
            )
            await expect(streaming).to_have_count(0)
            await expect(alice.messages("assistant")).to_have_count(1)  # the partial answer

            await page.get_by_label("Your reply").fill("I'll take it from here.")
            await page.get_by_label("Your reply").press("Enter")
            assert (await visitor.message("agent"))["content"] == "I'll take it from here."
            no_problems(alice)


WIDGET = {"table": "products", "data": {"name": "Console Widget", "price": 12, "category_id": 1}}


async def test_approve_a_pending_write_when_the_bot_allows_agents_to(
    browser: Browser, tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(None, [ToolCall("create_record", WIDGET, id="call_c1")])
    settings = llm_settings(tmp_path, fake_llm)
    async with run_server(settings) as server:
        await setup_desk(server)
        async with console_page(browser, server, "alice") as alice, ws_client(server) as client:
            visitor = Visitor(client)
            await visitor.hello("visitor-c")
            await visitor.send(type="message.send", id="m", content="add the console widget")
            cid = (await visitor.reply("m"))["conversation_id"]
            await visitor.until("run.status", stage="awaiting_confirmation")
            await visitor.ask_for_a_person(cid)
            await alice.claim(cid)

            page = alice.page
            pending = page.locator(".pending")
            await expect(pending).to_contain_text("create_record")
            await expect(pending).to_contain_text("Console Widget")

            # Not allowed by the bot (handoff.context's agent_confirmations is false): the
            # write is shown, read-only; the visitor decides.
            approve = pending.get_by_role("button", name="Approve")
            reject = pending.get_by_role("button", name="Reject")
            await expect(pending).to_contain_text("The visitor decides")
            await expect(approve).to_be_hidden()
            await expect(reject).to_be_hidden()

            # Allowed now; the next claim's context says so: the buttons appear.
            async with server.admin() as admin:
                allowed = await admin.patch(
                    "/admin/v1/tenants/default/bots/demo", json={"agent_confirmations": True}
                )
                assert allowed.status_code == 200, allowed.text
            await page.get_by_label("Transfer to").select_option(label="Back to the queue")
            await alice.button("Transfer")
            await alice.claim(cid)
            await expect(approve).to_be_visible()
            await expect(reject).to_be_visible()
            await expect(pending).not_to_contain_text("The visitor decides")
            await expect(pending).to_contain_text("Console Widget")

            await approve.click()
            resolved = await visitor.until("confirmation.resolved")
            assert (resolved["decision"], resolved["by"]) == ("approved", "agent")
            await expect(pending).to_be_hidden()
            step = page.locator('.log li[data-role="step"]')
            await expect(step).to_contain_text("create_record")
            await expect(step).to_contain_text("Created products #")
            rows = await demo_shop_rows(
                settings, "SELECT id FROM products WHERE name = :n", n="Console Widget"
            )
            assert len(rows) == 1
            no_problems(alice)
        assert len(fake_llm.requests) == 1  # a person owns it: the bot said nothing more


async def test_a_fresh_sign_in_gets_the_context_and_the_pending_write_from_the_watch(
    browser: Browser, tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(None, [ToolCall("create_record", WIDGET, id="call_f1")])
    async with run_server(llm_settings(tmp_path, fake_llm)) as server:
        await setup_desk(server)  # agent_confirmations is off: the visitor decides
        async with ws_client(server) as client:
            visitor = Visitor(client)
            await visitor.hello("visitor-f")
            await visitor.send(type="message.send", id="m", content="add the fresh widget")
            cid = (await visitor.reply("m"))["conversation_id"]
            await visitor.until("run.status", stage="awaiting_confirmation")
            await visitor.ask_for_a_person(cid)
            async with console_page(browser, server, "alice") as first:
                await first.claim(cid)
                await expect(first.page.locator(".pending")).to_contain_text("create_record")

                # Alice signs in again in a new browser context (no sessionStorage, no packet):
                # the conversation comes from conversations.list, and its watch's ack carries the
                # handoff context; no handoff.context event, and no replay to look for one.
                async with console_page(browser, server, "alice") as fresh:
                    page = fresh.page
                    await fresh.mine_item(cid).get_by_role("button").first.click()
                    await expect(fresh.view).to_have_attribute("data-conversation-id", cid)
                    await expect(fresh.view).to_have_attribute("data-status", "with_human")
                    context = page.locator(".context")
                    await expect(context).to_contain_text("The visitor asked: add the fresh widget")
                    await expect(context).to_contain_text("visitor-f")

                    pending = page.locator(".pending")
                    await expect(pending).to_contain_text("create_record")
                    await expect(pending).to_contain_text("Console Widget")
                    await expect(pending).to_have_attribute("data-decides", "visitor")
                    await expect(pending).to_contain_text("The visitor decides")
                    await expect(pending.get_by_role("button", name="Approve")).to_be_hidden()
                    await expect(pending.get_by_role("button", name="Reject")).to_be_hidden()

                    contexts = fresh.watch_contexts(cid)
                    assert contexts and contexts[0] is not None, fresh.frames
                    assert contexts[0]["agent_confirmations"] is False
                    assert contexts[0]["pending_confirmation"]["tool_call_id"] == "call_f1"
                    assert fresh.received("handoff.context", cid) == []
                    assert fresh.replays(cid) == [], fresh.replays(cid)
                    no_problems(first, fresh)


XSS = '<img src=x onerror="window.__x=1">'


async def test_what_visitors_write_is_shown_as_text(browser: Browser, tmp_path: Path) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        await setup_desk(server)
        async with console_page(browser, server, "alice") as alice, ws_client(server) as client:
            visitor = Visitor(client)
            await visitor.hello("visitor-x")
            cid = await visitor.start(XSS)
            await visitor.ask_for_a_person(cid)
            page = alice.page
            await expect(alice.queue_item(cid)).to_contain_text(XSS)  # title and summary
            await alice.claim(cid)
            await visitor.say(cid, f"again: {XSS}<script>window.__x=2</script>", "x1")
            await expect(alice.messages("user")).to_have_count(2)
            await expect(alice.messages("user").first.locator(".msg-body")).to_have_text(XSS)
            await expect(alice.messages("user").last).to_contain_text("<script>window.__x=2")
            await expect(page.locator(".context")).to_contain_text(XSS)
            assert await page.locator("#app img, #app script").count() == 0
            assert await page.evaluate("typeof window.__x") == "undefined"
            no_problems(alice)


async def test_a_dropped_connection_resumes_where_it_stopped(
    browser: Browser, tmp_path: Path
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        await setup_desk(server)
        proxy = TcpProxy(server.port)  # the browser's way to the server, which a test can cut
        await proxy.start()
        try:
            async with (
                console_page(
                    browser, server, "alice", url=f"http://127.0.0.1:{proxy.port}"
                ) as alice,
                ws_client(server) as first,
                ws_client(server) as second,
            ):
                visitor = Visitor(first)
                await visitor.hello("visitor-d")
                cid = await visitor.start(QUESTION)
                await visitor.ask_for_a_person(cid)
                await alice.claim(cid)
                bot_visitor = Visitor(second)  # a conversation Alice only watches
                await bot_visitor.hello("visitor-b")
                watched = await bot_visitor.start("How do I run several nodes?")
                page = alice.page
                await alice.watch(watched)
                await alice.mine_item(cid).get_by_role("button").first.click()
                await expect(alice.view).to_have_attribute("data-conversation-id", cid)

                summary = alice.live_item(watched).locator(".conv-summary")
                await expect(summary).to_contain_text("Bot:")
                said_before = await summary.text_content()

                await proxy.cut()
                await expect(page.locator("body")).to_have_attribute("data-state", "connecting")
                await expect(page.locator(".connection")).to_contain_text("retrying")
                await visitor.say(cid, "Said while you were away.", "d1")
                await bot_visitor.say(watched, "What is a seq?", "b1")
                await proxy.mend()

                await alice.ready()
                await expect(alice.messages("user").last).to_contain_text(
                    "Said while you were away."
                )
                await expect(alice.messages("user")).to_have_count(2)
                # The watched conversation was followed again too (before it is opened).
                await expect(summary).to_contain_text("Bot:")
                await expect(summary).not_to_have_text(said_before or "")
                await alice.live_item(watched).get_by_role("button").first.click()
                await expect(alice.messages("user").last).to_contain_text("What is a seq?")
                await expect(alice.messages("assistant")).to_have_count(2)
                refused = [p for p in alice.problems if "ERR_CONNECTION_REFUSED" not in p]
                assert refused == [], alice.problems
        finally:
            await proxy.close()


async def test_reconnects_after_a_restart_and_follows_its_conversations_again(
    browser: Browser, tmp_path: Path
) -> None:
    server = ServerOnPort(make_settings(tmp_path))
    await server.start()
    try:
        await setup_desk(server)
        async with console_page(browser, server, "alice") as alice:
            async with ws_client(server) as client:  # type: ignore[arg-type]
                visitor = Visitor(client)
                await visitor.hello("visitor-r")
                cid = await visitor.start(QUESTION)
                await visitor.ask_for_a_person(cid)
                await alice.claim(cid)
            await server.stop()
            page = alice.page
            await expect(page.locator("body")).to_have_attribute("data-state", "connecting")
            await server.start()
            await alice.ready()
            async with ws_client(server) as client:  # type: ignore[arg-type]
                visitor = Visitor(client)
                await visitor.hello("visitor-r")
                await visitor.say(cid, "Back after the restart.", "r1")
                await expect(alice.messages("user").last).to_contain_text("Back after the restart.")
                await page.get_by_label("Your reply").fill("Still with you.")
                await page.get_by_label("Your reply").press("Enter")
                assert (await visitor.message("agent"))["content"] == "Still with you."
            # The connections refused while the server was down are the browser's reports.
            unexpected = [p for p in alice.problems if "ERR_CONNECTION_REFUSED" not in p]
            assert unexpected == [], alice.problems
    finally:
        await server.stop()
