"""The admin API as an OpenAPI 3.1 document, served at ``GET /admin/v1/openapi.json``.

Written here beside the routes (a test checks that every route is described and every
description is a route), with the bot settings' schema derived from
:data:`realtime.bots.FIELDS`, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from realtime.admin import SCOPES, WEBHOOK_EVENTS
from realtime.bots import FIELDS

_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}
_JSON_TYPES.update({list: "array", dict: "object"})


def _setting_schema(default: Any) -> dict[str, Any]:
    if default is None:
        return {"type": ["string", "null"], "default": None}
    return {"type": _JSON_TYPES.get(type(default), "string"), "default": default}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


STRING: dict[str, Any] = {"type": "string"}
TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error"],
        error=_obj(["code", "message"], code=STRING, message=STRING),
    ),
    "Tenant": _obj(
        ["id", "name", "monthly_messages"],
        id=STRING,
        name=STRING,
        monthly_messages={
            "type": ["integer", "null"],
            "description": "visitor messages a month (UTC); null: no quota",
        },
        created_at=TIME,
    ),
    "TenantUsage": {
        "allOf": [
            {"$ref": "#/components/schemas/Tenant"},
            _obj(
                ["usage"],
                usage=_obj(["month", "messages"], month=STRING, messages={"type": "integer"}),
            ),
        ]
    },
    "ApiKey": _obj(
        ["id", "tenant", "prefix", "scope"],
        id=STRING,
        tenant=STRING,
        name=STRING,
        prefix={"type": "string", "description": "the 8 characters after rtk_, to recognise it"},
        scope={"enum": list(SCOPES)},
        bot_uuid={"type": ["string", "null"]},
        created_at=TIME,
        last_used_at=TIME,
        revoked_at=TIME,
    ),
    "BotSettings": {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _setting_schema(f.default) for name, f in FIELDS.items()},
    },
    "Bot": {
        "allOf": [
            _obj(
                ["uuid", "bot_id", "tenant"],
                uuid=STRING,
                bot_id=STRING,
                tenant=STRING,
                created_at=TIME,
                updated_at=TIME,
            ),
            _ref("BotSettings"),
        ]
    },
    "Source": _obj(
        ["id", "title"],
        id=STRING,
        title=STRING,
        url=STRING,
        kind={"enum": ["text", "markdown", "html"]},
        chunks={"type": "integer"},
        created_at=TIME,
    ),
    "Agent": _obj(
        ["id", "tenant", "name", "email"],
        id=STRING,
        tenant=STRING,
        name=STRING,
        email=STRING,
        label=STRING,
        capacity={"type": "integer"},
        created_at=TIME,
    ),
    "Webhook": _obj(
        ["id", "tenant", "url", "events"],
        id=STRING,
        tenant=STRING,
        url=STRING,
        events={"type": "array", "items": {"enum": list(WEBHOOK_EVENTS)}},
        created_at=TIME,
    ),
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list(key: str, item: str) -> dict[str, Any]:
    return _obj([key], **{key: {"type": "array", "items": _ref(item)}})


ERRORS = {
    "401": _answer("no valid admin key or tenant key", _ref("Error")),
    "403": _answer(
        "a chat-scope or bot-bound key (key_scope), or a tenant key where the admin key is needed",
        _ref("Error"),
    ),
    "404": _answer("no such tenant (or thing of it), or another tenant's", _ref("Error")),
    "400": _answer("invalid input: the message names the field", _ref("Error")),
}


def _op(summary: str, ok: str, answer: dict[str, Any], body: Any = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: answer, **ERRORS}}
    if body is not None:
        op["requestBody"] = _body(body)
    return op


_T = "/admin/v1/tenants/{tenant}"
_BOT = _T + "/bots/{bot_id}"

PATHS: dict[str, Any] = {
    "/admin/v1/tenants": {
        "post": _op(
            "Create a tenant (its id from the name, unless given)",
            "201",
            _answer("the tenant", _ref("Tenant")),
            _obj(
                ["name"],
                name=STRING,
                id={"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{1,62}$"},
            ),
        ),
        "get": _op("List tenants", "200", _answer("the tenants", _list("tenants", "Tenant"))),
    },
    _T: {
        "get": _op(
            "A tenant, with this month's usage", "200", _answer("the tenant", _ref("TenantUsage"))
        ),
        "patch": _op(
            "Set the tenant's monthly message quota (admin key only); over it, messages are "
            "refused with 429 quota_exceeded until the next month",
            "200",
            _answer("the tenant", _ref("TenantUsage")),
            _obj(
                ["monthly_messages"],
                monthly_messages={"type": ["integer", "null"], "minimum": 0},
            ),
        ),
    },
    _T + "/keys": {
        "post": _op(
            "Create an API key: the key is in this answer only",
            "201",
            _answer(
                "the key, with `key` (rtk_...) shown once",
                {"allOf": [_ref("ApiKey"), _obj(["key"], key=STRING)]},
            ),
            _obj(
                [],
                name=STRING,
                scope={"enum": list(SCOPES), "default": "full"},
                bot_id={"type": "string", "description": "bind the key to one bot"},
            ),
        ),
        "get": _op("List API keys (no secrets)", "200", _answer("keys", _list("keys", "ApiKey"))),
    },
    _T + "/keys/{key_id}": {
        "delete": _op("Revoke an API key", "200", _answer("the revoked key", _ref("ApiKey")))
    },
    _T + "/webhooks": {
        "post": _op(
            "Register a webhook endpoint (deliveries signed `sha256=` HMAC of the body)",
            "201",
            _answer("the webhook (without its secret)", _ref("Webhook")),
            _obj(
                ["url", "events", "secret"],
                url={"type": "string", "format": "uri"},
                events={"type": "array", "minItems": 1, "items": {"enum": list(WEBHOOK_EVENTS)}},
                secret={"type": "string", "minLength": 16, "maxLength": 200},
            ),
        ),
        "get": _op("List webhooks", "200", _answer("webhooks", _list("webhooks", "Webhook"))),
    },
    _T + "/webhooks/{webhook_id}": {"delete": _op("Delete a webhook", "204", _answer("deleted"))},
    _T + "/envelopes": {
        "post": _op(
            "Mint a signed context envelope (signed_context) for a bot of the tenant",
            "201",
            _answer(
                "the token (the tenant's signing secret is never shown)",
                _obj(
                    ["signed_context", "expires_at"],
                    signed_context=STRING,
                    expires_at={"type": "string", "format": "date-time"},
                ),
            ),
            _obj(
                ["channel"],
                channel={"type": "string", "description": "the bot's id (404 if none)"},
                user={
                    "type": ["string", "null"],
                    "maxLength": 256,
                    "description": "the user id (u); null: a guest",
                },
                route={"type": "string", "default": "", "description": "route name (r)"},
                context={"type": "object", "default": {}, "description": "page context (p)"},
                ttl={"type": "integer", "minimum": 1, "maximum": 86400, "default": 900},
                g={"type": "string", "description": "greeting"},
                pr={"type": "string", "description": "prompt for this page"},
                s={"type": "string", "description": "summary"},
                t={"type": "array", "items": STRING, "description": "tool allowlist"},
                x={"type": "array", "items": STRING, "description": "extractor allowlist"},
                xt={"type": "integer", "minimum": 0, "description": "extractor timeout, ms"},
                xc={"type": "integer", "minimum": 0, "description": "extractor size cap, bytes"},
            ),
        )
    },
    _T + "/agents": {
        "post": _op(
            "Create a human agent (who logs in to the console)",
            "201",
            _answer("the agent", _ref("Agent")),
            _obj(
                ["name", "email", "password"],
                name=STRING,
                email=STRING,
                password={"type": "string", "minLength": 8},
                label=STRING,
                capacity={"type": "integer", "minimum": 1},
            ),
        ),
        "get": _op("List agents", "200", _answer("agents", _list("agents", "Agent"))),
    },
    _T + "/bots": {
        "post": _op(
            "Create a bot",
            "201",
            _answer("the bot, with its uuid", _ref("Bot")),
            {"allOf": [_obj(["bot_id"], bot_id=STRING), _ref("BotSettings")]},
        ),
        "get": _op("List bots", "200", _answer("bots", _list("bots", "Bot"))),
    },
    _BOT: {
        "get": _op("A bot", "200", _answer("the bot", _ref("Bot"))),
        "patch": _op(
            "Change some of a bot's settings",
            "200",
            _answer("the bot", _ref("Bot")),
            _ref("BotSettings"),
        ),
        "delete": _op("Delete a bot with its conversations", "204", _answer("deleted")),
    },
    _BOT + "/sources": {
        "post": _op(
            "Add a knowledge source (chunked and indexed at once)",
            "201",
            _answer("the source", _ref("Source")),
            _obj(
                ["content"],
                content=STRING,
                title=STRING,
                url=STRING,
                kind={"enum": ["text", "markdown", "html"], "default": "text"},
            ),
        ),
        "get": _op("List a bot's sources", "200", _answer("sources", _list("sources", "Source"))),
    },
    _BOT + "/sources/{source_id}": {
        "delete": _op("Delete a knowledge source", "204", _answer("deleted"))
    },
}

ADMIN_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "realtime admin API",
        "version": "1",
        "description": (
            "Tenants, API keys, bots, knowledge sources, human agents and webhooks. Every "
            "operation needs `Authorization: Bearer <key>` (or `x-api-key`): the server's "
            "admin key, or a tenant's `full` API key not bound to a bot, which sees its own "
            "tenant only (another tenant's anything is 404) and cannot create tenants. "
            'Errors are `{"error": {"code", "message"}}`; bad JSON is 400.'
        ),
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"admin": []}],
    "paths": PATHS,
}
