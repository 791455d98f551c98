"""The admin HTTP API under ``/admin/v1`` (``Authorization: Bearer <admin key>``, JSON).

Thin: each route reads its JSON, calls :class:`realtime.admin.Admin`, and writes the
result; errors come back as ``{"error": {"code", "message"}}`` with their status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime.admin import Admin
from realtime.errors import RealtimeError
from realtime.transport.http import JSON, bearer, error_response, json_body

Handler = Callable[[Admin, Request, dict[str, Any]], Awaitable[Response]]


def _route(handler: Handler, *, body: bool = False) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        admin: Admin = request.app.state.admin
        try:
            await admin.check_admin_key(bearer(request))
            data: dict[str, Any] = {}
            if body:
                data = await json_body(request)
            return await handler(admin, request, data)
        except RealtimeError as exc:
            return error_response(exc)

    return endpoint


async def create_tenant(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    tenant = await admin.create_tenant(body)
    return JSON({"id": tenant.id, "name": tenant.name}, status_code=201)


async def create_key(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    key, raw = await admin.create_key(request.path_params["tenant"], body)
    return JSON({**key.to_wire(), "key": raw}, status_code=201)


async def create_bot(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    bot = await admin.create_bot(request.path_params["tenant"], body)
    return JSON(admin.bot_wire(bot), status_code=201)


async def list_bots(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    tenant = await admin.tenant(request.path_params["tenant"])
    bots = await admin.store.list_bots(tenant.id)
    return JSON({"bots": [admin.bot_wire(b) for b in bots]})


async def get_bot(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    bot = await admin.bot(request.path_params["tenant"], request.path_params["bot_id"])
    return JSON(admin.bot_wire(bot))


async def update_bot(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    p = request.path_params
    return JSON(admin.bot_wire(await admin.update_bot(p["tenant"], p["bot_id"], body)))


async def delete_bot(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    await admin.delete_bot(request.path_params["tenant"], request.path_params["bot_id"])
    return Response(status_code=204)


async def add_source(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    p = request.path_params
    source = await admin.add_source(p["tenant"], p["bot_id"], body)
    return JSON(source.to_wire(), status_code=201)


async def list_sources(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    p = request.path_params
    sources = await admin.list_sources(p["tenant"], p["bot_id"])
    return JSON({"sources": [s.to_wire() for s in sources]})


async def delete_source(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    p = request.path_params
    await admin.delete_source(p["tenant"], p["bot_id"], p["source_id"])
    return Response(status_code=204)


async def create_agent(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    agent = await admin.create_agent(request.path_params["tenant"], body)
    return JSON(agent.to_wire(), status_code=201)


async def list_agents(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    tenant = await admin.tenant(request.path_params["tenant"])
    agents = await admin.store.handoff.list_agents(tenant.id)
    return JSON({"agents": [a.to_wire() for a in agents]})


BOT = "/admin/v1/tenants/{tenant}/bots/{bot_id}"

routes = [
    Route("/admin/v1/tenants", _route(create_tenant, body=True), methods=["POST"]),
    Route("/admin/v1/tenants/{tenant}/keys", _route(create_key, body=True), methods=["POST"]),
    Route("/admin/v1/tenants/{tenant}/agents", _route(create_agent, body=True), methods=["POST"]),
    Route("/admin/v1/tenants/{tenant}/agents", _route(list_agents), methods=["GET"]),
    Route("/admin/v1/tenants/{tenant}/bots", _route(create_bot, body=True), methods=["POST"]),
    Route("/admin/v1/tenants/{tenant}/bots", _route(list_bots), methods=["GET"]),
    Route(BOT, _route(get_bot), methods=["GET"]),
    Route(BOT, _route(update_bot, body=True), methods=["PATCH"]),
    Route(BOT, _route(delete_bot), methods=["DELETE"]),
    Route(BOT + "/sources", _route(add_source, body=True), methods=["POST"]),
    Route(BOT + "/sources", _route(list_sources), methods=["GET"]),
    Route(BOT + "/sources/{source_id}", _route(delete_source), methods=["DELETE"]),
]
