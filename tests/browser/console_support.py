"""Helpers of the agent console's browser tests: a help desk on the demo bot, a console page
in its own browser context, and a visitor over a real WebSocket (the widget is not needed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import httpx
import uvicorn
from playwright.async_api import Browser, Page, WebSocket, expect

from realtime.config import Settings
from realtime.server import create_app
from tests.browser.conftest import PageProblems, watch
from tests.support import ADMIN_KEY, UNIT, Client, free_port

PASSWORD = "correct horse"
WAIT_MS = 10_000 * UNIT  # these tests' Playwright waits, in milliseconds
DEFAULT_WAIT_MS = 5_000  # Playwright's own


@contextlib.contextmanager
def patient_expect() -> Iterator[None]:
    """``expect`` waits up to :data:`WAIT_MS` (then Playwright's default again: the setting
    is global, and other tests' own)."""
    expect.set_options(timeout=WAIT_MS)
    try:
        yield
    finally:
        expect.set_options(timeout=DEFAULT_WAIT_MS)


class ServerLike(Protocol):
    """What these helpers need of a server: a :class:`RunningServer` or a
    :class:`ServerOnPort`."""

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...

    def admin(self) -> httpx.AsyncClient: ...


async def setup_desk(server: ServerLike, **bot: Any) -> dict[str, dict[str, Any]]:
    """Hand-off on the demo bot (by the visitor's button unless ``bot`` says otherwise),
    and the agents alice and bob; returns them by name."""
    agents = {}
    async with server.admin() as admin:
        patched = await admin.patch(
            "/admin/v1/tenants/default/bots/demo",
            json={
                "handoff_enabled": True,
                "handoff_trigger": "button",
                "handoff_offline_message": "Nobody is here right now.",
                **bot,
            },
        )
        assert patched.status_code == 200, patched.text
        for name in ("alice", "bob"):
            created = await admin.post(
                "/admin/v1/tenants/default/agents",
                json={
                    "name": f"{name.title()} Doe",
                    "email": f"{name}@example.com",
                    "password": PASSWORD,
                },
            )
            assert created.status_code == 201, created.text
            agents[name] = created.json()
    return agents


class ConsolePage:
    """One agent's console: a page in a browser context of its own (its own sessionStorage),
    with the problems it reports (console errors, page errors, CSP violations) and the JSON
    frames of its WebSockets (``frames``: socket number, ``"sent"`` or ``"received"``, frame;
    a reload opens the next socket)."""

    def __init__(self, page: Page, problems: PageProblems, server: ServerLike) -> None:
        self.page = page
        self.problems = problems
        self.server = server
        self.frames: list[tuple[int, str, dict[str, Any]]] = []
        self._sockets = 0
        page.on("websocket", self._record)

    def _record(self, socket: WebSocket) -> None:
        number = self._sockets = self._sockets + 1

        def keep(direction: str, payload: str | bytes) -> None:
            try:
                frame = json.loads(payload)
            except ValueError:
                return
            if isinstance(frame, dict):
                self.frames.append((number, direction, frame))

        socket.on("framesent", lambda payload: keep("sent", payload))
        socket.on("framereceived", lambda payload: keep("received", payload))

    def watch_acks(self, cid: str) -> list[int]:
        """The ``history.last_seq`` of each ``ack`` of a ``conversation.watch`` of ``cid``."""
        return [int(ack["history"]["last_seq"]) for _, _, ack in self._watched(cid)]

    def watch_contexts(self, cid: str) -> list[dict[str, Any] | None]:
        """The ``context`` (the owner's handoff packet, or None) of each such ``ack``."""
        return [ack.get("context") for _, _, ack in self._watched(cid)]

    def received(self, kind: str, cid: str) -> list[dict[str, Any]]:
        """The frames of type ``kind`` about ``cid`` the page received, on any socket."""
        return [
            frame
            for _, direction, frame in self.frames
            if direction == "received"
            and frame.get("type") == kind
            and frame.get("conversation_id") == cid
        ]

    def replays(self, cid: str) -> list[dict[str, Any]]:
        """The ``subscribe`` frames of ``cid`` that asked for events again: an ``after_seq``
        below the ``last_seq`` of a watch's ``ack`` the console had on that socket."""
        acked: dict[int, int] = {}
        watched = {
            (socket, position): int(ack["history"]["last_seq"])
            for socket, position, ack in self._watched(cid)
        }
        found = []
        for position, (socket, direction, frame) in enumerate(self.frames):
            if (socket, position) in watched:
                acked[socket] = max(acked.get(socket, 0), watched[socket, position])
            elif (
                direction == "sent"
                and frame.get("type") == "subscribe"
                and frame.get("conversation_id") == cid
                and isinstance(frame.get("after_seq"), int)
                and socket in acked
                and frame["after_seq"] < acked[socket]
            ):
                found.append(frame)
        return found

    def _watched(self, cid: str) -> list[tuple[int, int, dict[str, Any]]]:
        """(socket, position in ``frames``, the ``ack``) of the acks of watches of ``cid``."""
        asked: set[tuple[int, Any]] = set()
        acks = []
        for position, (socket, direction, frame) in enumerate(self.frames):
            kind = frame.get("type")
            if direction == "sent":
                if kind == "conversation.watch" and frame.get("conversation_id") == cid:
                    asked.add((socket, frame.get("id")))
            elif kind == "ack" and (socket, frame.get("id")) in asked:
                acks.append((socket, position, frame))
        return acks

    async def sign_in(self, name: str, password: str = PASSWORD) -> None:
        page = self.page
        await page.get_by_label("Email").fill(f"{name}@example.com")
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Sign in").click()

    async def ready(self) -> None:
        await expect(self.page.locator("body")).to_have_attribute("data-state", "ready")

    def queue_item(self, cid: str) -> Any:
        return self.page.locator(f'#queue-list li[data-conversation-id="{cid}"]')

    def mine_item(self, cid: str) -> Any:
        return self.page.locator(f'#mine-list li[data-conversation-id="{cid}"]')

    def live_item(self, cid: str) -> Any:
        """``cid`` in the "Live bot conversations" list (the bot's, and the watched ones)."""
        return self.page.locator(f'#live-list li[data-conversation-id="{cid}"]')

    async def token(self) -> str:
        """The console token the page keeps (in its sessionStorage)."""
        saved = await self.page.evaluate("JSON.parse(sessionStorage.getItem('realtime.console'))")
        return str(saved["auth"]["token"])

    async def watch(self, cid: str) -> None:
        """Pick ``cid`` from the live list (it arrives with the list's next refresh)."""
        await self.live_item(cid).get_by_role("button").first.click()
        await expect(self.view).to_have_attribute("data-conversation-id", cid)
        await expect(self.live_item(cid)).to_have_class(re.compile(r"\bis-watched\b"))

    @property
    def view(self) -> Any:
        return self.page.locator(".conv-view")

    def messages(self, role: str) -> Any:
        return self.page.locator(f'.log li[data-role="{role}"]:not([data-pending])')

    async def claim(self, cid: str) -> None:
        await self.queue_item(cid).get_by_role("button", name="Claim").click()
        await expect(self.view).to_have_attribute("data-conversation-id", cid)
        await expect(self.view).to_have_attribute("data-status", "with_human")

    async def button(self, name: str) -> None:
        await self.view.get_by_role("button", name=name, exact=True).click()


@contextlib.asynccontextmanager
async def console_page(
    browser: Browser, server: ServerLike, name: str | None = None, *, url: str | None = None
) -> AsyncIterator[ConsolePage]:
    """``/console`` in a new browser context, signed in as ``name`` (if given); the context
    closes when the block ends, before the server stops. ``url``: the server's address as
    the browser reaches it (a proxy's), if not its own."""
    context = await browser.new_context(viewport={"width": 1280, "height": 820})
    try:
        page = await context.new_page()
        console = ConsolePage(page, watch(page), server)
        await page.goto(f"{url or server.url}/console")
        if name is not None:
            await console.sign_in(name)
            await console.ready()
        yield console
    finally:
        await context.close()


class Visitor:
    """A visitor of the demo bot over ``/ws``: replies by id, events by type, the frames it
    skipped on the way kept for later."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[dict[str, Any]] = []

    async def send(self, **frame: Any) -> None:
        await self.client.send(**frame)

    async def hello(self, session_id: str) -> None:
        await self.client.hello(session_id=session_id)

    async def reply(self, client_id: str) -> dict[str, Any]:
        while True:
            frame = await self.client.recv(10)
            if frame.get("id") == client_id and frame["type"] in ("ack", "error", "welcome"):
                return frame
            self.seen.append(frame)

    async def until(self, kind: str, wait: float = 10, **match: Any) -> dict[str, Any]:
        """The next frame of ``kind`` whose fields equal ``match`` (checking skipped ones)."""

        def fits(frame: dict[str, Any]) -> bool:
            return frame["type"] == kind and all(frame.get(k) == v for k, v in match.items())

        for i, frame in enumerate(self.seen):
            if fits(frame):
                return self.seen.pop(i)
        while True:
            frame = await self.client.recv(wait)
            if fits(frame):
                return frame
            self.seen.append(frame)

    async def message(self, role: str) -> dict[str, Any]:
        """The next stored message of ``role``."""
        while True:
            frame = await self.until("message.created")
            if frame["message"]["role"] == role:
                return frame["message"]  # type: ignore[no-any-return]

    async def start(self, text: str) -> str:
        """A new conversation the bot answered; its id."""
        await self.send(type="message.send", id="first", content=text)
        cid = (await self.reply("first"))["conversation_id"]
        await self.until("run.completed")
        return str(cid)

    async def say(self, cid: str, text: str, client_id: str) -> None:
        await self.send(type="message.send", id=client_id, content=text, conversation_id=cid)
        assert (await self.reply(client_id))["type"] == "ack"

    async def ask_for_a_person(self, cid: str, client_id: str = "handoff") -> None:
        await self.send(type="handoff.request", id=client_id, conversation_id=cid)
        answer = await self.reply(client_id)
        assert answer.get("queued") is True, answer


class ServerOnPort:
    """The app under uvicorn on a port of its own that it keeps across :meth:`stop` and
    :meth:`start` (a restart, where the console expects the server); enough of
    :class:`RunningServer` for these helpers (``port``, ``url``, ``admin()``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=10 * UNIT, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )

    async def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            log_level="warning",
            ws="websockets-sansio",
            ws_max_size=self.settings.ws_max_size,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._server, self._task = server, asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 30 * UNIT)
        self._server = self._task = None
