"""Small HTTP routes: health, readiness, metrics, history reload and the demo docs.

Errors of our own API are ``{"error": {"code": ..., "message": ...}}`` with the status of
the error's class (``realtime.errors``); :func:`error_response` is the one place that
writes them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from realtime.engine import Engine
from realtime.errors import (
    AuthError,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    RealtimeError,
)
from realtime.protocol import check_shape

VERSION = "0.1.0"


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: RealtimeError) -> JSON:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return JSON({"error": exc.to_dict()}, status_code=exc.status, headers=headers)


def bearer(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``x-api-key``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def health(request: Request) -> Response:
    """Liveness: 200 while the process serves; ``broker`` says whether Redis is reachable."""
    engine: Engine = request.app.state.engine
    return JSON(
        {
            "status": "ok",
            "version": VERSION,
            "node": engine.node_id,
            "uptime_seconds": round(time.monotonic() - request.app.state.started, 1),
            "runs_active": engine.runs.busy(),
            "broker": "ok" if engine.broker.healthy() else "degraded",
        }
    )


async def ready(request: Request) -> Response:
    """Readiness: 200 ``ready``; 200 ``degraded`` while Redis is away (the node keeps its
    sockets and what needs no Redis, and every node shares that Redis: taking them all out
    of the load balancer would only turn a Redis blip into an outage); 503 ``unavailable``
    when the store does not answer."""
    engine: Engine = request.app.state.engine
    checks: dict[str, str] = {}
    try:
        await engine.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # readiness reports, it does not crash
        checks["store"] = f"error: {type(exc).__name__}"
    checks["broker"] = "ok" if engine.broker.healthy() else "degraded"
    if checks["store"] != "ok":
        status, code = "unavailable", 503
    elif checks["broker"] != "ok":
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return JSON({"status": status, "checks": checks}, status_code=code)


async def metrics(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def conversation_messages(request: Request) -> Response:
    """``GET /realtime/v1/conversations/{id}/messages``: history and the resume cursor.

    Authenticated like ``hello``: ``?session_id=`` for public bots, an API key
    (``Authorization: Bearer`` / ``x-api-key``) with ``?user=``, or ``?signed_context=``.
    """
    engine: Engine = request.app.state.engine
    conversation_id = request.path_params["conversation_id"]
    params = request.query_params
    origin = request.headers.get("origin")
    try:
        key = bearer(request)
        signed_context = params.get("signed_context")
        if key is None and not params.get("session_id") and not signed_context:
            raise ProtocolError(
                "missing_field", "'session_id', 'signed_context' or an API key is required"
            )
        session = await engine.session_for_conversation(
            conversation_id,
            session_id=params.get("session_id"),
            api_key=key,
            user=params.get("user"),
            signed_context=signed_context or None,
            origin=origin,
        )
        history = await engine.history(session, conversation_id)
    except RealtimeError as exc:
        return error_response(exc)
    return JSON(history.to_wire(), headers=cors_headers(origin))


async def conversation_messages_preflight(request: Request) -> Response:
    """CORS preflight of the history read: the same answer for every conversation id, known
    or not (a preflight carries no credentials, so a different answer would tell anyone
    which ids exist). The read itself checks the origin against the bot's list: a page of
    another site gets 403 there, without CORS headers, so it reads nothing."""
    origin = request.headers.get("origin")
    return Response(status_code=204, headers={**cors_headers(origin), **CORS_PREFLIGHT})


CORS_PREFLIGHT = {
    "access-control-allow-methods": "GET, OPTIONS",
    "access-control-allow-headers": "authorization, x-api-key",
    "access-control-max-age": "600",
}


def cors_headers(origin: str | None) -> dict[str, str]:
    """For a browser whose origin was allowed: it may read the answer (never credentials:
    this API authenticates with ids and keys, not cookies)."""
    if origin is None:
        return {}
    return {"access-control-allow-origin": origin, "vary": "Origin"}


async def docs(request: Request) -> Response:
    """The demo bot's documents, so its citation links resolve."""
    engine: Engine = request.app.state.engine
    name = request.path_params["name"]
    path = next((p for p in engine.settings.demo_paths if p.name == name), None)
    if path is None:
        return error_response(NotFound("not_found", "no such document"))
    return PlainTextResponse(
        path.read_text(encoding="utf-8"), media_type="text/markdown; charset=utf-8"
    )


async def agent_login(request: Request) -> Response:
    """``POST /realtime/v1/agents/login`` ``{"tenant","email","password"}`` → a console token."""
    engine: Engine = request.app.state.engine
    try:
        body = await json_body(request)
        tenant, email, password = (body.get(name) for name in ("tenant", "email", "password"))
        if not (isinstance(tenant, str) and isinstance(email, str) and isinstance(password, str)):
            raise ProtocolError("missing_field", "'tenant', 'email' and 'password' are required")
        agent = await engine.agent_login(tenant, email, password)
        token, expires_at = await engine.issue_agent_token(agent)
    except RealtimeError as exc:
        return error_response(exc)
    return JSON({"token": token, "expires_at": expires_at, "agent": agent.to_wire()})


async def agent_logout(request: Request) -> Response:
    """``POST /realtime/v1/agents/logout`` with ``Authorization: Bearer <console token>``:
    the token stops working (204); an unknown one is 401."""
    engine: Engine = request.app.state.engine
    token = bearer(request)
    if token is None or not await engine.store.handoff.revoke_agent_token(token):
        return error_response(AuthError("unauthorized", "unknown or expired token"))
    return Response(status_code=204)


async def json_body(request: Request, limit: int = 4 * 1024 * 1024) -> dict[str, Any]:
    """The request's JSON object; ``invalid_json``, ``json_too_complex`` or
    ``body_too_large`` (413, read no further than the limit) otherwise."""
    too_large = PayloadTooLarge("body_too_large", f"request bodies are limited to {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_json", "the body must be a JSON object")
    check_shape(data)
    return data
