"""The visitor widget (realtime/static/widget.js) in a real Chromium against a real server:
streaming, citations, confirmations, a dropped network, reloads, hostile model text, its
size, the Laravel package's <chatbot-widget> element, and the keyboard.

Each test starts its own server on SQLite (the widget does not depend on the store backend).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from realtime.testing import FakeOpenAI, Text, ToolCall
from realtime.transport.pages import STATIC
from tests.browser.conftest import screenshot_path, watch
from tests.browser.widget_support import (
    ANSWERS,
    CSP_PROBE,
    FINAL,
    INPUT,
    LAUNCHER,
    WAIT_MS,
    WIDGET,
    answer,
    ask,
    csp_reports,
    events_before_acks,
    last_user,
    observe,
    observed,
    open_widget,
    page_with,
    ready,
    record_frames,
    stored,
)
from tests.integration.test_handoff import console, setup_desk
from tests.support import (
    UNIT,
    Client,
    demo_shop_rows,
    llm_settings,
    make_settings,
    run_server,
    ws_client,
)

pytestmark = pytest.mark.anyio

SHOP = "https://shop.test"  # another site's page, served by page.route (a secure context)


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    # Chromium asks before a public site's page reaches a loopback address (the server).
    ctx = await browser.new_context(
        viewport={"width": 1100, "height": 800}, permissions=["local-network-access"]
    )
    await ctx.add_init_script(CSP_PROBE)
    try:
        yield ctx
    finally:
        await ctx.close()


async def shop_page(context: BrowserContext, body: str) -> Page:
    """A page of another site (no CSP at all, so only the widget keeps hostile text inert)."""
    page = await context.new_page()

    async def fulfil(route):  # type: ignore[no-untyped-def]
        await route.fulfill(status=200, content_type="text/html", body=page_with(body))

    await page.route(f"{SHOP}/**", fulfil)
    return page


async def test_demo_page_streams_an_answer_with_citations(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        page = await context.new_page()
        problems = watch(page)
        frames = record_frames(page)
        await page.goto(server.url + "/")
        await ready(page)
        await expect(page.locator(f"{WIDGET} [data-role=welcome]")).to_contain_text("Ask me")
        await open_widget(page)
        await observe(page)
        await ask(page, "How do I resume after a disconnect?")
        final = await answer(page)

        # The server streamed it, and the widget showed the words before the answer was over.
        kinds = frames.types()
        assert kinds.count("run.token") > 3 and kinds.index("run.token") < kinds.index(
            "run.completed"
        )
        completed = frames.of("run.completed")[0]["message"]
        assert await final.get_attribute("data-message-id") == completed["id"]
        text = await final.locator(".b").inner_text()
        seen = await observed(page)
        streamed = [s["text"] for s in seen if s["streaming"] and s["text"].strip()]
        assert streamed, "the answer was never visible while it streamed"
        assert len(streamed[0]) < len(text)
        assert completed["content"].split()[0].strip("*`[") in text

        # Cited sources are links to the demo documents, opening elsewhere.
        links = final.locator(".cites a")
        assert await links.count() >= 1
        assert completed["citations"]
        async with httpx.AsyncClient() as http:
            for i in range(await links.count()):
                link = links.nth(i)
                href = await link.get_attribute("href")
                assert href and href.startswith(f"{server.url}/docs/"), href
                assert await link.get_attribute("target") == "_blank"
                assert await link.get_attribute("rel") == "noopener noreferrer"
                assert (await http.get(href)).status_code == 200
        user = page.locator(f"{WIDGET} .msg[data-role=user]")
        assert await user.get_attribute("data-message-id") == frames.of("ack")[0]["message_id"]
        await page.screenshot(path=screenshot_path("widget-answer"))
        assert problems == []
        assert await csp_reports(page) == []


async def test_confirmation_card_approves_a_write(
    tmp_path: Path, context: BrowserContext, fake_llm: FakeOpenAI
) -> None:
    data = {"table": "products", "id": 3, "data": {"name": "Renamed In Browser"}}
    fake_llm.add(
        last_user("rename product 3"),
        [Text("Let me rename it."), ToolCall("update_record", data, id="call_b1")],
        [Text("Done: product 3 is now **Renamed In Browser**.")],
    )
    settings = llm_settings(tmp_path, fake_llm, llm_read_timeout=5.0)
    name_of_3 = "SELECT name FROM products WHERE id = 3"
    async with run_server(settings) as server:
        before = await demo_shop_rows(settings, name_of_3)
        page = await context.new_page()
        problems = watch(page)
        await page.goto(server.url + "/")
        await ready(page)
        await open_widget(page)
        await ask(page, "rename product 3")
        card = page.locator(f"{WIDGET} .card[data-tool-call-id=call_b1]")
        await expect(card).to_be_visible(timeout=WAIT_MS)
        await expect(card).to_contain_text("update record")
        await expect(card).to_contain_text("Renamed In Browser")
        await expect(page.locator(f"{ANSWERS}[data-streaming] .b")).to_have_text(
            "Let me rename it."
        )
        assert await demo_shop_rows(settings, name_of_3) == before != [("Renamed In Browser",)]
        await page.screenshot(path=screenshot_path("widget-confirmation"))

        await card.get_by_role("button", name="Approve").click()
        final = await answer(page)
        await expect(final.locator(".b")).to_have_text(
            "Let me rename it.Done: product 3 is now Renamed In Browser."
        )
        await expect(final.locator(".b strong")).to_have_text("Renamed In Browser")
        await expect(card).to_have_attribute("data-decision", "approved")
        await expect(card.get_by_role("button")).to_have_count(0)
        await expect(final.locator("details.step summary")).to_have_text("✓ update record")
        assert await demo_shop_rows(settings, name_of_3) == [("Renamed In Browser",)]
        assert problems == []


ANSWER = " ".join(
    f"Sentence {i} of the long answer keeps streaming while the network comes and goes."
    for i in range(1, 17)
)


async def test_network_cut_mid_answer_loses_and_repeats_nothing(
    tmp_path: Path, context: BrowserContext, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(last_user("tell me a long story"), [Text(ANSWER, delay=0.03)])
    settings = llm_settings(tmp_path, fake_llm, llm_read_timeout=5.0)
    async with run_server(settings) as server:
        page = await context.new_page()
        # Every socket of the page goes through Playwright, so the test can cut one.
        routes: list[WebSocketRoute] = []

        def through(ws: WebSocketRoute) -> None:
            ws.connect_to_server()
            routes.append(ws)

        await page.route_web_socket(f"{server.ws_url}", through)
        frames = record_frames(page)
        await page.goto(server.url + "/")
        await ready(page)
        await open_widget(page)
        await observe(page)
        await ask(page, "tell me a long story")
        streaming = page.locator(f"{ANSWERS}[data-streaming] .b")
        await expect(streaming).to_contain_text("Sentence 2", timeout=WAIT_MS)

        # 1. The browser goes offline for a second; the server goes on answering meanwhile.
        await context.set_offline(True)
        await expect(page.locator(WIDGET)).to_have_attribute("data-state", "offline")
        cut_at = len(await streaming.inner_text())
        await asyncio.sleep(1.0 * UNIT)
        assert len(await streaming.inner_text()) == cut_at, "text arrived while offline"
        await context.set_offline(False)
        await ready(page)

        # 2. The connection itself breaks (as a proxy or a server restart would break it).
        await expect(streaming).to_contain_text("Sentence 9", timeout=WAIT_MS)
        assert len(routes) == 2
        await routes[-1].close(code=1012, reason="restarting")

        # 3. The server says it lost the conversation's log: the widget reloads the history
        # (the text so far) and goes on with the live events after it.
        await expect(streaming).to_contain_text("Sentence 13", timeout=WAIT_MS)
        reads: list[str] = []
        page.on("request", lambda r: "/messages?" in r.url and reads.append(r.url))
        conversation_id = frames.of("ack")[0]["conversation_id"]
        reset = {"type": "history.reset", "conversation_id": conversation_id, "epoch": 1}
        routes[-1].send(json.dumps({**reset, "last_seq": frames.received[-1]["seq"]}))

        final = await answer(page)
        await expect(final.locator(".b")).to_have_text(ANSWER)
        await expect(page.locator(ANSWERS)).to_have_count(1)
        assert await final.locator(".b").text_content() == ANSWER
        # Each time it resumed where it was (a new socket whose hello resumes) rather than
        # starting over, and everything shown on the way was the beginning of the answer.
        assert len(routes) == 3 and len(reads) == 1
        resumes = [hello.get("resume") for hello in frames.sent_of("hello")]
        assert resumes[0] is None and len(resumes) == 3
        assert [r["conversation_id"] for r in resumes[1:]] == [conversation_id] * 2
        assert 0 < resumes[1]["after_seq"] < resumes[2]["after_seq"]
        texts = {s["text"] for s in await observed(page)}
        assert all(ANSWER.startswith(t) for t in texts), [
            t for t in texts if not ANSWER.startswith(t)
        ]
        assert len(texts) > 3, "the text did not grow over time"


async def test_reload_shows_the_history_and_continues_the_conversation(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        page = await context.new_page()
        problems = watch(page)
        frames = record_frames(page)
        await page.goto(server.url + "/")
        await ready(page)
        await open_widget(page)
        suggestions = page.locator(f"{WIDGET} [aria-label='Suggested questions'] button")
        await expect(suggestions).to_have_count(3)
        await suggestions.filter(has_text="Which error codes can the WebSocket send?").click()
        first = await answer(page)
        await expect(suggestions).to_have_count(0)
        first_id = await first.get_attribute("data-message-id")
        record = await stored(page, f"chatbot:{server.url}:demo:")
        conversation_id = record["cid"]
        assert conversation_id == frames.of("ack")[0]["conversation_id"]

        await page.reload()
        await ready(page)
        await open_widget(page)
        user = page.locator(f"{WIDGET} .msg[data-role=user]")
        await expect(user).to_have_text(["Which error codes can the WebSocket send?"])
        again = page.locator(FINAL)
        await expect(again).to_have_count(1)
        assert await again.get_attribute("data-message-id") == first_id
        hello = frames.sent_of("hello")[-1]
        assert hello["session_id"] == record["sid"]
        assert hello["resume"]["conversation_id"] == conversation_id

        await ask(page, "How do I configure an OpenAI endpoint?")
        await answer(page, 2)
        sends = frames.sent_of("message.send")
        assert sends[-1]["conversation_id"] == conversation_id
        assert (await stored(page, f"chatbot:{server.url}:demo:"))["cid"] == conversation_id
        async with server.http() as http:
            history = await http.get(
                f"/realtime/v1/conversations/{conversation_id}/messages",
                params={"session_id": record["sid"]},
            )
        roles = [m["role"] for m in history.json()["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        await expect(user).to_have_count(2)
        assert problems == []


EVIL = (
    '<script>window.__x=1</script><img src=x onerror="window.__y=1"> '
    "[a](javascript:alert(1)) and [b](JaVaScRiPt:window.__z=1) but [ok](https://example.com/ok)"
)


async def test_model_text_is_rendered_as_text_never_as_html(
    tmp_path: Path, context: BrowserContext, fake_llm: FakeOpenAI
) -> None:
    fake_llm.add(last_user("be evil"), [Text(EVIL)])
    settings = llm_settings(tmp_path, fake_llm, llm_read_timeout=5.0)
    async with run_server(settings) as server:
        # A page with no CSP: nothing but the widget stands between the model and the DOM.
        page = await shop_page(
            context, f'<script src="{server.url}/widget.js" data-bot="demo"></script>'
        )
        await page.goto(f"{SHOP}/")
        await ready(page)
        await open_widget(page)
        await ask(page, "be evil")
        final = await answer(page)
        text = await final.locator(".b").text_content()
        assert text is not None
        assert '<script>window.__x=1</script><img src=x onerror="window.__y=1">' in text
        assert "[a](javascript:alert(1))" in text
        assert await final.locator("script, img, [onerror]").count() == 0
        hrefs = await final.locator("a").evaluate_all("(links) => links.map((a) => a.href)")
        assert hrefs == ["https://example.com/ok"]
        await expect(final.locator("a")).to_have_attribute("rel", "noopener noreferrer")
        await page.wait_for_timeout(200)  # an <img onerror> would have fired by now
        assert await page.evaluate("[window.__x, window.__y, window.__z]") == [None] * 3


async def test_widget_is_under_15_kb_gzipped() -> None:
    body = (STATIC / "widget.js").read_bytes()
    assert len(gzip.compress(body, 9)) < 15 * 1024


async def test_chatbot_widget_element_connects_with_a_signed_context(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        async with server.admin() as admin:
            minted = await admin.post(
                "/admin/v1/tenants/default/envelopes",
                json={"user": "u-1", "channel": "demo", "g": "Hello again, u-1."},
            )
        assert minted.status_code == 201, minted.text
        token = minted.json()["signed_context"]
        # As the Laravel package's pages have it: the element, then the script as a module.
        page = await shop_page(
            context,
            f'<main><chatbot-widget channel="demo" position="inline" signed-context="{token}">'
            f'</chatbot-widget></main><script type="module" src="{server.url}/chatbot/widget.js">'
            "</script>",
        )
        problems = watch(page)
        frames = record_frames(page)
        await page.goto(f"{SHOP}/account")
        await ready(page)
        await expect(page.locator(WIDGET)).to_have_count(1)
        await expect(page.locator(LAUNCHER)).to_have_count(0)  # inline: no launcher
        await expect(page.locator(INPUT)).to_be_visible()
        hello = frames.sent_of("hello")[0]
        assert (hello["signed_context"], hello["bot"]) == (token, "demo")
        assert frames.of("welcome")[0]["session"] == {"kind": "user", "id": "u-1"}
        await expect(page.locator(f"{WIDGET} [data-role=welcome]")).to_have_text(
            "Hello again, u-1."
        )

        await ask(page, "How do I resume after a disconnect?")
        final = await answer(page)
        assert await final.locator(".b").inner_text()
        conversation_id = frames.of("ack")[0]["conversation_id"]
        async with server.http() as http:
            mine = await http.get(
                f"/realtime/v1/conversations/{conversation_id}/messages",
                params={"signed_context": token},
            )
            another = await http.get(
                f"/realtime/v1/conversations/{conversation_id}/messages",
                params={"session_id": hello["session_id"]},
            )
        assert mine.status_code == 200 and len(mine.json()["messages"]) == 2
        assert another.status_code == 404, "the conversation is u-1's, not the session's"
        assert problems == []


async def test_keyboard_opens_uses_and_closes_the_widget(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        page = await context.new_page()
        problems = watch(page)
        await page.goto(server.url + "/")
        await ready(page)
        launcher = page.locator(LAUNCHER)
        await expect(launcher).to_have_attribute("aria-label", "Open chat")
        await expect(launcher).to_have_attribute("aria-expanded", "false")
        for _ in range(40):  # Tab through the page until the launcher has the focus
            await page.keyboard.press("Tab")
            if await launcher.evaluate("(el) => el.getRootNode().activeElement === el"):
                break
        else:
            pytest.fail("Tab never reached the launcher")

        await page.keyboard.press("Enter")
        panel = page.locator(f"{WIDGET} [part=panel]")
        await expect(panel).to_be_visible()
        await expect(page.locator(INPUT)).to_be_focused()
        await expect(launcher).to_have_attribute("aria-expanded", "true")
        for control in ("Close chat", "Send message", "Your message"):
            await expect(page.locator(f"{WIDGET} [aria-label='{control}']").first).to_be_attached()

        await page.keyboard.type("How do I run several nodes?")
        await page.keyboard.press("Enter")
        final = await answer(page)
        live = page.locator(f"{WIDGET} [aria-live=polite]")
        content = await final.locator(".b").inner_text()
        await expect(live).to_contain_text(content.split()[0])
        await expect(page.locator(INPUT)).to_have_value("")

        await page.keyboard.press("Escape")
        await expect(panel).to_be_hidden()
        assert await launcher.evaluate("(el) => el.getRootNode().activeElement === el")
        await expect(launcher).to_have_attribute("aria-expanded", "false")
        await page.keyboard.press("Space")
        await expect(panel).to_be_visible()
        await expect(page.locator(INPUT)).to_be_focused()
        assert problems == []


PASSWORD = "correct horse"
LOGO = (  # a 1x1 PNG: the demo page's CSP allows data: images
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(int(100 * UNIT)):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never: {what}")


async def console_frame(agent: Client, kind: str, **match: Any) -> dict[str, Any]:
    while True:
        frame = await agent.recv()
        if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
            return frame


async def test_feedback_handoff_contact_form_and_typing(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        async with server.admin() as admin:
            patched = await admin.patch(
                "/admin/v1/tenants/default/bots/demo",
                json={
                    "handoff_enabled": True,
                    "handoff_trigger": "button",
                    "handoff_offline_message": "Nobody is at the desk right now.",
                    "contact_form_enabled": True,
                    "contact_form_success_message": "Thanks, we will write to you.",
                    "widget_settings": {
                        "color": "#b3261e",
                        "position": "left",
                        "title": "Help desk",
                        "logo": LOGO,
                    },
                },
            )
            assert patched.status_code == 200, patched.text
            agent = {"name": "Alice Doe", "email": "alice@example.com", "password": PASSWORD}
            created = await admin.post("/admin/v1/tenants/default/agents", json=agent)
            assert created.status_code == 201, created.text
        page = await context.new_page()
        problems = watch(page)
        frames = record_frames(page)
        await page.goto(server.url + "/")
        await ready(page)
        await open_widget(page)
        # The bot's look: its colour, side, title and logo.
        await expect(page.locator(WIDGET)).to_have_attribute("data-position", "left")
        await expect(page.locator(f"{WIDGET} header h2")).to_have_text("Help desk")
        await expect(page.locator(f"{WIDGET} header img")).to_have_attribute("src", LOGO)
        background = await page.locator(LAUNCHER).evaluate(
            "(el) => getComputedStyle(el).backgroundColor"
        )
        assert background == "rgb(179, 38, 30)"
        box = await page.locator(LAUNCHER).bounding_box()
        assert box is not None and box["x"] < 100
        human = page.locator(f"{WIDGET} button", has_text="Talk to a human")
        await expect(human).to_be_visible()  # from the start: a request starts a conversation
        contact = page.locator(f"{WIDGET} button", has_text="Leave your contact details")
        await expect(contact).to_be_hidden()  # 'after_response' (the default): not yet
        await ask(page, "How do I resume after a disconnect?")
        first = await answer(page)
        await expect(contact).to_be_visible()

        # A thumbs up on the answer, acknowledged by the server (an error would undo it).
        helpful = first.get_by_role("button", name="Helpful", exact=True)
        await helpful.click()
        await expect(helpful).to_have_attribute("aria-pressed", "true")
        vote = frames.sent_of("feedback")[-1]
        assert (vote["message_id"], vote["value"]) == (
            await first.get_attribute("data-message-id"),
            "positive",
        )
        await eventually(
            lambda: any(f.get("id") == vote["id"] for f in frames.of("ack")), "feedback ack"
        )
        await expect(helpful).to_have_attribute("aria-pressed", "true")

        # Nobody is online: the offline message, the queue, and the contact form.
        await human.click()
        banner = page.locator(f"{WIDGET} .banner")
        await expect(banner).to_contain_text("Nobody is at the desk right now.")
        await expect(banner).to_contain_text("number 1 in the queue")
        await expect(human).to_be_hidden()
        form = page.locator(f"{WIDGET} form.contact")
        await expect(form).to_be_visible()
        email = form.locator("input[name=email]")
        await form.locator("input[name=name]").fill("Ann Lee")
        await email.fill("ann@example")  # the browser lets it through, the server does not
        await form.get_by_role("button", name="Send").click()
        await expect(email).to_have_attribute("aria-invalid", "true")
        await expect(form.get_by_role("alert")).to_contain_text("email")
        await email.fill("ann@example.com")
        await form.get_by_role("button", name="Send").click()
        await expect(form).to_have_count(0)
        await expect(page.locator(f"{WIDGET} .note").last).to_have_text(
            "Thanks, we will write to you."
        )
        submitted = frames.sent_of("contact.submit")[-1]["fields"]
        assert submitted == {"name": "Ann Lee", "email": "ann@example.com", "message": ""}

        # A person claims it: their name, their typing, their messages; and the visitor's typing.
        cid = frames.of("ack")[0]["conversation_id"]
        async with ws_client(server, path="/ws/console") as alice:
            await alice.send(
                type="hello", id="h", tenant="default", email=agent["email"], password=PASSWORD
            )
            assert (await alice.recv())["type"] == "welcome"
            await alice.send(type="conversation.claim", id="claim", conversation_id=cid)
            assert (await console_frame(alice, "ack", id="claim"))["conversation_id"] == cid
            await expect(banner).to_have_text("You are chatting with Alice.")
            await alice.send(type="typing", conversation_id=cid, on=True)
            typing = page.locator(f"{WIDGET} .typing")
            await expect(typing).to_have_text("Alice is typing…")
            await alice.send(
                type="conversation.send", id="s", conversation_id=cid, content="Hi, I'm **Alice**."
            )
            said = page.locator(f"{WIDGET} .msg[data-role=agent]")
            await expect(said.locator(".b")).to_have_text("Hi, I'm Alice.")
            await expect(said.locator(".who")).to_have_text("Alice")
            await expect(typing).to_be_hidden()
            await expect(page.locator(f"{WIDGET} [aria-live=polite]")).to_contain_text("Alice:")

            await page.locator(INPUT).press_sequentially("Thank you")
            on = await console_frame(alice, "typing", who="visitor")
            assert on["on"] is True
            await page.locator(INPUT).press("Enter")
            off = await console_frame(alice, "typing", who="visitor")
            assert off["on"] is False
            created = await console_frame(alice, "message.created")
            assert (created["message"]["role"], created["message"]["content"]) == (
                "user",
                "Thank you",
            )
            await page.screenshot(path=screenshot_path("widget-handoff"))
        assert problems == []


async def test_a_visitor_asks_for_a_person_before_writing_anything(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        await setup_desk(server, trigger="button")
        async with console(server, "alice") as alice:
            await alice.send(type="queue.subscribe", id="q")
            assert (await console_frame(alice, "ack", id="q"))["queue"] == []
            page = await context.new_page()
            problems = watch(page)
            await events_before_acks(page, server.ws_url)
            frames = record_frames(page)
            await page.goto(server.url + "/")
            await ready(page)
            await open_widget(page)
            human = page.locator(f"{WIDGET} button", has_text="Talk to a human")
            await expect(human).to_be_visible()
            await human.click()

            # The server started a conversation for the request; it waits in the queue.
            banner = page.locator(f"{WIDGET} .banner")
            await expect(banner).to_contain_text("Waiting for a person from our team…")
            await expect(banner).to_contain_text("number 1 in the queue")
            await expect(human).to_be_hidden()
            added = await console_frame(alice, "queue.added")
            cid = added["item"]["conversation"]["id"]
            request = frames.sent_of("handoff.request")[0]
            assert "conversation_id" not in request
            ack = next(f for f in frames.of("ack") if f.get("id") == request["id"])
            assert (ack["conversation_id"], ack["queued"]) == (cid, True)
            # Its events came first (as the server sends them, or as the relay holds the ack
            # back): the widget kept them until the ack named the conversation.
            kinds = frames.types()
            assert kinds.index("handoff.requested") < frames.received.index(ack)
            assert (await stored(page, f"chatbot:{server.url}:demo:"))["cid"] == cid

            # Alice claims it and writes: the visitor sees her label and her message.
            await alice.send(type="conversation.claim", id="claim", conversation_id=cid)
            assert (await console_frame(alice, "ack", id="claim"))["conversation_id"] == cid
            await expect(banner).to_have_text("You are chatting with Alice.")
            await alice.send(
                type="conversation.send", id="s", conversation_id=cid, content="Hi, I'm *Alice*."
            )
            said = page.locator(f"{WIDGET} .msg[data-role=agent]")
            await expect(said.locator(".who")).to_have_text("Alice")
            await expect(said.locator(".b")).to_have_text("Hi, I'm Alice.")
            await expect(said.locator(".b em")).to_have_text("Alice")

            # The visitor's answer goes to that conversation, to Alice (the bot stays silent).
            await ask(page, "Hello Alice, where is my parcel?")
            created = await console_frame(alice, "message.created", conversation_id=cid)
            while created["message"]["role"] != "user":
                created = await console_frame(alice, "message.created", conversation_id=cid)
            assert created["message"]["content"] == "Hello Alice, where is my parcel?"
            await eventually(lambda: bool(frames.sent_of("message.send")), "message.send seen")
            assert frames.sent_of("message.send")[0]["conversation_id"] == cid
            await page.screenshot(path=screenshot_path("widget-handoff-first"))
            assert "run.started" not in frames.types()
        assert problems == []
        assert await csp_reports(page) == []


async def test_contact_form_before_any_message_shows_the_field_error(
    tmp_path: Path, context: BrowserContext
) -> None:
    async with run_server(make_settings(tmp_path)) as server:
        async with server.admin() as admin:
            patched = await admin.patch(
                "/admin/v1/tenants/default/bots/demo",
                json={
                    "contact_form_enabled": True,
                    "contact_form_button_display": "always",
                    "contact_form_success_message": "Thanks, we will write to you.",
                },
            )
            assert patched.status_code == 200, patched.text
        page = await context.new_page()
        problems = watch(page)
        await events_before_acks(page, server.ws_url)
        frames = record_frames(page)
        await page.goto(server.url + "/")
        await ready(page)
        await open_widget(page)
        await expect(page.locator(f"{WIDGET} button", has_text="Talk to a human")).to_be_hidden()
        button = page.locator(f"{WIDGET} button", has_text="Leave your contact details")
        await expect(button).to_be_visible()  # 'always': before any message
        await button.click()
        form = page.locator(f"{WIDGET} form.contact")
        await expect(button).to_be_hidden()
        name, email = form.locator("input[name=name]"), form.locator("input[name=email]")
        await expect(name).to_be_focused()
        await name.fill("Ann Lee")
        await email.fill("ann@example")  # the browser lets it through, the server does not
        await form.get_by_role("button", name="Send").click()

        # The error names its field: it shows under that field, which gets the focus.
        await expect(email).to_have_attribute("aria-invalid", "true")
        await expect(email).to_be_focused()
        error = frames.of("error")[-1]
        assert (error["code"], error["field"]) == ("invalid_field", "email")
        described = await email.get_attribute("aria-describedby")
        assert described and await email.evaluate("(el) => el.nextElementSibling.id") == described
        await expect(form.locator(f"#{described}")).to_have_text(error["message"])
        await expect(name).not_to_have_attribute("aria-invalid", "true")
        await expect(form.locator(f"#{await name.get_attribute('aria-describedby')}")).to_be_empty()
        await expect(form.get_by_role("alert")).to_have_count(1)  # that one, announced
        await page.screenshot(path=screenshot_path("widget-contact-error"))
        assert "conversation_id" not in frames.sent_of("contact.submit")[0]
        assert (await stored(page, f"chatbot:{server.url}:demo:"))["cid"] is None

        await email.fill("ann@example.com")  # typing clears the field's error
        await expect(email).not_to_have_attribute("aria-invalid", "true")
        await expect(form.locator(f"#{described}")).to_be_empty()
        await form.get_by_role("button", name="Send").click()
        await expect(form).to_have_count(0)
        await expect(page.locator(f"{WIDGET} .note").last).to_have_text(
            "Thanks, we will write to you."
        )
        await expect(button).to_be_hidden()  # once is enough
        sent = frames.sent_of("contact.submit")
        assert len(sent) == 2 and "conversation_id" not in sent[1]
        assert sent[1]["fields"] == {"name": "Ann Lee", "email": "ann@example.com", "message": ""}
        ack = next(f for f in frames.of("ack") if f.get("id") == sent[1]["id"])
        cid = ack["conversation_id"]
        assert ack["visitor"] == {"name": "Ann Lee", "email": "ann@example.com"}
        assert [f["conversation_id"] for f in frames.of("lead.captured")] == [cid]
        assert frames.types().index("lead.captured") < frames.received.index(ack)
        assert (await stored(page, f"chatbot:{server.url}:demo:"))["cid"] == cid

        # The conversation the form started is the visitor's: a message continues it.
        await ask(page, "How do I resume after a disconnect?")
        await answer(page)
        assert frames.sent_of("message.send")[0]["conversation_id"] == cid
        assert problems == []
        assert await csp_reports(page) == []
