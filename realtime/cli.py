"""The ``realtime`` command."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from realtime.config import Settings

if TYPE_CHECKING:
    from realtime.admin import Admin


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="realtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (settings: REALTIME_* variables)")
    serve.add_argument("--host", help="interface to bind (REALTIME_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (REALTIME_PORT, default 8000)")
    serve.add_argument("--log-level", help="debug, info, warning, error (REALTIME_LOG_LEVEL)")
    agents = commands.add_parser("agents", help="manage human agents")
    agent_commands = agents.add_subparsers(dest="agents_command", required=True)
    add = agent_commands.add_parser("add", help="create a human agent who can log in to /console")
    add.add_argument("--tenant", default="default", help="tenant id (default: default)")
    add.add_argument("--name", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--password", help="8+ characters (asked for when omitted)")
    add.add_argument("--label", help="what visitors see (default: the first name)")
    add.add_argument("--capacity", type=int, default=5, help="open conversations at once")
    listing = agent_commands.add_parser("list", help="list a tenant's human agents")
    listing.add_argument("--tenant", default="default")
    listing.set_defaults(
        admin_action=lambda a: lambda admin: _each(admin.list_agents(a.tenant), _wire)
    )
    _admin_commands(commands)
    _bot_commands(commands)
    _envelope_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "agents" and args.agents_command == "add":
        return _add_agent(args)
    if getattr(args, "admin_action", None) is not None:
        return _run_admin(args.admin_action(args))

    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("log_level", args.log_level))
        if value is not None
    }
    settings = Settings.from_env(**overrides)
    if args.command == "serve":
        from realtime.server import serve as run

        run(settings)
    return 0


def _add_agent(args: argparse.Namespace) -> int:
    import getpass

    password = args.password or getpass.getpass("password: ")
    body = {
        "name": args.name,
        "email": args.email,
        "password": password,
        "label": args.label,
        "capacity": args.capacity,
    }
    return _run_admin(lambda admin: _one(admin.create_agent(args.tenant, body)))


# -- the admin API's commands --------------------------------------------------------------

AdminAction = Callable[["Admin"], Awaitable[Any]]


def _admin_commands(commands: Any) -> None:
    """``tenants``, ``keys`` and ``webhooks``: what the admin API does, from a shell on a node
    (on the store named by REALTIME_DATABASE_URL; printing JSON like the API)."""
    tenants = commands.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="tenants_command", required=True
    )
    create = tenants.add_parser("create", help="create a tenant")
    create.add_argument("--name", required=True)
    create.add_argument("--id", help="its id (default: from the name)")
    create.set_defaults(
        admin_action=lambda a: (
            lambda admin: _one(
                admin.create_tenant({"name": a.name, **({"id": a.id} if a.id else {})})
            )
        )
    )
    listing = tenants.add_parser("list", help="list tenants")
    listing.set_defaults(
        admin_action=lambda a: lambda admin: _each(admin.store.tenancy.list_tenants(), _wire)
    )
    quota = tenants.add_parser("quota", help="set a tenant's monthly message quota")
    quota.add_argument("--tenant", default="default")
    quota.add_argument(
        "--monthly-messages", required=True, help="visitor messages a month, or 'none'"
    )
    quota.set_defaults(admin_action=lambda a: lambda admin: _set_quota(admin, a))

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key (printed once)")
    create.add_argument("--tenant", default="default")
    create.add_argument("--name", default="key")
    create.add_argument("--scope", choices=("chat", "full"), default="full")
    create.add_argument("--bot", help="bind the key to this bot")
    create.set_defaults(
        admin_action=lambda a: (
            lambda admin: _new_key(
                admin.create_key(
                    a.tenant,
                    {"name": a.name, "scope": a.scope, **({"bot_id": a.bot} if a.bot else {})},
                )
            )
        )
    )
    listing = keys.add_parser("list", help="list a tenant's keys (without secrets)")
    listing.add_argument("--tenant", default="default")
    listing.set_defaults(
        admin_action=lambda a: lambda admin: _each(admin.list_keys(a.tenant), _wire)
    )
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    revoke.add_argument("--tenant", default="default")
    revoke.set_defaults(
        admin_action=lambda a: lambda admin: _one(admin.revoke_key(a.tenant, a.key_id))
    )

    hooks = commands.add_parser("webhooks", help="manage webhooks").add_subparsers(
        dest="webhooks_command", required=True
    )
    add = hooks.add_parser("add", help="register a webhook endpoint")
    add.add_argument("--tenant", default="default")
    add.add_argument("--url", required=True)
    add.add_argument("--event", action="append", required=True, help="repeat for several")
    add.add_argument("--secret", required=True, help="16..200 characters; signs deliveries")
    add.set_defaults(
        admin_action=lambda a: (
            lambda admin: _one(
                admin.add_webhook(a.tenant, {"url": a.url, "events": a.event, "secret": a.secret})
            )
        )
    )
    listing = hooks.add_parser("list", help="list a tenant's webhooks")
    listing.add_argument("--tenant", default="default")
    listing.set_defaults(
        admin_action=lambda a: lambda admin: _each(admin.list_webhooks(a.tenant), _wire)
    )
    delete = hooks.add_parser("delete", help="delete a webhook")
    delete.add_argument("webhook_id")
    delete.add_argument("--tenant", default="default")
    delete.set_defaults(
        admin_action=lambda a: lambda admin: admin.delete_webhook(a.tenant, a.webhook_id)
    )


def _bot_commands(commands: Any) -> None:
    """``bots`` and ``sources``: a tenant's bots, their settings and knowledge sources."""
    bots = commands.add_parser("bots", help="manage bots").add_subparsers(
        dest="bots_command", required=True
    )
    create = bots.add_parser("create", help="create a bot")
    create.add_argument("bot_id", help="3-50 of A-Z a-z 0-9 _ -")
    create.add_argument("--tenant", default="default")
    create.add_argument("--settings", default="{}", help="a JSON object of bot settings")
    create.set_defaults(
        admin_action=lambda a: (
            lambda admin: _bot(
                admin, admin.create_bot(a.tenant, {"bot_id": a.bot_id, **_json_object(a.settings)})
            )
        )
    )
    listing = bots.add_parser("list", help="list a tenant's bots")
    listing.add_argument("--tenant", default="default")
    listing.set_defaults(admin_action=lambda a: lambda admin: _list_bots(admin, a.tenant))
    update = bots.add_parser("update", help="change some of a bot's settings")
    update.add_argument("bot_id")
    update.add_argument("--tenant", default="default")
    update.add_argument("--settings", required=True, help="a JSON object of bot settings")
    update.set_defaults(
        admin_action=lambda a: (
            lambda admin: _bot(
                admin, admin.update_bot(a.tenant, a.bot_id, _json_object(a.settings))
            )
        )
    )
    delete = bots.add_parser("delete", help="delete a bot and its conversations")
    delete.add_argument("bot_id")
    delete.add_argument("--tenant", default="default")
    delete.set_defaults(admin_action=lambda a: lambda admin: admin.delete_bot(a.tenant, a.bot_id))

    sources = commands.add_parser("sources", help="a bot's knowledge sources").add_subparsers(
        dest="sources_command", required=True
    )
    add = sources.add_parser("add", help="add a document (text, markdown or html)")
    add.add_argument("path", help="the file to read")
    add.add_argument("--bot", required=True)
    add.add_argument("--tenant", default="default")
    add.add_argument("--title")
    add.add_argument("--url")
    add.add_argument("--kind", choices=("text", "markdown", "html"))
    add.set_defaults(admin_action=lambda a: lambda admin: _add_source(admin, a))
    listing = sources.add_parser("list", help="list a bot's sources")
    listing.add_argument("--bot", required=True)
    listing.add_argument("--tenant", default="default")
    listing.set_defaults(
        admin_action=lambda a: lambda admin: _each(admin.list_sources(a.tenant, a.bot), _wire)
    )
    delete = sources.add_parser("delete", help="delete a source")
    delete.add_argument("source_id")
    delete.add_argument("--bot", required=True)
    delete.add_argument("--tenant", default="default")
    delete.set_defaults(
        admin_action=lambda a: lambda admin: admin.delete_source(a.tenant, a.bot, a.source_id)
    )


