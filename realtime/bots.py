"""Bot settings: their names, defaults and validation (pure).

Names equal the ChatbotIQ config keys where one exists (``welcome_message``,
``suggested_questions``, ``handoff_enabled``, ...), plus our own (``privacy``,
``allowed_origins``, ``citations_enabled``, ``tools``, ``data_source``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from realtime.agent.tools import DATA_TOOL_NAMES
from realtime.contact import check_field_definitions
from realtime.data.source import validate_data_source
from realtime.errors import ProtocolError
from realtime.types import SLUG_RE

DEFAULT_INSTRUCTIONS = (
    "You are a helpful support assistant. Answer from the knowledge passages you are given "
    "and cite them with their [n] markers. If they do not contain the answer, say so plainly "
    "and offer to connect the visitor with a human."
)

KNOWN_TOOLS = frozenset({"search_knowledge", "request_handoff", *DATA_TOOL_NAMES})


@dataclass(frozen=True, slots=True)
class _Field:
    default: Any
    check: Callable[[Any], str | None]  # returns an error text, or None when valid


def _string(
    max_len: int, *, nullable: bool = False, min_len: int = 0
) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            return "must be a string" + (" or null" if nullable else "")
        if not min_len <= len(value) <= max_len:
            return f"must be {min_len}..{max_len} characters"
        return None

    return check


def _number(lo: float, hi: float, *, integer: bool = False, nullable: bool = False):  # type: ignore[no-untyped-def]
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return "must be an integer" if integer else "must be a number"
        if not lo <= value <= hi:
            return f"must be between {lo} and {hi}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _choice(*options: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in options else "must be one of " + ", ".join(options)

    return check


def _strings(max_items: int, max_len: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or len(value) > max_items:
            return f"must be a list of at most {max_items} strings"
        if not all(isinstance(v, str) and 0 < len(v) <= max_len for v in value):
            return f"items must be non-empty strings of at most {max_len} characters"
        return None

    return check


def _tools(value: Any) -> str | None:
    error = _strings(20, 64)(value)
    if error:
        return error
    unknown = sorted(set(value) - KNOWN_TOOLS)
    return f"unknown tools: {', '.join(unknown)}" if unknown else None


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


RATE_LIMIT_NAMES = (
    "messages_per_minute",  # per identity (session, user, ...) on this bot, every transport
    "messages_per_hour",
    "messages_per_day",
    "ip_per_minute",  # per client address on the documented APIs' endpoints (compat_sse)
    "ip_per_hour",
    "ip_per_day",
)


def _rate_limits(value: Any) -> str | None:
    """Overrides of the server's limits for this bot; the stricter of the two applies."""
    if not isinstance(value, dict):
        return "must be an object"
    unknown = sorted(set(value) - set(RATE_LIMIT_NAMES))
    if unknown:
        return f"unknown limits: {', '.join(unknown)} (known: {', '.join(RATE_LIMIT_NAMES)})"
    for name, limit in value.items():
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10**7
        ):
            return f"{name} must be an integer 1..10000000 or null"
    return None


def _data_source(value: Any) -> str | None:
    try:
        validate_data_source(value)
    except ProtocolError as exc:
        return exc.message
    return None


FIELDS: dict[str, _Field] = {
    "name": _Field("", _string(100)),
    "description": _Field("", _string(300)),
    "model": _Field(None, _string(100, nullable=True, min_len=1)),
    "instructions": _Field(DEFAULT_INSTRUCTIONS, _string(5000)),
    "temperature": _Field(0.7, _number(0, 2)),
    "max_tokens": _Field(1024, _number(1, 32000, integer=True)),
    "language": _Field("en", _string(16, min_len=2)),
    "privacy": _Field("public", _choice("public", "private")),
    "allowed_origins": _Field([], _strings(100, 300)),
    "welcome_message": _Field(None, _string(2000, nullable=True)),
    "warning_message": _Field(None, _string(2000, nullable=True)),
    "suggested_questions": _Field([], _strings(20, 300)),
    "show_suggested_questions": _Field(True, _boolean),
    "suggested_questions_count": _Field(3, _number(0, 20, integer=True)),
    "widget_settings": _Field({}, _object),
    "handoff_enabled": _Field(False, _boolean),
    "handoff_trigger": _Field("button", _choice("button", "auto", "both")),
    "handoff_offline_message": _Field(None, _string(2000, nullable=True)),
    "handoff_agent_label": _Field(None, _string(100, nullable=True)),
    "contact_form_enabled": _Field(False, _boolean),
    "contact_form_fields": _Field(None, check_field_definitions),  # None: name, email, message
    "contact_form_trigger": _Field("both", _choice("button", "no_agent", "both")),
    "contact_form_button_display": _Field("after_response", _choice("always", "after_response")),
    "contact_form_success_message": _Field(None, _string(2000, nullable=True)),
    "agent_confirmations": _Field(False, _boolean),  # agents may approve the visitor's writes
    "citations_enabled": _Field(True, _boolean),
    "include_links": _Field(True, _boolean),
    "citation_threshold": _Field(None, _number(0, 1, nullable=True)),
    "tools": _Field(["search_knowledge"], _tools),
    "data_source": _Field(None, _data_source),
    "rate_limits": _Field({}, _rate_limits),
}


def validate_settings(values: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """Check bot settings; return them with defaults filled in unless ``partial``.

    Raises :class:`ProtocolError` (``invalid_field``) naming every bad field.
    """
    errors: dict[str, str] = {}
    for name, value in values.items():
        spec = FIELDS.get(name)
        if spec is None:
            errors[name] = "unknown setting"
            continue
        error = spec.check(value)
        if error:
            errors[name] = error
    if errors:
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
        exc = ProtocolError("invalid_field", f"invalid bot settings: {detail}")
        exc.fields = errors  # type: ignore[attr-defined]
        raise exc
    if partial:
        return dict(values)
    return {**{k: _copy(f.default) for k, f in FIELDS.items()}, **values}


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config with defaults for settings added after it was written."""
    return {**{k: _copy(f.default) for k, f in FIELDS.items()}, **config}


def origin_allowed(origin: str, allowed: Sequence[str]) -> bool:
    """Whether a browser ``Origin`` may use a bot whose ``allowed_origins`` is ``allowed``.

    An empty list allows every origin; ``*`` too. An entry is an origin
    (``https://shop.example.com``, default ports optional) or a wildcard for subdomains
    (``https://*.example.com``: ``https://a.example.com``, not ``https://example.com``).
    Scheme and host compare without case; paths and trailing slashes are ignored.
    """
    if not allowed or "*" in allowed:
        return True
    seen = _origin_key(origin)
    if seen is None:
        return False
    scheme, host, port = seen
    for entry in allowed:
        wanted = _origin_key(entry.replace("*.", "wildcard.", 1))
        if wanted is None or (wanted[0], wanted[2]) != (scheme, port):
            continue
        if entry.split("//", 1)[-1].startswith("*."):
            suffix = wanted[1].removeprefix("wildcard")
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif wanted[1] == host:
            return True
    return False


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_slug(slug: Any) -> str:
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise ProtocolError("invalid_field", "bot_id must be 3-50 characters of A-Z a-z 0-9 _ -")
    return slug


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
