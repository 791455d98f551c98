"""First start on an empty database: the default tenant, an admin key and the `demo` bot.

The demo bot is public, works on a small demo shop database (``demo_shop.db`` beside a SQLite
store, the schema ``demo_shop`` of a PostgreSQL one: read everything, manage products, update
orders; writes are confirmed by the visitor), and its knowledge sources are this project's
own documents (``REALTIME_DEMO_DOCS``: the repository's ``docs/`` and ``README.md`` by
default), served under ``/docs/`` so its citation links work. Every step is idempotent: a
later start changes nothing. Processes that share a PostgreSQL database and start together
take turns (:meth:`Store.exclusive`): the first bootstraps, the others find it done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from realtime.admin import Admin
from realtime.agent.tools import DATA_TOOL_NAMES
from realtime.bots import validate_settings
from realtime.config import Settings
from realtime.data.demo_shop import (
    PERMISSIONS,
    create_demo_shop,
    demo_shop_schema,
    demo_shop_url,
)
from realtime.engine import DEFAULT_TENANT
from realtime.knowledge.ingest import add_source, kind_of
from realtime.store import Store

log = logging.getLogger("realtime.bootstrap")

DEMO_BOT = "demo"
DEMO_SETTINGS = {
    "name": "Realtime demo",
    "description": "Answers questions about the realtime server from its own documentation.",
    "privacy": "public",
    "welcome_message": "Hi! Ask me anything about the realtime server.",
    "suggested_questions": [
        "How do I resume after a disconnect?",
        "Which error codes can the WebSocket send?",
        "How do I configure an OpenAI endpoint?",
    ],
    "citations_enabled": True,
}


@dataclass(frozen=True, slots=True)
class Bootstrap:
    generated_admin_key: str | None
    demo_sources: int


async def bootstrap(store: Store, settings: Settings) -> Bootstrap:
    async with store.exclusive("realtime.bootstrap"):
        return await _bootstrap(store, settings)


async def _bootstrap(store: Store, settings: Settings) -> Bootstrap:
    await store.migrate()
    admin = Admin(store)
    if await store.get_tenant(DEFAULT_TENANT) is None:
        await store.create_tenant(DEFAULT_TENANT, "Default")
    generated = await admin.ensure_admin_key(settings.admin_key)
    sources = 0
    if await store.get_bot(DEFAULT_TENANT, DEMO_BOT) is None:
        demo = dict(DEMO_SETTINGS)
        shop = demo_shop_url(settings.database_url)
        if shop is not None:
            await create_demo_shop(shop)
            data_source: dict[str, Any] = {"url": shop, "tables": PERMISSIONS}
            schema = demo_shop_schema(shop)
            if schema is not None:
                data_source["schema"] = schema
            demo["data_source"] = data_source
            demo["tools"] = ["search_knowledge", *DATA_TOOL_NAMES]
        bot = await store.create_bot(
            DEFAULT_TENANT, DEMO_BOT, validate_settings(demo, partial=False)
        )
        for path in settings.demo_paths:
            await add_source(
                store.knowledge,
                tenant_id=DEFAULT_TENANT,
                bot_uuid=bot.uuid,
                content=path.read_text(encoding="utf-8"),
                kind=kind_of(path),
                url=f"/docs/{path.name}",
            )
            sources += 1
        if not sources:
            log.warning(
                "no demo documents found in %s: the demo bot knows nothing", settings.demo_docs
            )
        log.info("created the demo bot with %d sources", sources)
    return Bootstrap(generated, sources)
