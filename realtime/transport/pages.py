"""The pages and scripts the server serves to browsers: the demo page (``/``), the agent
console (``/console``), the embeddable widget (``/widget.js``, also at the Laravel chatbot
package's ``/chatbot/widget.js``) and their assets (``/static/<name>``).

Files come from ``realtime/static`` (package data, so an installed wheel serves them too),
read once and kept with their gzip form and an ETag. Pages get a Content-Security-Policy of
exactly what they use: scripts, styles and the WebSocket of this origin, nothing inline.
The widget script is meant for other sites' pages, so it may be loaded cross-origin.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).resolve().parent.parent / "static"

# Only what the pages use: their own scripts and styles, this origin's WebSocket and HTTP API
# ('self' covers ws: and wss: of the same host), images of their own or inline data (logos).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg|png)$")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


class Assets:
    """The static files, loaded on first use."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._cache: dict[str, Asset | None] = {}

    def get(self, name: str) -> Asset | None:
        if name not in self._cache:
            path = self.root / name
            media_type = _TYPES.get(path.suffix)
            if media_type is None or not path.is_file():
                self._cache[name] = None
            else:
                body = path.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                self._cache[name] = Asset(body, gzip.compress(body, 9, mtime=0), media_type, etag)
        return self._cache[name]


ASSETS = Assets()


def serve(request: Request, name: str, headers: dict[str, str]) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        return Response("not found", status_code=404, media_type="text/plain")
    common = {"etag": asset.etag, "cache-control": "no-cache", "vary": "Accept-Encoding", **headers}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=common)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            asset.gzipped,
            media_type=asset.media_type,
            headers={**common, "content-encoding": "gzip"},
        )
    return Response(asset.body, media_type=asset.media_type, headers=common)


PAGE_HEADERS = {"content-security-policy": PAGE_CSP, "x-frame-options": "DENY"}
# Other sites' pages load the widget: cross-origin, and readable with CORS for module loaders.
WIDGET_HEADERS = {
    "cross-origin-resource-policy": "cross-origin",
    "access-control-allow-origin": "*",
}


async def demo_page(request: Request) -> Response:
    return serve(request, "index.html", PAGE_HEADERS)


async def console_page(request: Request) -> Response:
    return serve(request, "console.html", PAGE_HEADERS)


async def widget_script(request: Request) -> Response:
    return serve(request, "widget.js", WIDGET_HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if not _ASSET_NAME.fullmatch(name) or name == "widget.js":
        return Response("not found", status_code=404, media_type="text/plain")
    return serve(request, name, {})


routes: list[BaseRoute] = [
    Route("/", demo_page),
    Route("/console", console_page),
    Route("/widget.js", widget_script),
    Route("/chatbot/widget.js", widget_script),
    Route("/static/{name}", asset),
]
