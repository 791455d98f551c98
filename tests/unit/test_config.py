"""Unit tests for Settings.from_env."""

from __future__ import annotations

from dataclasses import fields

import pytest

from realtime.config import Settings


def test_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({}).extra == {}


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_PORT", "8123")
    assert Settings.from_env().port == 8123


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " On "])
def test_true_booleans(raw: str) -> None:
    settings = Settings.from_env({"REALTIME_WS_PER_MESSAGE_DEFLATE": raw})
    assert settings.ws_per_message_deflate is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", "", "  "])
def test_false_booleans(raw: str) -> None:
    settings = Settings.from_env({"REALTIME_LLM_INCLUDE_USAGE": raw})
    assert settings.llm_include_usage is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "t"])
def test_bad_boolean_names_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="REALTIME_LLM_INCLUDE_USAGE"):
        Settings.from_env({"REALTIME_LLM_INCLUDE_USAGE": raw})


def test_integers() -> None:
    settings = Settings.from_env(
        {"REALTIME_PORT": "9000", "REALTIME_QUEUE_LIMIT": " 7 ", "REALTIME_REPLAY_EVENTS": "-1"}
    )
    assert (settings.port, settings.queue_limit, settings.replay_events) == (9000, 7, -1)
    assert isinstance(settings.port, int)


@pytest.mark.parametrize("raw", ["9000.5", "8k", "", "1e3"])
def test_bad_integer_names_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="REALTIME_PORT") as info:
        Settings.from_env({"REALTIME_PORT": raw})
    assert repr(raw) in str(info.value)


def test_floats() -> None:
    settings = Settings.from_env(
        {
            "REALTIME_RUN_TIMEOUT": "1.5",
            "REALTIME_HELLO_TIMEOUT": "3",
            "REALTIME_DRAIN_TIMEOUT": "1e1",
        }
    )
    assert settings.run_timeout == 1.5
    assert settings.hello_timeout == 3.0 and isinstance(settings.hello_timeout, float)
    assert settings.drain_timeout == 10.0


@pytest.mark.parametrize("raw", ["fast", "", "1,5"])
def test_bad_float_names_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="REALTIME_RUN_TIMEOUT"):
        Settings.from_env({"REALTIME_RUN_TIMEOUT": raw})


def test_strings_are_kept_verbatim() -> None:
    settings = Settings.from_env(
        {
            "REALTIME_HOST": "0.0.0.0",
            "REALTIME_DATABASE_URL": "postgresql://x",
            "REALTIME_MODEL": "",
        }
    )
    assert settings.host == "0.0.0.0"
    assert settings.database_url == "postgresql://x"
    assert settings.model == ""


def test_openai_names_have_no_prefix() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": "http://llm"})
    assert settings.openai_api_key == "sk-1"
    assert settings.openai_base_url == "http://llm"
    assert settings.extra == {}
    prefixed = Settings.from_env({"REALTIME_OPENAI_API_KEY": "sk-2"})
    assert prefixed.openai_api_key == ""


def test_unknown_realtime_names_go_to_extra() -> None:
    settings = Settings.from_env(
        {"REALTIME_FUTURE_FLAG": "on", "REALTIME_PORT": "1", "HOME": "/root", "OTHER_X": "y"}
    )
    assert settings.extra == {"REALTIME_FUTURE_FLAG": "on"}
    assert settings.port == 1


@pytest.mark.parametrize(
    "name", ["REALTIME_OPENAI_API_KEY", "REALTIME_OPENAI_BASE_URL", "REALTIME_EXTRA"]
)
def test_realtime_names_that_are_not_read_go_to_extra(name: str) -> None:
    """The docstring: unknown ``REALTIME_*`` names are kept in ``extra``.

    These names are read by no setting (the OpenAI ones are read without the prefix, and
    ``extra`` is not a variable), yet ``from_env`` counts them as known and drops them.
    """
    assert Settings.from_env({name: "v"}).extra == {name: "v"}


def test_overrides_win() -> None:
    settings = Settings.from_env({"REALTIME_PORT": "1"}, port=2, provider="offline")
    assert settings.port == 2
    assert settings.provider == "offline"


def test_every_setting_has_a_variable() -> None:
    env = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        name = f.name.upper() if f.name.startswith("openai_") else f"REALTIME_{f.name.upper()}"
        default = f.default
        env[name] = "1" if isinstance(default, bool | int | float) else "s"
    settings = Settings.from_env(env)
    assert settings.extra == {}
    assert settings.port == 1 and settings.host == "s" and settings.llm_include_usage is True


@pytest.mark.parametrize(
    ("provider", "key", "url", "configured"),
    [
        ("offline", "sk", "", False),
        ("openai", "", "", True),
        ("auto", "", "", False),
        ("auto", "sk", "", True),
        ("auto", "", "http://llm", True),
    ],
)
def test_llm_configured(provider: str, key: str, url: str, configured: bool) -> None:
    settings = Settings(provider=provider, openai_api_key=key, openai_base_url=url)
    assert settings.llm_configured is configured
