"""The admin HTTP API under ``/admin/v1`` (``Authorization: Bearer <admin key>`` or a tenant's
``full`` key for that tenant; JSON).

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
from realtime.errors import NotFound, RealtimeError
from realtime.transport.http import JSON, bearer, error_response, json_body
from realtime.transport.openapi import ADMIN_OPENAPI

Handler = Callable[[Admin, Request, dict[str, Any]], Awaitable[Response]]


def _route(
    handler: Handler, *, body: bool = False, server: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """An admin route: the caller authenticated (:meth:`Admin.authenticate`), held to its
    own tenant (``{tenant}`` of another is not found) or, for ``server`` routes, required to
    hold the admin key; then the JSON body read."""

    async def endpoint(request: Request) -> Response:
        admin: Admin = request.app.state.admin
        try:
            principal = await admin.authenticate(bearer(request))
            request.state.principal = principal
            if any("\x00" in value for value in request.path_params.values()):
                raise NotFound("not_found", "no such thing")  # no id holds a NUL
            tenant = request.path_params.get("tenant")
            if tenant is not None:  # before anything else: another tenant is not there
                principal.check_tenant(tenant)
            if server:
                principal.check_server()
            data: dict[str, Any] = {}
            if body:
                data = await json_body(request)
            return await handler(admin, request, data)
        except RealtimeError as exc:
            return error_response(exc)

    return endpoint


async def create_tenant(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    tenant = await admin.create_tenant(body)
    return JSON(tenant.to_wire(), status_code=201)


async def create_key(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    key, raw = await admin.create_key(request.path_params["tenant"], body)
    return JSON({**key.to_wire(), "key": raw}, status_code=201)


async def list_tenants(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    """Every tenant for the admin key; a tenant's key sees its own."""
    own = request.state.principal.tenant
    tenants = [t for t in await admin.store.tenancy.list_tenants() if own in (None, t.id)]
    return JSON({"tenants": [t.to_wire() for t in tenants]})


async def get_tenant(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    return JSON(await admin.usage(await admin.tenant(request.path_params["tenant"])))


async def update_tenant(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    """The quota is the server operator's to set (a tenant's key may not raise its own)."""
    tenant = await admin.set_quota(request.path_params["tenant"], body)
    return JSON(await admin.usage(tenant))


async def list_keys(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    keys = await admin.list_keys(request.path_params["tenant"])
    return JSON({"keys": [k.to_wire() for k in keys]})


async def revoke_key(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    p = request.path_params
    return JSON((await admin.revoke_key(p["tenant"], p["key_id"])).to_wire())


async def add_webhook(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    hook = await admin.add_webhook(request.path_params["tenant"], body)
    return JSON(hook.to_wire(), status_code=201)


async def list_webhooks(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    hooks = await admin.list_webhooks(request.path_params["tenant"])
    return JSON({"webhooks": [h.to_wire() for h in hooks]})


async def delete_webhook(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    p = request.path_params
    await admin.delete_webhook(p["tenant"], p["webhook_id"])
    return Response(status_code=204)


async def openapi(request: Request) -> Response:
    """The admin API described (OpenAPI 3.1); public, like any API's documentation."""
    return JSON(ADMIN_OPENAPI)


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


async def mint_envelope(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    minted = await admin.mint_envelope(request.path_params["tenant"], body)
    return JSON(minted, status_code=201)


async def list_agents(admin: Admin, request: Request, body: dict[str, Any]) -> Response:
    agents = await admin.list_agents(request.path_params["tenant"])
    return JSON({"agents": [a.to_wire() for a in agents]})


BOT = "/admin/v1/tenants/{tenant}/bots/{bot_id}"

TENANT = "/admin/v1/tenants/{tenant}"

routes = [
    Route("/admin/v1/openapi.json", openapi, methods=["GET"]),
    Route("/admin/v1/tenants", _route(create_tenant, body=True, server=True), methods=["POST"]),
    Route("/admin/v1/tenants", _route(list_tenants), methods=["GET"]),
    Route(TENANT, _route(get_tenant), methods=["GET"]),
    Route(TENANT, _route(update_tenant, body=True, server=True), methods=["PATCH"]),
    Route(TENANT + "/keys", _route(create_key, body=True), methods=["POST"]),
    Route(TENANT + "/keys", _route(list_keys), methods=["GET"]),
    Route(TENANT + "/keys/{key_id}", _route(revoke_key), methods=["DELETE"]),
    Route(TENANT + "/webhooks", _route(add_webhook, body=True), methods=["POST"]),
    Route(TENANT + "/webhooks", _route(list_webhooks), methods=["GET"]),
    Route(TENANT + "/webhooks/{webhook_id}", _route(delete_webhook), methods=["DELETE"]),
    Route(TENANT + "/envelopes", _route(mint_envelope, body=True), methods=["POST"]),
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
