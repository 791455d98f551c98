#!/usr/bin/env python3
"""Baseline for bench/relay_ws.py: the relay a user would write by hand.

A plain Starlette app with one WebSocket endpoint, ``/ws``, that speaks the smallest useful
subset of the realtime protocol (docs/protocol.md):

- ``{"type": "hello", ...}`` is answered with ``{"type": "welcome"}``;
- ``{"type": "message.send", "content": ...}`` calls the OpenAI chat-completions API with
  ``stream=True`` and relays each chunk's ``choices[0].delta.content`` as
  ``{"type": "run.token", "delta": ...}``, then sends
  ``{"type": "run.completed", "message": {"content": ...}}`` (or ``run.failed`` on an error).

No storage, no retrieval, no resume, no coalescing. ``GET /ready`` answers 200 once the app
has started. Run with uvicorn (uvloop, httptools)::

    OPENAI_BASE_URL=http://127.0.0.1:8001/v1 OPENAI_API_KEY=sk-bench \\
        python bench/baseline_starlette.py --port 8100
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator

import httpx2
import openai
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def create_app(base_url: str | None, api_key: str, model: str) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The default pool allows 1000 connections; 1000+ concurrent streams need more.
        app.state.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            http_client=openai.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=4096, max_keepalive_connections=256)
            ),
        )
        try:
            yield
        finally:
            await app.state.client.close()

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ready")

    async def ws_endpoint(websocket: WebSocket) -> None:
        client: openai.AsyncOpenAI = websocket.app.state.client
        await websocket.accept()
        try:
            while True:
                frame = await websocket.receive_json()
                kind = frame.get("type") if isinstance(frame, dict) else None
                if kind == "hello":
                    await websocket.send_json({"type": "welcome"})
                elif kind == "message.send":
                    await relay(websocket, client, model, str(frame.get("content", "")))
                elif kind == "ping":
                    await websocket.send_json({"type": "pong"})
                else:
                    await websocket.send_json({"type": "error", "code": "unknown_type"})
        except WebSocketDisconnect:
            pass

    return Starlette(
        routes=[Route("/ready", ready), WebSocketRoute("/ws", ws_endpoint)], lifespan=lifespan
    )


async def relay(websocket: WebSocket, client: openai.AsyncOpenAI, model: str, content: str) -> None:
    parts: list[str] = []
    try:
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], stream=True
        )
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta.content
            if delta:
                parts.append(delta)
                await websocket.send_json({"type": "run.token", "delta": delta})
    except openai.OpenAIError as exc:
        await websocket.send_json(
            {"type": "run.failed", "code": "provider_error", "message": str(exc)}
        )
        return
    await websocket.send_json({"type": "run.completed", "message": {"content": "".join(parts)}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("BASELINE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BASELINE_PORT", "8100")))
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL"), help="(OPENAI_BASE_URL)"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("OPENAI_API_KEY", "sk-bench"), help="(OPENAI_API_KEY)"
    )
    parser.add_argument("--model", default=os.environ.get("BASELINE_MODEL", "gpt-4o-mini"))
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(
        create_app(args.base_url, args.api_key, args.model),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",  # the same WebSocket implementation as the realtime server
        lifespan="on",
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
