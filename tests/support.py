"""Test support: a real server on a free port, and a small WebSocket client.

Timeouts are multiples of :data:`UNIT` seconds, scaled by ``REALTIME_TEST_TIME_SCALE`` so a
slow CI machine does not flake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
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


# Databases of the postgresql+redis backend -> the Redis key prefix of their servers.
THROUGH_REDIS: dict[str, str] = {}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Test settings: the offline responder and a SQLite store under ``tmp_path``, unless
    ``database_url`` says otherwise (the ``database_url`` fixture gives each backend; on
    ``postgresql+redis`` the settings name the Redis broker too, unless a test chose)."""
    prefix = THROUGH_REDIS.get(overrides.get("database_url", ""))
    if prefix is not None and "redis_url" not in overrides:
        overrides = {"redis_url": REDIS_URL, "redis_prefix": prefix, **overrides}
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


class RedisServer:
    """A ``redis-server`` of one test's own on a free port, keeping nothing on disk, as in
    production: :meth:`kill` then :meth:`start` is a restart that forgets everything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        assert self.process is None, "already running"
        self.process = await asyncio.create_subprocess_exec(
            *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = asyncio.get_running_loop().time() + 10 * UNIT
        while not await self.answers():
            exited = self.process.returncode is not None
            if exited or asyncio.get_running_loop().time() > deadline:
                await self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            await asyncio.sleep(0.02)

    async def answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return await asyncio.wait_for(reader.readline(), 1) == b"+PONG\r\n"
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def kill(self) -> None:
        """``kill -9``: gone at once, with everything it held."""
        if self.process is not None:
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
            self.process = None


class TcpProxy:
    """A TCP link to ``127.0.0.1:target`` that a test can cut: :meth:`cut` resets every
    connection through it and refuses new ones until :meth:`mend` (a network outage; what
    is behind it keeps its data)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._links -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in tuple(self._links):
            link.transport.abort()

    async def mend(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
