"""Unit tests for bot settings: defaults, validation, partial updates, slugs."""

from __future__ import annotations

from typing import Any

import pytest

from realtime.bots import (
    DEFAULT_INSTRUCTIONS,
    FIELDS,
    check_slug,
    validate_settings,
    with_defaults,
)
from realtime.errors import ProtocolError


def invalid(values: dict[str, Any], *, partial: bool = True) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        validate_settings(values, partial=partial)
    assert info.value.code == "invalid_field"
    return info.value


def test_defaults() -> None:
    settings = validate_settings({}, partial=False)
    assert set(settings) == set(FIELDS)
    assert settings["instructions"] == DEFAULT_INSTRUCTIONS
    assert settings["temperature"] == 0.7
    assert settings["max_tokens"] == 1024
    assert settings["language"] == "en"
    assert settings["privacy"] == "public"
    assert settings["model"] is None
    assert settings["tools"] == ["search_knowledge"]
    assert settings["allowed_origins"] == []
    assert settings["widget_settings"] == {}
    assert settings["show_suggested_questions"] is True
    assert settings["handoff_trigger"] == "button"
    assert settings["citation_threshold"] is None
    assert settings["data_source"] is None


def test_every_default_is_valid() -> None:
    defaults = {name: spec.default for name, spec in FIELDS.items()}
    assert validate_settings(defaults, partial=True) == defaults


def test_defaults_are_copies() -> None:
    first = validate_settings({}, partial=False)
    first["tools"].append("x")
    first["widget_settings"]["color"] = "red"
    second = validate_settings({}, partial=False)
    assert second["tools"] == ["search_knowledge"]
    assert second["widget_settings"] == {}
    assert with_defaults({})["tools"] == ["search_knowledge"]


def test_full_validation_fills_in_defaults_around_given_values() -> None:
    settings = validate_settings({"name": "Bot", "temperature": 0}, partial=False)
    assert settings["name"] == "Bot"
    assert settings["temperature"] == 0
    assert settings["max_tokens"] == 1024


def test_partial_update_returns_only_the_given_values() -> None:
    assert validate_settings({"name": "Bot", "privacy": "private"}, partial=True) == {
        "name": "Bot",
        "privacy": "private",
    }
    assert validate_settings({}, partial=True) == {}


def test_with_defaults_keeps_stored_values() -> None:
    config = with_defaults({"name": "Old", "unknown_later_removed": 1})
    assert config["name"] == "Old"
    assert config["unknown_later_removed"] == 1
    assert config["language"] == "en"


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("name", 5, "must be a string"),
        ("name", "x" * 101, "must be 0..100 characters"),
        ("description", None, "must be a string"),
        ("model", "", "must be 1..100 characters"),
        ("model", 3, "must be a string or null"),
        ("instructions", "x" * 5001, "must be 0..5000 characters"),
        ("temperature", True, "must be a number"),
        ("temperature", "0.5", "must be a number"),
        ("temperature", 2.5, "must be between 0 and 2"),
        ("temperature", -0.1, "must be between 0 and 2"),
        ("temperature", float("nan"), "must be between 0 and 2"),
        ("max_tokens", 1.0, "must be an integer"),
        ("max_tokens", 0, "must be between 1 and 32000"),
        ("max_tokens", 32001, "must be between 1 and 32000"),
        ("language", "e", "must be 2..16 characters"),
        ("privacy", "secret", "must be one of public, private"),
        ("privacy", ["public"], "must be one of public, private"),
        ("allowed_origins", "https://a", "must be a list of at most 100 strings"),
        ("allowed_origins", [""], "items must be non-empty strings of at most 300 characters"),
        ("allowed_origins", [1], "items must be non-empty strings"),
        ("suggested_questions", ["q"] * 21, "must be a list of at most 20 strings"),
        ("show_suggested_questions", 1, "must be true or false"),
        ("suggested_questions_count", 21, "must be between 0 and 20"),
        ("widget_settings", None, "must be an object"),
        ("widget_settings", [], "must be an object"),
        ("handoff_trigger", "never", "must be one of button, auto, both"),
        ("citation_threshold", 1.5, "must be between 0 and 1"),
        ("tools", ["search_knowledge", "rm_rf"], "unknown tools: rm_rf"),
        ("tools", "search_knowledge", "must be a list"),
        ("data_source", [], "data_source must be an object or null"),
        ("data_source", {"url": "sqlite:///x.db"}, "data_source.tables must be"),
        ("data_source", {"url": 5, "tables": {"t": ["read"]}}, "data_source.url must be"),
        (
            "data_source",
            {"url": "sqlite:///x.db", "tables": {"t": ["drop"]}},
            "data_source.tables.t",
        ),
        (
            "data_source",
            {"url": "postgresql://h/db", "schema": "a; DROP", "tables": {"t": ["read"]}},
            "data_source.schema must be",
        ),
        (
            "data_source",
            {"url": "postgresql://h/db", "schema": 1, "tables": {"t": ["read"]}},
            "data_source.schema must be",
        ),
        ("nonsense", 1, "unknown setting"),
    ],
)
def test_each_bad_field_is_named(name: str, value: Any, error: str) -> None:
    exc = invalid({name: value})
    assert exc.fields[name].startswith(error)  # type: ignore[attr-defined]
    assert f"{name}: " in exc.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", None),
        ("model", "gpt-4o"),
        ("temperature", 0),
        ("temperature", 2),
        ("temperature", 1.25),
        ("max_tokens", 1),
        ("max_tokens", 32000),
        ("welcome_message", None),
        ("welcome_message", ""),
        ("citation_threshold", None),
        ("citation_threshold", 0.0),
        ("data_source", None),
        ("data_source", {"url": "sqlite:///x.db", "tables": {"t": ["read", "update"]}}),
        (
            "data_source",
            {"url": "postgresql://u@h/db", "schema": "demo_shop", "tables": {"t": ["read"]}},
        ),
        ("tools", []),
        ("handoff_trigger", "both"),
        ("allowed_origins", ["https://example.com"]),
    ],
)
def test_valid_values(name: str, value: Any) -> None:
    assert validate_settings({name: value}, partial=True) == {name: value}


def test_every_bad_field_is_reported_at_once() -> None:
    exc = invalid(
        {"temperature": 9, "privacy": "x", "name": "ok", "bogus": True, "tools": ["nope"]},
        partial=False,
    )
    assert set(exc.fields) == {"temperature", "privacy", "bogus", "tools"}  # type: ignore[attr-defined]
    # sorted by name, "; "-separated
    assert exc.message == (
        "invalid bot settings: bogus: unknown setting; privacy: must be one of public, private; "
        "temperature: must be between 0 and 2; tools: unknown tools: nope"
    )


@pytest.mark.parametrize("slug", ["abc", "demo", "A_b-9", "x" * 50])
def test_good_slugs(slug: str) -> None:
    assert check_slug(slug) == slug


@pytest.mark.parametrize("slug", ["ab", "x" * 51, "a b c", "ümlaut", "a/b/c", None, 123, ""])
def test_bad_slugs(slug: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        check_slug(slug)
    assert info.value.code == "invalid_field"
    assert "bot_id" in info.value.message


def test_slug_rejects_a_trailing_newline() -> None:
    with pytest.raises(ProtocolError):
        check_slug("demo\n")
