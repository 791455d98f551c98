"""Clusters of real ``realtime serve`` processes for one test each (``scripts/cluster.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from scripts.cluster import Cluster
from tests.databases import PostgresDatabases
from tests.support import ADMIN_KEY, REDIS_URL, UNIT


@contextlib.asynccontextmanager
async def running_cluster(
    directory: Path, postgres: PostgresDatabases, redis_prefix: str, **options: Any
) -> AsyncIterator[Cluster]:
    """A cluster on a new PostgreSQL database and the test's Redis prefix; its processes
    (and nginx) are stopped and the database dropped when the block ends, failed or not."""
    with postgres.database() as database_url:
        cluster = Cluster(
            directory,
            database_url=database_url,
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix,
            admin_key=ADMIN_KEY,
            ready_timeout=60 * UNIT,
            **{"stop_timeout": 10 * UNIT, **options},
        )
        try:
            await anyio.to_thread.run_sync(cluster.start)
            yield cluster
        finally:
            await anyio.to_thread.run_sync(cluster.stop)
            assert not cluster.running()
