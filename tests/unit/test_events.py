"""Unit and property tests for realtime.events: encoding, and splicing ``seq`` after ``type``."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime import events
from realtime.events import Event, Frame, frame_text, make, to_frame
from tests import strategies

RESERVED = frozenset({"type", "seq", "conversation_id", "ts"})

type_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=30)
json_values = strategies.json_values(leaves=10)
payloads = st.dictionaries(
    st.text(max_size=12).filter(lambda k: k not in RESERVED), json_values, max_size=6
)
seqs = st.integers(min_value=0, max_value=2**63 - 1)


def top_level_pairs(text: str) -> list[tuple[str, Any]]:
    """The top-level (key, value) pairs of a JSON object, in order, duplicates kept."""
    seen: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append(pairs)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return seen[-1]  # the outermost object is decoded last


def check_spliced(text: str, body: bytes, seq: int) -> None:
    original = orjson.loads(body)
    pairs = top_level_pairs(text)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), "no duplicate key"
    assert keys[:2] == ["type", "seq"]
    assert keys[2:] == [k for k in original if k != "type"]
    assert pairs[0] == ("type", original["type"])
    assert pairs[1] == ("seq", seq)
    assert orjson.loads(text) == {**original, "seq": seq}


@given(kind=type_names, conversation_id=st.text(max_size=40), payload=payloads, seq=seqs)
def test_frame_text_of_made_events(
    kind: str, conversation_id: str, payload: dict[str, Any], seq: int
) -> None:
    event = make(kind, conversation_id, **payload)
    assert event.type == kind
    assert event.conversation_id == conversation_id
    assert not event.ephemeral
    text = frame_text(event.type, event.body, seq)
    check_spliced(text, event.body, seq)
    body = orjson.loads(event.body)
    assert body["conversation_id"] == conversation_id
    assert isinstance(body["ts"], int)
    assert {k: body[k] for k in payload} == payload


@given(
    kind=type_names,
    payload=payloads.filter(bool),  # an event body always has fields besides its type
    seq=seqs,
)
def test_frame_text_of_any_body_starting_with_type(
    kind: str, payload: dict[str, Any], seq: int
) -> None:
    body = orjson.dumps({"type": kind, **payload})
    check_spliced(frame_text(kind, body, seq), body, seq)


@settings(max_examples=30)
@given(kind=type_names, conversation_id=st.text(max_size=20), payload=payloads, seq=seqs)
def test_to_frame(kind: str, conversation_id: str, payload: dict[str, Any], seq: int) -> None:
    event = make(kind, conversation_id, **payload)
    frame = to_frame(event, seq)
    assert frame == Frame(seq, kind, frame_text(kind, event.body, seq))


def test_frame_text_example() -> None:
    body = b'{"type":"run.token","conversation_id":"c","ts":1,"run_id":"r","delta":"Hel"}'
    assert frame_text("run.token", body, 17) == (
        '{"type":"run.token","seq":17,"conversation_id":"c","ts":1,"run_id":"r","delta":"Hel"}'
    )


CONSTRUCTED: list[tuple[Event, str, set[str]]] = [
    (events.message_created("c", {"id": "m"}), events.MESSAGE_CREATED, {"message"}),
    (events.run_started("c", "r", "m"), events.RUN_STARTED, {"run_id", "message_id"}),
    (events.run_status("c", "r", "generating"), events.RUN_STATUS, {"run_id", "stage"}),
    (
        events.run_step(
            "c",
            "r",
            step=1,
            thought="t",
            action="search_knowledge",
            params={"q": "x"},
            tool_call_id="call_1",
            observation="o",
        ),
        events.RUN_STEP,
        {"run_id", "step", "thought", "action", "params", "tool_call_id", "observation"},
    ),
    (events.run_token("c", "r", "Hel"), events.RUN_TOKEN, {"run_id", "delta"}),
    (
        events.run_completed("c", "r", {"id": "m"}, confidence=0.5, usage=events.empty_usage()),
        events.RUN_COMPLETED,
        {"run_id", "message", "confidence", "usage"},
    ),
    (
        events.run_failed("c", "r", code="timeout", message="slow", retryable=True),
        events.RUN_FAILED,
        {"run_id", "code", "message", "retryable"},
    ),
    (events.run_cancelled("c", "r", None), events.RUN_CANCELLED, {"run_id", "message"}),
    (events.notice("c", "x", "careful"), events.NOTICE, {"code", "level", "message"}),
]


@pytest.mark.parametrize(("event", "kind", "fields"), CONSTRUCTED, ids=lambda v: str(v)[:20])
def test_constructors_match_the_documented_shapes(
    event: Event, kind: str, fields: set[str]
) -> None:
    assert event.type == kind
    frame = to_frame(event, 5)
    body = orjson.loads(frame.text)
    assert list(body)[:4] == ["type", "seq", "conversation_id", "ts"]
    assert set(body) == {"type", "seq", "conversation_id", "ts", *fields}
    assert body["type"] == kind and body["seq"] == 5 and body["conversation_id"] == "c"


def test_run_step_without_observation_omits_it() -> None:
    event = events.run_step(
        "c", "r", step=2, thought="", action="a", params=None, tool_call_id="t", observation=None
    )
    assert "observation" not in orjson.loads(event.body)


def test_run_failed_with_partial() -> None:
    event = events.run_failed(
        "c", "r", code="interrupted", message="m", retryable=True, partial={"id": "m1"}
    )
    assert orjson.loads(event.body)["partial"] == {"id": "m1"}


def test_typing_is_ephemeral() -> None:
    event = events.typing("c", "agent", False)
    assert event.ephemeral
    assert orjson.loads(event.body) == {
        "type": "typing",
        "conversation_id": "c",
        "ts": orjson.loads(event.body)["ts"],
        "who": "agent",
        "on": False,
    }


def test_terminal_run_events() -> None:
    assert events.TERMINAL_RUN_EVENTS == {"run.completed", "run.failed", "run.cancelled"}
