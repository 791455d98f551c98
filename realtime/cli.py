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
    args = parser.parse_args(argv)

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
