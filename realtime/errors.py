"""Every error the server reports, as one small tree.

::

    RealtimeError                 code, message, retryable, status
    ├── ProtocolError             the client sent something malformed        (400)
    │   └── PayloadTooLarge       a request body over its limit              (413)
    ├── AuthError                 not authenticated / not allowed            (401, 403)
    │   └── Forbidden                                                        (403)
    │       └── EnvelopeError     a refused signed context (realtime.envelopes): malformed,
    │                             tampered, invalid, version, expired, channel
    ├── NotFound                  unknown, or not yours (no existence oracle) (404)
    ├── Conflict                  a valid request the current state refuses (409)
    ├── RateLimited               too many requests; retry later             (429)
    │   └── QuotaExceeded         the tenant's monthly messages are used up  (429)
    └── RunError                  why a run failed: the code of ``run.failed`` (502/503/504)

    ToolArgumentError             (not reported to clients) what a tool tells the model

Each error carries a stable ``code`` that clients switch on (documented in
``docs/protocol.md``) and a ``retryable`` flag. Transports map the tree to their own shapes
in one place each: the WebSocket endpoint to ``{"type":"error",...}`` frames, HTTP routes to
a status and a JSON body.
"""

from __future__ import annotations

from typing import Any


class RealtimeError(Exception):
    """Base of every error we report to a client."""

    code: str = "internal_error"
    status: int = 500
    retryable: bool = False

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        *,
        retryable: bool | None = None,
        field: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.message = message or self.code.replace("_", " ")
        self.field = field  # the input field at fault, when one is
        super().__init__(self.message)

    def details(self) -> dict[str, Any]:
        """What an error reply carries beside ``code`` and ``message``."""
        return {"field": self.field} if self.field is not None else {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details()}


class ProtocolError(RealtimeError):
    """Malformed input: not JSON, unknown type, a missing or invalid field, over a limit."""

    code = "invalid_request"
    status = 400


class PayloadTooLarge(ProtocolError):
    code = "body_too_large"
    status = 413


class AuthError(RealtimeError):
    code = "unauthorized"
    status = 401


class Forbidden(AuthError):
    code = "forbidden"
    status = 403


class NotFound(RealtimeError):
    code = "not_found"
    status = 404


class Conflict(RealtimeError):
    code = "conflict"
    status = 409


class RateLimited(RealtimeError):
    code = "rate_limited"
    status = 429
    retryable = True

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(None, message or "too many requests, slow down")
        self.retry_after = retry_after


class QuotaExceeded(RateLimited):
    """The tenant's monthly message quota is used up (until the next month, UTC)."""

    code = "quota_exceeded"

    def __init__(self, retry_after: float) -> None:
        super().__init__("this month's message quota is used up", retry_after=retry_after)


class RunError(RealtimeError):
    """Why a run failed. ``code`` is one of :data:`RUN_FAILURE_CODES`."""

    code = "provider_error"
    status = 502


RUN_FAILURE_CODES: dict[str, bool] = {
    # code: retryable
    "provider_unavailable": True,  # the LLM endpoint could not be reached
    "provider_error": True,  # the LLM endpoint answered with a server error
    "provider_auth": False,  # the LLM endpoint refused our credentials
    "provider_rejected": False,  # the LLM endpoint refused the request (400-class)
    "rate_limited": True,  # the LLM endpoint rate-limited us
    "timeout": True,  # no data from the LLM within the read timeout, or the run took too long
    "max_steps": False,  # the model kept calling tools past the step limit
    "bot_unavailable": False,  # the bot was deleted while the message waited
    "data_source_unavailable": True,  # the bot's database cannot be opened
    "confirmation_expired": False,  # nobody approved or rejected a write in time
    "interrupted": True,  # the server stopped while the run was going on
    "broker_unavailable": True,  # Redis was unreachable for longer than the outage grace
    "internal_error": True,  # a bug on our side; logged with a traceback
}


def run_error(code: str, message: str) -> RunError:
    return RunError(code, message, retryable=RUN_FAILURE_CODES.get(code, False))


class ToolArgumentError(ValueError):
    """Tool arguments the model wrote that do not fit; the model sees the message and retries.

    Never reaches a client: tools turn it into an observation starting with ``error:``.
    """