def _json_object(text: str) -> dict[str, Any]:
    import orjson

    from realtime.errors import ProtocolError

    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ProtocolError("invalid_json", "--settings must be a JSON object")
    return value


async def _bot(admin: Admin, made: Awaitable[Any]) -> Any:
    return admin.bot_wire(await made)


async def _list_bots(admin: Admin, tenant_id: str) -> list[Any]:
    tenant = await admin.tenant(tenant_id)
    return [admin.bot_wire(bot) for bot in await admin.store.list_bots(tenant.id)]


async def _add_source(admin: Admin, args: argparse.Namespace) -> Any:
    import asyncio
    from pathlib import Path

    from realtime.errors import ProtocolError

    path = Path(args.path)
    try:
        content = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_field", f"cannot read {path}: {exc}") from None
    suffix = path.suffix.lower()
    kind = args.kind or {".md": "markdown", ".html": "html", ".htm": "html"}.get(suffix, "text")
    body = {"content": content, "kind": kind, "title": args.title or path.stem}
    if args.url:
        body["url"] = args.url
    return (await admin.add_source(args.tenant, args.bot, body)).to_wire()


async def _set_quota(admin: Admin, args: argparse.Namespace) -> Any:
    from realtime.errors import ProtocolError

    raw = args.monthly_messages
    if raw.lower() == "none":
        quota = None
    elif raw.isdigit():
        quota = int(raw)
    else:
        raise ProtocolError("invalid_field", "--monthly-messages must be a number or 'none'")
    return await admin.usage(await admin.set_quota(args.tenant, {"monthly_messages": quota}))


