"""The ``realtime`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from realtime.config import Settings


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
    args = parser.parse_args(argv)
    if args.command == "agents":
        return _add_agent(args)

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
    import asyncio
    import getpass
    import sys

    import orjson

    from realtime.admin import Admin
    from realtime.engine import DEFAULT_TENANT
    from realtime.errors import RealtimeError
    from realtime.store import Store

    password = args.password or getpass.getpass("password: ")
    body = {
        "name": args.name,
        "email": args.email,
        "password": password,
        "label": args.label,
        "capacity": args.capacity,
    }

    async def run() -> int:
        store = Store(Settings.from_env().database_url)
        try:
            await store.migrate()
            if args.tenant == DEFAULT_TENANT and await store.get_tenant(DEFAULT_TENANT) is None:
                await store.create_tenant(DEFAULT_TENANT, "Default")
            agent = await Admin(store).create_agent(args.tenant, body)
        except RealtimeError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await store.close()
        print(orjson.dumps(agent.to_wire()).decode())
        return 0

    return asyncio.run(run())
