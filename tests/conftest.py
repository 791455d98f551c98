from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realtime.testing import FakeOpenAI
from tests.support import RunningServer, llm_settings, make_settings, run_server

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


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The server on embedded defaults with the offline responder."""
    async with run_server(make_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def llm_server(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[RunningServer]:
    """The server with the OpenAI provider pointed at the fake OpenAI server."""
    settings = llm_settings(
        tmp_path,
        fake_llm,
        llm_read_timeout=5.0,
    )
    async with run_server(settings) as running:
        yield running
