"""The visitor WebSocket protocol, sans I/O: client frames in, typed commands out.

:func:`parse_command` turns one text frame into one command, or raises
:class:`~realtime.errors.ProtocolError` whose ``id`` is the client's ``id`` when it could be
read, so the error can echo it. Each command type has its own small parser in
:data:`PARSERS`; nothing is dispatched by munging strings. See ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_ID_CHARS = 128
MAX_SESSION_CHARS = 256
MAX_SIGNED_CONTEXT_CHARS = 32768  # realtime.envelopes.MAX_TOKEN_CHARS
MAX_JSON_DEPTH = 32  # nesting of objects and arrays in one frame or body
MAX_JSON_VALUES = 2000  # values (keys, items) in one frame or body

ClientId = str | int | None


@dataclass(frozen=True, slots=True)
class Resume:
    conversation_id: str
    after_seq: int
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Hello:
    id: ClientId
    bot: str | None  # required, except with ``signed_context`` (its channel names the bot)
    session_id: str | None = None
    api_key: str | None = None
    user: str | None = None
    resume: Resume | None = None
    signed_context: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSend:
    id: ClientId
    content: str
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: ClientId
    conversation_id: str
    after_seq: int | None = None
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: ClientId
    conversation_id: str


@dataclass(frozen=True, slots=True)
class RunCancel:
    id: ClientId
    conversation_id: str
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    id: ClientId
    conversation_id: str
    on: bool = True


@dataclass(frozen=True, slots=True)
class ConfirmationResolve:
    id: ClientId
    conversation_id: str
    tool_call_id: str
    decision: str  # approve | reject
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HandoffCommand:
    """``handoff.request`` / ``handoff.cancel`` (visitors)."""

    id: ClientId
    action: str  # request | cancel
    conversation_id: str | None  # request without one: a new conversation


@dataclass(frozen=True, slots=True)
class Feedback:
    """A visitor's thumbs up or down on an answer (``value`` None takes it back)."""

    id: ClientId
    conversation_id: str
    message_id: str
    value: str | None


@dataclass(frozen=True, slots=True)
class ContactSubmit:
    id: ClientId
    conversation_id: str | None  # None: a new conversation
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ping:
    id: ClientId


Command = (
    Hello
    | MessageSend
    | Subscribe
    | Unsubscribe
    | RunCancel
    | ConfirmationResolve
    | HandoffCommand
    | Typing
    | Feedback
    | ContactSubmit
    | Ping
)


Parser = Callable[[dict[str, Any], "ClientId"], Any]


def parse_command(
    data: str, *, max_frame_bytes: int = 65536, parsers: Mapping[str, Parser] | None = None
) -> Any:
    """Parse one client text frame with an endpoint's ``parsers`` (the visitor's by default).

    Raises ProtocolError (with ``.id`` when known).
    """
    parsers = PARSERS if parsers is None else parsers
    if (
        len(data) * 4 > max_frame_bytes
        and len(data.encode("utf-8", "surrogatepass")) > max_frame_bytes
    ):
        raise _error("frame_too_large", f"frames are limited to {max_frame_bytes} bytes", None)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _error("invalid_json", "the frame is not valid JSON", None) from None
    if not isinstance(obj, dict):
        raise _error("invalid_json", "the frame must be a JSON object", None)
    check_shape(obj)
    client_id = obj.get("id")
    if client_id is not None and not _valid_id(client_id):
        raise _error(
            "invalid_field",
            f"'id' must be a string of 1..{MAX_ID_CHARS} characters or an integer",
            None,
        )
    kind = obj.get("type")
    if kind is None:
        raise _error("missing_field", "'type' is required", client_id)
    parser = parsers.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise _error("unknown_type", f"unknown message type {str(kind)[:40]!r}", client_id)
    try:
        return parser(obj, client_id)
    except ProtocolError as exc:
        exc.id = client_id  # type: ignore[attr-defined]
        raise


