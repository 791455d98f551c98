"""realtime: a WebSocket-native realtime server for AI chat agents.

The public API: :class:`Settings`, :class:`Engine`, the error tree, and the event names.
Run it with ``realtime serve``; embed it with :func:`realtime.server.create_app`.
"""

from realtime.config import Settings
from realtime.engine import Accepted, Engine, History, Session
from realtime.errors import (
    AuthError,
    Conflict,
    Forbidden,
    NotFound,
    ProtocolError,
    RateLimited,
    RealtimeError,
    RunError,
)

__version__ = "0.1.0"

__all__ = [
    "Accepted",
    "AuthError",
    "Conflict",
    "Engine",
    "Forbidden",
    "History",
    "NotFound",
    "ProtocolError",
    "RateLimited",
    "RealtimeError",
    "RunError",
    "Session",
    "Settings",
    "__version__",
]
