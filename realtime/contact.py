"""The contact form (lead capture): its fields as a bot defines them, and a visitor's
submission checked against them (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from realtime.errors import ProtocolError

FIELD_TYPES = {"text": 200, "email": 254, "tel": 40, "textarea": 2000}  # type -> longest value
DEFAULT_FIELDS: list[dict[str, Any]] = [
    {"name": "name", "label": "Name", "type": "text", "required": True},
    {"name": "email", "label": "Email", "type": "email", "required": True},
    {"name": "message", "label": "Message", "type": "textarea", "required": False},
]
MAX_FIELDS = 10
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{3,40}$")


def check_field_definitions(value: Any) -> str | None:
    """A bot's ``contact_form_fields``: None (the default fields) or a list of
    ``{"name", "label", "type", "required"}``; an error text, or None when valid."""
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_FIELDS:
        return f"must be null or a list of 1..{MAX_FIELDS} fields"
    names = set()
    for field in value:
        if not isinstance(field, dict) or set(field) - {"name", "label", "type", "required"}:
            return 'fields are objects with "name", "label", "type" and "required"'
        name, label = field.get("name"), field.get("label", "")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in names:
            return "each field needs a distinct name of a-z 0-9 _ (up to 32)"
        names.add(name)
        if not isinstance(label, str) or len(label) > 100:
            return "a field's label is a string of up to 100 characters"
        if field.get("type", "text") not in FIELD_TYPES:
            return "a field's type is one of " + ", ".join(FIELD_TYPES)
        if not isinstance(field.get("required", False), bool):
            return "a field's required is true or false"
    return None


def fields_of(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The bot's fields, complete (labels, types and required filled in)."""
    defined = config.get("contact_form_fields") or DEFAULT_FIELDS
    return [
        {
            "name": f["name"],
            "label": f.get("label") or f["name"].replace("_", " ").capitalize(),
            "type": f.get("type", "text"),
            "required": bool(f.get("required", False)),
        }
        for f in defined
    ]


def check_submission(fields: list[dict[str, Any]], submitted: Mapping[str, Any]) -> dict[str, str]:
    """The visitor's answers, trimmed, for exactly the bot's fields; ``missing_field`` or
    ``invalid_field`` naming the first that does not fit."""
    known = {f["name"]: f for f in fields}
    unknown = sorted(set(submitted) - set(known))
    if unknown:
        raise ProtocolError(
            "invalid_field", f"unknown contact field {unknown[0][:40]!r}", field=unknown[0][:40]
        )
    answers: dict[str, str] = {}
    for name, field in known.items():
        value = submitted.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if field["required"]:
                raise ProtocolError("missing_field", f"'{name}' is required", field=name)
            continue
        if not isinstance(value, str):
            raise ProtocolError("invalid_field", f"'{name}' must be a string", field=name)
        value = value.strip()
        kind = field["type"]
        if len(value) > FIELD_TYPES[kind]:
            raise ProtocolError(
                "invalid_field", f"'{name}' is over {FIELD_TYPES[kind]} characters", field=name
            )
        if kind == "email" and not _EMAIL.fullmatch(value):
            raise ProtocolError("invalid_field", f"'{name}' is not an email address", field=name)
        if kind == "tel" and not _PHONE.fullmatch(value):
            raise ProtocolError("invalid_field", f"'{name}' is not a phone number", field=name)
        answers[name] = value
    if not answers:
        raise ProtocolError("missing_field", "the contact form is empty")
    return answers