def _wire(record: Any) -> Any:
    return record.to_wire()


async def _one(made: Awaitable[Any]) -> Any:
    return (await made).to_wire()


async def _each(made: Awaitable[list[Any]], wire: Callable[[Any], Any]) -> list[Any]:
    return [wire(item) for item in await made]


async def _new_key(made: Awaitable[tuple[Any, str]]) -> dict[str, Any]:
    key, raw = await made
    return {**key.to_wire(), "key": raw}


def _run_admin(action: AdminAction) -> int:
    import asyncio
    import sys

    import orjson

    from realtime.admin import Admin
    from realtime.engine import DEFAULT_TENANT
    from realtime.errors import RealtimeError
    from realtime.store import Store

    async def run() -> int:
        store = Store(Settings.from_env().database_url)
        try:
            await store.migrate()
            if await store.get_tenant(DEFAULT_TENANT) is None:  # before the first start
                await store.create_tenant(DEFAULT_TENANT, "Default")
            result = await action(Admin(store))
        except RealtimeError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await store.close()
        if result is not None:
            print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0

    return asyncio.run(run())


def _envelope_commands(commands: Any) -> None:
    """``envelopes mint``: print a ``signed_context`` (as ``POST .../envelopes`` mints)."""
    envelopes = commands.add_parser("envelopes", help="signed context envelopes").add_subparsers(
        dest="envelopes_command", required=True
    )
    mint = envelopes.add_parser("mint", help="print a signed_context for a bot of a tenant")
    mint.add_argument("--tenant", default="default", help="tenant id (default: default)")
    mint.add_argument("--channel", required=True, help="the bot's id (the envelope's channel)")
    mint.add_argument("--user", help="the user id it vouches for (omitted: a guest envelope)")
    mint.add_argument("--route", default="", help="the route name stored with messages")
    mint.add_argument("--context", default="{}", help="the page context, a JSON object")
    mint.add_argument("--ttl", type=int, default=900, help="seconds until it expires (900)")
    mint.add_argument("--prompt", help="instructions for this page (pr)")
    mint.set_defaults(admin_action=lambda a: lambda admin: _mint_envelope(admin, a))


async def _mint_envelope(admin: Admin, args: argparse.Namespace) -> None:
    import orjson

    from realtime.errors import ProtocolError

    try:
        context = orjson.loads(args.context)
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid_json", "--context must be a JSON object") from None
    body = {
        "channel": args.channel,
        "user": args.user,
        "route": args.route,
        "context": context,
        "ttl": args.ttl,
        "pr": args.prompt,
    }
    print((await admin.mint_envelope(args.tenant, body))["signed_context"])