def check_shape(
    value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES
) -> None:
    """Refuse (``json_too_complex``) JSON nested deeper than ``max_depth`` or holding more
    than ``max_values`` values: a small frame can still be costly to walk, store and echo;
    and (``invalid_field``) any key or string holding U+0000, which no text column stores
    (PostgreSQL refuses it) and no client means. Iterative, so the check itself cannot
    exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    count, nul = 0, False
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
            nul = nul or any("\x00" in key for key in item)
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise _error("json_too_complex", f"JSON may nest at most {max_depth} levels deep", None)
        count += len(children)
        if count > max_values:
            raise _error("json_too_complex", f"JSON may hold at most {max_values} values", None)
        for child in children:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
            elif isinstance(child, str) and "\x00" in child:
                nul = True
    if nul:  # after the whole shape: too complex is said first, as it is cheaper to fix
        raise _error("invalid_field", "text may not contain the NUL character (U+0000)", None)
    return None


def _error(code: str, message: str, client_id: ClientId) -> ProtocolError:
    exc = ProtocolError(code, message)
    exc.id = client_id  # type: ignore[attr-defined]
    return exc


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def string_field(obj: dict[str, Any], name: str, *, max_len: int, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise ProtocolError("missing_field", f"'{name}' is required", field=name)
        return None
    if not isinstance(value, str):
        raise ProtocolError("invalid_field", f"'{name}' must be a string", field=name)
    if not value or len(value) > max_len:
        raise ProtocolError(
            "invalid_field", f"'{name}' must be 1..{max_len} characters", field=name
        )
    return value


def seq_field(obj: dict[str, Any], name: str, *, required: bool) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise ProtocolError("missing_field", f"'{name}' is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ProtocolError("invalid_field", f"'{name}' must be a non-negative integer", field=name)
    return value


def _hello(obj: dict[str, Any], client_id: ClientId) -> Hello:
    resume = None
    raw = obj.get("resume")
    if raw is not None:
        if not isinstance(raw, dict):
            raise ProtocolError("invalid_field", "'resume' must be an object")
        resume = Resume(
            conversation_id=string_field(raw, "conversation_id", max_len=64),
            after_seq=seq_field(raw, "after_seq", required=True),
            epoch=seq_field(raw, "epoch", required=False),
        )
    signed_context = string_field(
        obj, "signed_context", max_len=MAX_SIGNED_CONTEXT_CHARS, required=False
    )
    return Hello(
        id=client_id,
        bot=string_field(obj, "bot", max_len=120, required=signed_context is None),
        session_id=string_field(obj, "session_id", max_len=MAX_SESSION_CHARS, required=False),
        api_key=string_field(obj, "api_key", max_len=200, required=False),
        user=string_field(obj, "user", max_len=MAX_SESSION_CHARS, required=False),
        resume=resume,
        signed_context=signed_context,
    )


def _message_send(obj: dict[str, Any], client_id: ClientId) -> MessageSend:
    content = obj.get("content")
    if content is None:
        raise ProtocolError("missing_field", "'content' is required")
    if not isinstance(content, str):
        raise ProtocolError("invalid_field", "'content' must be a string")
    return MessageSend(
        id=client_id,
        content=content,
        conversation_id=string_field(obj, "conversation_id", max_len=64, required=False),
    )


def _subscribe(obj: dict[str, Any], client_id: ClientId) -> Subscribe:
    return Subscribe(
        id=client_id,
        conversation_id=string_field(obj, "conversation_id", max_len=64),
        after_seq=seq_field(obj, "after_seq", required=False),
        epoch=seq_field(obj, "epoch", required=False),
    )


def _unsubscribe(obj: dict[str, Any], client_id: ClientId) -> Unsubscribe:
    return Unsubscribe(
        id=client_id, conversation_id=string_field(obj, "conversation_id", max_len=64)
    )


def _run_cancel(obj: dict[str, Any], client_id: ClientId) -> RunCancel:
    return RunCancel(
        id=client_id,
        conversation_id=string_field(obj, "conversation_id", max_len=64),
        run_id=string_field(obj, "run_id", max_len=64, required=False),
    )


def _typing(obj: dict[str, Any], client_id: ClientId) -> Typing:
    on = obj.get("on", True)
    if not isinstance(on, bool):
        raise ProtocolError("invalid_field", "'on' must be true or false")
    return Typing(
        id=client_id, conversation_id=string_field(obj, "conversation_id", max_len=64), on=on
    )


def _confirmation_resolve(obj: dict[str, Any], client_id: ClientId) -> ConfirmationResolve:
    decision = obj.get("decision")
    if decision is None:
        raise ProtocolError("missing_field", "'decision' is required")
    if decision not in ("approve", "reject"):
        raise ProtocolError("invalid_field", "'decision' must be 'approve' or 'reject'")
    params = obj.get("params")
    if params is not None and not isinstance(params, dict):
        raise ProtocolError("invalid_field", "'params' must be an object")
    return ConfirmationResolve(
        id=client_id,
        conversation_id=string_field(obj, "conversation_id", max_len=64),
        tool_call_id=string_field(obj, "tool_call_id", max_len=128),
        decision=decision,
        params=params,
    )


def _handoff(action: str) -> Callable[[dict[str, Any], ClientId], HandoffCommand]:
    def parse(obj: dict[str, Any], client_id: ClientId) -> HandoffCommand:
        conversation_id = string_field(
            obj, "conversation_id", max_len=64, required=action != "request"
        )
        return HandoffCommand(client_id, action, conversation_id)

    return parse


def _feedback(obj: dict[str, Any], client_id: ClientId) -> Feedback:
    if "value" not in obj:
        raise ProtocolError("missing_field", "'value' is required")
    value = obj["value"]
    if value not in ("positive", "negative", None):
        raise ProtocolError("invalid_field", "'value' must be 'positive', 'negative' or null")
    return Feedback(
        id=client_id,
        conversation_id=string_field(obj, "conversation_id", max_len=64),
        message_id=string_field(obj, "message_id", max_len=64),
        value=value,
    )


def _contact_submit(obj: dict[str, Any], client_id: ClientId) -> ContactSubmit:
    fields = obj.get("fields")
    if fields is None:
        raise ProtocolError("missing_field", "'fields' is required")
    if not isinstance(fields, dict):
        raise ProtocolError("invalid_field", "'fields' must be an object")
    return ContactSubmit(
        id=client_id,
        conversation_id=string_field(obj, "conversation_id", max_len=64, required=False),
        fields=fields,
    )


def _ping(obj: dict[str, Any], client_id: ClientId) -> Ping:
    return Ping(id=client_id)


PARSERS: dict[str, Callable[[dict[str, Any], ClientId], Command]] = {
    "hello": _hello,
    "message.send": _message_send,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "run.cancel": _run_cancel,
    "confirmation.resolve": _confirmation_resolve,
    "handoff.request": _handoff("request"),
    "handoff.cancel": _handoff("cancel"),
    "typing": _typing,
    "feedback": _feedback,
    "contact.submit": _contact_submit,
    "ping": _ping,
}


def encode(kind: str, client_id: ClientId = None, /, **fields: Any) -> str:
    """A server frame that is not a stream event (welcome, ack, pong, error)."""
    body: dict[str, Any] = {"type": kind}
    if client_id is not None:
        body["id"] = client_id
    body.update(fields)
    return orjson.dumps(body).decode()


def error_frame(code: str, message: str, client_id: ClientId = None, **extra: Any) -> str:
    """``{"type":"error","code","message","id"}``: ``id`` echoes the command's (null if none)."""
    return orjson.dumps(
        {"type": "error", "code": code, "message": message, "id": client_id, **extra}
    ).decode()
