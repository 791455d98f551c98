"""The README's first example runs as written against a real server (only the port differs)."""

from __future__ import annotations

import asyncio
import re
import sys

import pytest

from tests.support import REPO, UNIT, RunningServer

pytestmark = pytest.mark.anyio


async def test_readme_client_gets_a_streamed_cited_answer(server: RunningServer) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", readme, re.S)
    assert snippet is not None
    code = snippet.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30 * UNIT)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert text.startswith("Hi! Ask me anything about the realtime server.\n")
    assert "[1]" in text
    assert re.search(rf"\n\[1\] .+ http://127\.0\.0\.1:{server.port}/docs/\S+\.md", text), text
