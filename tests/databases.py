"""The databases the store's tests run on: SQLite files, and PostgreSQL when there is one.

``REALTIME_TEST_DATABASES`` names them, comma-separated, among ``sqlite``, ``postgresql`` and
``postgresql+redis`` (PostgreSQL, with the servers of the test on the Redis broker).
Unset, it is both when a PostgreSQL server answers at ``REALTIME_TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``, an administrative connection),
else SQLite alone; naming ``postgresql`` when none answers fails the run instead.

A test run makes its own PostgreSQL databases: one per test, ``realtime_test_<run>_<n>``,
dropped when the test ends (``WITH (FORCE)``: connections a failing test left open do not
keep it), and at the end of the run whatever is left with the run's prefix. Databases of
earlier runs whose process is gone (killed before it could clean up) are dropped when a run
starts. The administrative statements run on their own thread and event loop, so the
fixtures using them work for sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa

from scripts.cluster import process_alive

T = TypeVar("T")

ADMIN_URL = os.environ.get(
    "REALTIME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# postgresql+redis: a PostgreSQL store, and every server a test starts on it uses the Redis
# broker (the machine's Redis, with a key prefix of the test's own): the deployment's shape.
KNOWN = ("sqlite", "postgresql", "postgresql+redis")
PREFIX = "realtime_test_"
_NAME = re.compile(rf"{PREFIX}(\d+)_[0-9a-f]+(?:_\d+)?")


def _admin_url() -> sa.URL:
    return sa.engine.make_url(ADMIN_URL).set(drivername="postgresql")


def postgres_reachable(timeout: float = 0.5) -> bool:
    url = _admin_url()
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout):
            return True
    except OSError:
        return False


def backends() -> list[str]:
    """The backends of this run, from ``REALTIME_TEST_DATABASES`` or what is reachable."""
    raw = os.environ.get("REALTIME_TEST_DATABASES", "").strip()
    if not raw:
        return ["sqlite", "postgresql"] if postgres_reachable() else ["sqlite"]
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN]
    if unknown or not names:
        raise ValueError(f"REALTIME_TEST_DATABASES: unknown {unknown}; use {', '.join(KNOWN)}")
    return list(dict.fromkeys(names))


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh event loop in a worker thread (never the test's loop)."""

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def _execute(*statements: str) -> list[Any]:
    import asyncpg

    url = _admin_url()
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        out = []
        for statement in statements:
            out.append(await conn.fetch(statement))
        return out
    finally:
        await conn.close()


class PostgresDatabases:
    """One test run's databases on the PostgreSQL server."""

    def __init__(self) -> None:
        self.run = f"{PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
        self._count = itertools.count(1)

    def url(self, name: str) -> str:
        return _admin_url().set(database=name).render_as_string(hide_password=False)

    def create(self) -> str:
        name = f"{self.run}_{next(self._count)}"
        _run(lambda: _execute(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        return name

    def drop(self, name: str) -> None:
        _run(lambda: _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database for one test (its URL), dropped afterwards."""
        name = self.create()
        try:
            yield self.url(name)
        finally:
            self.drop(name)

    def _names(self) -> list[str]:
        (rows,) = _run(
            lambda: _execute(f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'")
        )
        return [row["datname"] for row in rows]

    def drop_leftovers(self) -> None:
        """Drop this run's databases, and those of runs whose process has ended."""
        for name in self._names():
            match = _NAME.fullmatch(name)
            if name.startswith(self.run + "_") or (
                match and not process_alive(int(match.group(1)))
            ):
                self.drop(name)
