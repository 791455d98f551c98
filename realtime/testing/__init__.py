"""Test helpers: a scriptable fake OpenAI Chat Completions server.

The names are loaded lazily so that ``python -m realtime.testing.fake_openai`` does not
import the module twice (runpy warns about that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.testing.fake_openai import (
        Disconnect,
        Error,
        FakeOpenAI,
        Received,
        Rule,
        Stall,
        Step,
        Text,
        ToolCall,
        Usage,
        split_tokens,
    )

__all__ = [
    "Disconnect",
    "Error",
    "FakeOpenAI",
    "Received",
    "Rule",
    "Stall",
    "Step",
    "Text",
    "ToolCall",
    "Usage",
    "split_tokens",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("realtime.testing.fake_openai"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
