"""Helpers of the widget's browser tests: what a visitor does (open, ask), and what the tests
watch (the frames on the page's WebSockets, the answer's text while it streams, CSP reports).

The widget renders in an open shadow root; Playwright's CSS locators pierce it, so
``chatbot-widget textarea`` finds the widget's input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Locator, Page, WebSocket, WebSocketRoute, expect

from tests.support import UNIT

WIDGET = "chatbot-widget"
LAUNCHER = f"{WIDGET} button[part=launcher]"
INPUT = f"{WIDGET} textarea[part=input]"
ANSWERS = f"{WIDGET} .msg[data-role=assistant]"
# An answer that is over: stored (it has its id) and no longer streaming.
FINAL = f"{ANSWERS}[data-message-id]:not([data-streaming])"
WAIT_MS = 15_000 * UNIT

# Runs before the page's own scripts (Playwright injects it; the page's CSP does not apply).
CSP_PROBE = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`), true);
"""

# What an answer looked like at each DOM change: was it still streaming, and its text.
OBSERVE = """
() => {
  const root = document.querySelector('chatbot-widget').shadowRoot;
  const seen = (window.__seen = []);
  new MutationObserver(() => {
    for (const el of root.querySelectorAll('.msg[data-role=assistant]')) {
      seen.push({
        run: el.getAttribute('data-run-id'),
        streaming: el.hasAttribute('data-streaming'),
        text: el.querySelector('.b').textContent,
      });
    }
  }).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
}
"""


@dataclass
class Frames:
    """Every frame of every WebSocket the page opens, decoded, in order."""

    sockets: list[WebSocket] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def types(self) -> list[str]:
        return [f.get("type", "") for f in self.received]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.received if f.get("type") == kind]

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == kind]


def record_frames(page: Page) -> Frames:
    frames = Frames()

    def decode(payload: str | bytes) -> dict[str, Any]:
        value = json.loads(payload)
        return value if isinstance(value, dict) else {"type": "<not an object>"}

    def on_socket(ws: WebSocket) -> None:
        frames.sockets.append(ws)
        ws.on("framereceived", lambda payload: frames.received.append(decode(payload)))
        ws.on("framesent", lambda payload: frames.sent.append(decode(payload)))

    page.on("websocket", on_socket)
    return frames


async def ready(page: Page) -> None:
    await expect(page.locator(WIDGET)).to_have_attribute("data-state", "ready", timeout=WAIT_MS)


async def open_widget(page: Page) -> None:
    await page.locator(LAUNCHER).click()
    await expect(page.locator(INPUT)).to_be_focused()


async def ask(page: Page, question: str) -> None:
    await page.locator(INPUT).fill(question)
    await page.locator(INPUT).press("Enter")


async def answer(page: Page, n: int = 1) -> Locator:
    """The ``n``-th answer (from 1), once it is over."""
    answers = page.locator(FINAL)
    await expect(answers).to_have_count(n, timeout=WAIT_MS)
    return answers.nth(n - 1)


async def observe(page: Page) -> None:
    await page.evaluate(OBSERVE)


async def observed(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("window.__seen")  # type: ignore[no-any-return]


async def csp_reports(page: Page) -> list[str]:
    return await page.evaluate("window.__csp")  # type: ignore[no-any-return]


async def stored(page: Page, key: str) -> dict[str, Any]:
    """The widget's localStorage record ``key`` (session id, conversation id)."""
    raw = await page.evaluate("(key) => localStorage.getItem(key)", key)
    assert raw, f"nothing stored under {key!r}"
    return json.loads(raw)  # type: ignore[no-any-return]


def last_user(text: str) -> Any:
    """A fake-model rule for requests whose latest user message is ``text``."""

    def match(body: dict[str, Any]) -> bool:
        users = [m for m in body["messages"] if m["role"] == "user"]
        return bool(users) and users[-1]["content"] == text

    return match


def page_with(body: str) -> str:
    """A bare HTML page (of another site) around ``body``."""
    head = '<meta charset="utf-8"><title>Shop</title>'
    return f'<!doctype html><html lang="en"><head>{head}</head><body>{body}</body></html>'


# Commands that start a conversation when they name none; their ack names it.
STARTERS = ("handoff.request", "contact.submit")


async def events_before_acks(page: Page, url: str) -> None:
    """Route the page's sockets to ``url`` through a relay that makes an order the server
    may use (and does, today) the one the page gets: the ack of a command that started a
    conversation comes after that conversation's first event."""

    def relay(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        starting: set[Any] = set()
        followed: set[str] = set()  # conversations whose events already went to the page
        held: dict[str, str | bytes] = {}  # conversation id -> its ack, waiting

        def up(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") in STARTERS and "conversation_id" not in frame:
                starting.add(frame.get("id"))
            server.send(message)

        def down(message: str | bytes) -> None:
            frame = json.loads(message)
            cid = frame.get("conversation_id")
            if frame.get("type") == "ack" and frame.get("id") in starting and cid:
                starting.discard(frame["id"])
                if cid not in followed:
                    held[cid] = message
                    return
            ws.send(message)
            if "seq" in frame and cid:
                followed.add(cid)
                if cid in held:
                    ws.send(held.pop(cid))

        ws.on_message(up)
        server.on_message(down)

    await page.route_web_socket(url, relay)
