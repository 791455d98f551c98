"""The composition root: build the backends from settings, assemble the app, run it."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from realtime.admin import Admin
from realtime.agent.offline import OfflineProvider
from realtime.agent.provider import Provider
from realtime.bootstrap import bootstrap
from realtime.broker.base import Broker
from realtime.broker.coordination import Coordination, MemoryCoordination
from realtime.broker.memory import MemoryBroker
from realtime.config import Settings
from realtime.engine import Engine
from realtime.store import Store
from realtime.transport.app import asgi_app

log = logging.getLogger("realtime.server")


def make_provider(settings: Settings) -> Provider:
    if settings.llm_configured:
        from realtime.agent.openai_provider import OpenAIProvider

        return OpenAIProvider(settings)
    return OfflineProvider()


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        from realtime.broker.redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            prefix=settings.redis_prefix,
            replay_events=settings.replay_events,
            idle_ttl=settings.replay_idle_ttl,
            sharded=settings.redis_cluster,
            outage_grace=settings.redis_outage_grace,
        )
    return MemoryBroker(replay_events=settings.replay_events, idle_ttl=settings.replay_idle_ttl)


def make_coordination(settings: Settings) -> Coordination:
    if settings.redis_url:
        from realtime.broker.redis_coordination import RedisCoordination

        return RedisCoordination(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryCoordination()


def create_app(settings: Settings) -> Starlette:
    """The whole server as an ASGI app; backends start and stop with its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(settings.database_url)
        result = await bootstrap(store, settings)
        if result.generated_admin_key:
            _announce_admin_key(result.generated_admin_key)
        broker = make_broker(settings)
        engine = Engine(
            settings,
            store,
            broker,
            make_provider(settings),
            coordination=make_coordination(settings),
        )
        await engine.start()
        app.state.engine = engine
        app.state.admin = Admin(store)
        app.state.started = time.monotonic()
        log.info(
            "realtime %s ready: provider=%s store=%s",
            engine.node_id,
            engine.provider.name,
            store.dialect,
        )
        try:
            yield
        finally:
            await engine.stop()
            await store.close()

    return asgi_app(lifespan)


def _announce_admin_key(key: str) -> None:
    print(
        "\n  An admin key was generated for this database. It is shown only once:\n\n"
        f"    REALTIME_ADMIN_KEY={key}\n\n"
        "  Use it as 'Authorization: Bearer <key>' on /admin/v1.\n",
        file=sys.stderr,
        flush=True,
    )


class RedactQueries(logging.Filter):
    """Drop query strings from uvicorn's access log lines: they carry credentials
    (``?signed_context=``, ``?session_id=``) that must not reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, _, query = args[2].partition("?")
            if query:
                record.args = (args[0], args[1], f"{path}?[redacted]", *args[3:])
        return True


def raise_open_file_limit() -> None:
    """Every connection is a file descriptor: take the hard limit (DECISIONS 25)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(settings: Settings) -> None:
    import uvicorn

    raise_open_file_limit()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.log_level.lower() != "debug":
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin otherwise
    logging.getLogger("uvicorn.access").addFilter(RedactQueries())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_size,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        lifespan="on",
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout) + 5,
    )
