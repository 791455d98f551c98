"""The Starlette application: every route of the core server, composed declaratively."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from realtime.transport import admin, http, pages
from realtime.transport.console import console_endpoint
from realtime.transport.security import SecurityHeaders
from realtime.transport.ws import visitor_endpoint

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def core_routes() -> list[BaseRoute]:
    return [
        WebSocketRoute("/ws", visitor_endpoint),
        WebSocketRoute("/ws/console", console_endpoint),
        Route("/realtime/v1/agents/login", http.agent_login, methods=["POST"]),
        Route("/realtime/v1/agents/logout", http.agent_logout, methods=["POST"]),
        Route("/health", http.health),
        Route("/ready", http.ready),
        Route("/metrics", http.metrics),
        Route(
            "/realtime/v1/conversations/{conversation_id}/messages",
            http.conversation_messages,
        ),
        Route(
            "/realtime/v1/conversations/{conversation_id}/messages",
            http.conversation_messages_preflight,
            methods=["OPTIONS"],
        ),
        Route("/docs/{name}", http.docs),
        *admin.routes,
        *pages.routes,
    ]


def asgi_app(lifespan: Lifespan, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The app over ``lifespan``, which must set ``app.state.engine``, ``.admin``, ``.started``."""
    return Starlette(
        routes=[*core_routes(), *extra_routes],
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
    )


__all__ = ["asgi_app", "core_routes"]
