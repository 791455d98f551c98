"""The pages and scripts served to browsers: policies, caching, compression, and nothing else
reachable through the asset route."""

from __future__ import annotations

import gzip

import pytest

from realtime.transport.pages import PAGE_CSP
from tests.support import RunningServer

pytestmark = pytest.mark.anyio


async def test_pages_carry_their_own_policy_and_the_widget_may_be_embedded_anywhere(
    server: RunningServer,
) -> None:
    async with server.http() as http:
        demo = await http.get("/")
        console = await http.get("/console")
        widget = await http.get("/widget.js")
        laravel_path = await http.get("/chatbot/widget.js")
        health = await http.get("/health")
    for page in (demo, console):
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == PAGE_CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in PAGE_CSP and "'unsafe-eval'" not in PAGE_CSP
    assert '<script src="/widget.js" data-bot="demo"' in demo.text
    assert widget.status_code == 200 and widget.headers["content-type"].startswith(
        "text/javascript"
    )
    assert widget.headers["cross-origin-resource-policy"] == "cross-origin"
    assert widget.content == laravel_path.content
    # API answers keep the strictest policy.
    assert health.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


async def test_assets_are_compressed_and_revalidated(server: RunningServer) -> None:
    async with server.http() as http:
        plain = await http.get("/static/demo.css", headers={"accept-encoding": "identity"})
        zipped = await http.get("/static/demo.css", headers={"accept-encoding": "gzip"})
        again = await http.get("/static/demo.css", headers={"if-none-match": plain.headers["etag"]})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decoded it
    assert len(gzip.compress(plain.content)) < len(plain.content)
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server.py",
        "/static/%2e%2e%2fserver.py",
        "/static/..%2Fconfig.py",
        "/static/index.html",  # pages have their own routes (and policies)
        "/static/nothing.js",
        "/static/.hidden.js",
        "/static/widget.js",  # one URL per script
    ],
)
async def test_nothing_but_the_assets_is_reachable(server: RunningServer, path: str) -> None:
    async with server.http() as http:
        answer = await http.get(path)
    assert answer.status_code == 404
