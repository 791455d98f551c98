from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realtime.testing import FakeOpenAI
from tests.support import RunningServer, make_settings, run_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The server on embedded defaults with the offline responder."""
    async with run_server(make_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def llm_server(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[RunningServer]:
    """The server with the OpenAI provider pointed at the fake OpenAI server."""
    settings = make_settings(
        tmp_path,
        provider="openai",
        openai_base_url=fake_llm.base_url,
        openai_api_key="sk-test",
        llm_read_timeout=5.0,
    )
    async with run_server(settings) as running:
        yield running
