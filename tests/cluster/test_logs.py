"""What a real node writes to its log: never a credential from a query string."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from realtime.server import RedactQueries
from tests.cluster.support import running_cluster
from tests.databases import PostgresDatabases

pytestmark = pytest.mark.anyio

TOKEN = "eyJ2IjoxfQ.c2VjcmV0LXNpZ25hdHVyZQ"


async def test_access_log_lines_carry_no_query_strings(
    tmp_path: Path, postgres: PostgresDatabases, redis_prefix: str
) -> None:
    async with running_cluster(
        tmp_path / "cluster", postgres, redis_prefix, nodes=1, nginx=False
    ) as cluster:
        async with httpx.AsyncClient(base_url=cluster.node_url(1), timeout=10) as http:
            url = "/realtime/v1/conversations/00000000-0000-4000-8000-000000000000/messages"
            answer = await http.get(url, params={"signed_context": TOKEN, "session_id": "s-9f2"})
            await http.get("/health")
        log = cluster.node(1).log.read_text()
    assert answer.status_code in (403, 404)
    assert f'"GET {url}?[redacted] HTTP/1.1" {answer.status_code}' in log
    assert '"GET /health HTTP/1.1" 200' in log
    assert TOKEN not in log and "s-9f2" not in log


def test_the_filter_keeps_paths_and_drops_queries() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/a?key=secret", "1.1", 200), None,
    )  # fmt: skip
    assert RedactQueries().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /a?[redacted] HTTP/1.1" 200'
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("/a?b",), None)
    assert RedactQueries().filter(other) and other.getMessage() == "plain /a?b"
