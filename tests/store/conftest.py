from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from realtime.store import Store

TENANT = "t"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store with one tenant, on each backend."""
    store = Store(database_url)
    await store.migrate()
    await store.create_tenant(TENANT, "Tenant")
    try:
        yield store
    finally:
        await store.close()
