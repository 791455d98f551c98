from __future__ import annotations

import secrets
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from realtime.testing import FakeOpenAI
from tests.databases import PostgresDatabases, backends, postgres_reachable
from tests.support import (
    REDIS_URL,
    THROUGH_REDIS,
    RedisServer,
    RunningServer,
    llm_settings,
    make_settings,
    run_server,
)

BACKENDS = backends()

# When a Hypothesis test fails, its pytest plugin imports libcst to write a patch with the
# failing example; libcst's import emits a DeprecationWarning (from mypy_extensions), which
# ``filterwarnings = ["error"]`` turns into an INTERNALERROR that hides the real failure.
# Importing it once here, with that warning silenced, keeps failure reports readable.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import libcst  # noqa: F401
    except ImportError:  # libcst is optional
        pass


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def pytest_report_header() -> str:
    return f"store backends: {', '.join(BACKENDS)} (REALTIME_TEST_DATABASES)"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    """This run's PostgreSQL databases; whatever is left of them is dropped at the end."""
    if not postgres_reachable():
        pytest.fail("REALTIME_TEST_DATABASES names postgresql, but no PostgreSQL answers")
    databases = PostgresDatabases()
    databases.drop_leftovers()
    try:
        yield databases
    finally:
        databases.drop_leftovers()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store of one test, on each backend in turn: a new SQLite file, or a new
    PostgreSQL database (dropped when the test ends)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'realtime.db'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    with databases.database() as url:
        if request.param != "postgresql+redis":
            yield url
            return
        prefix = f"rt-test-{secrets.token_hex(4)}:"
        THROUGH_REDIS[url] = prefix
        try:
            yield url
        finally:
            del THROUGH_REDIS[url]
            delete_redis_keys(prefix)


@pytest.fixture(params=[b for b in BACKENDS if b.startswith("postgresql")][:1])
def shared_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new PostgreSQL database: for tests of several processes on one store, which a
    SQLite file (one process's store) is not for."""
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    with databases.database() as url:
        yield url


@pytest.fixture
async def server(tmp_path: Path, database_url: str) -> AsyncIterator[RunningServer]:
    """The server with the offline responder, on each store backend."""
    async with run_server(make_settings(tmp_path, database_url=database_url)) as running:
        yield running


@pytest.fixture
async def llm_server(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> AsyncIterator[RunningServer]:
    """The server with the OpenAI provider pointed at the fake OpenAI server."""
    settings = llm_settings(
        tmp_path,
        fake_llm,
        database_url=database_url,
        llm_read_timeout=5.0,
    )
    async with run_server(settings) as running:
        yield running


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; every key under it is deleted afterwards."""
    value = f"rt-test-{secrets.token_hex(4)}:"
    yield value
    delete_redis_keys(value)


def delete_redis_keys(prefix: str) -> None:
    """Delete every key under ``prefix`` in the machine's Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A Redis of this test's own (a ``redis-server`` on a free port, keeping nothing on
    disk) that it may kill and start again; killed when the test ends."""
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
