"""Test support: a real server on a free port, and a small WebSocket client.

Timeouts are multiples of :data:`UNIT` seconds, scaled by ``REALTIME_TEST_TIME_SCALE`` so a
slow CI machine does not flake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import ClientConnection, connect

from realtime.config import Settings
from realtime.data.demo_shop import demo_shop_schema, demo_shop_url
from realtime.server import create_app
from realtime.store import async_url

UNIT = float(os.environ.get("REALTIME_TEST_TIME_SCALE", "1"))
REPO = Path(__file__).resolve().parent.parent
ADMIN_KEY = "rta_test_admin_key"
REDIS_URL = "redis://127.0.0.1:6379/0"  # the machine's Redis; tests use a prefix of their own
TERMINAL = ("run.completed", "run.failed", "run.cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Test settings: the offline responder and a SQLite store under ``tmp_path``, unless
    ``database_url`` says otherwise (the ``database_url`` fixture gives each backend)."""
    base = Settings(
        database_url=f"sqlite:///{tmp_path / 'realtime.db'}",
        admin_key=ADMIN_KEY,
        demo_docs=os.pathsep.join((str(REPO / "docs"), str(REPO / "README.md"))),
        provider="offline",
        llm_max_retries=0,
        drain_timeout=2.0,
    )
    return replace(base, **overrides)


def llm_settings(tmp_path: Path, fake: Any, **overrides: Any) -> Settings:
    """Settings whose LLM is the fake OpenAI server ``fake``."""
    return make_settings(
        tmp_path,
        provider="openai",
        openai_base_url=fake.base_url,
        openai_api_key="sk-test",
        **overrides,
    )


async def demo_shop_rows(settings: Settings, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (with ``:name`` parameters) on the demo shop of the server with
    ``settings``: its SQLite file, or its schema of the PostgreSQL store."""
    url = demo_shop_url(settings.database_url)
    assert url is not None, settings.database_url
    schema = demo_shop_schema(url)
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            if schema is not None:
                await conn.execute(sa.text(f'SET search_path TO "{schema}"'))
            return [tuple(row) for row in await conn.execute(sa.text(sql), params)]
    finally:
        await engine.dispose()


@dataclass
class RunningServer:
    settings: Settings
    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def app(self) -> Any:
        return self.server.config.loaded_app

    @property
    def engine(self) -> Any:
        return self.server.config.app.state.engine

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10 * UNIT)

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            timeout=10 * UNIT,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30 * UNIT)


@contextlib.asynccontextmanager
async def run_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """Start the real app under uvicorn on a free port in this event loop."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_size,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during startup")
        await asyncio.sleep(0.01)
    running = RunningServer(settings, port, server, task)
    try:
        yield running
    finally:
        if not task.done():
            await running.stop()


class Client:
    """A visitor over a real WebSocket: JSON in, JSON out, with bounded waits."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, **frame: Any) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, wait: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), wait * UNIT)
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def recv_until(self, *types: str, wait: float = 10.0) -> list[dict[str, Any]]:
        """Frames up to and including the first whose type is one of ``types``."""
        frames = []
        while True:
            frame = await self.recv(wait)
            frames.append(frame)
            if frame["type"] in types:
                return frames

    async def hello(
        self, bot: str = "demo", session_id: str = "s-1", **extra: Any
    ) -> dict[str, Any]:
        await self.send(type="hello", bot=bot, session_id=session_id, id="hello", **extra)
        frame = await self.recv()
        assert frame["type"] == "welcome", frame
        return frame

    async def ask(self, content: str, **extra: Any) -> list[dict[str, Any]]:
        """Send a message and read every frame up to the end of its run."""
        await self.send(type="message.send", content=content, **extra)
        return await self.recv_until(*TERMINAL)

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def ws_client(
    server: RunningServer, path: str = "/ws", **kwargs: Any
) -> AsyncIterator[Client]:
    url = f"ws://127.0.0.1:{server.port}{path}"
    # Unbounded client buffer: a test that leaves frames unread must still close at once
    # (with a full buffer the client stops reading and waits 10 s for the close frame).
    kwargs.setdefault("max_queue", None)
    async with connect(url, open_timeout=5 * UNIT, **kwargs) as ws:
        yield Client(ws)


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["delta"] for f in frames if f["type"] == "run.token")


def only(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]
