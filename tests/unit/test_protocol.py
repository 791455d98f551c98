"""Unit and property tests for realtime.protocol: client frames in, typed commands out."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.errors import ProtocolError
from realtime.protocol import (
    MAX_ID_CHARS,
    PARSERS,
    Command,
    ConfirmationResolve,
    ContactSubmit,
    Feedback,
    HandoffCommand,
    Hello,
    MessageSend,
    Ping,
    Resume,
    RunCancel,
    Subscribe,
    Typing,
    Unsubscribe,
    encode,
    error_frame,
    parse_command,
)
from tests import strategies

# Text as clients send it; a NUL anywhere is refused before any command is read (below).
NO_NUL = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")

COMMAND_TYPES = (
    Hello,
    MessageSend,
    Subscribe,
    Unsubscribe,
    RunCancel,
    ConfirmationResolve,
    HandoffCommand,
    Typing,
    Feedback,
    ContactSubmit,
    Ping,
)
TYPE_OF = {
    "hello": Hello,
    "message.send": MessageSend,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "run.cancel": RunCancel,
    "confirmation.resolve": ConfirmationResolve,
    "handoff.request": HandoffCommand,
    "handoff.cancel": HandoffCommand,
    "typing": Typing,
    "feedback": Feedback,
    "contact.submit": ContactSubmit,
    "ping": Ping,
}
KNOWN_KEYS = frozenset(
    {
        "type",
        "id",
        "bot",
        "session_id",
        "api_key",
        "user",
        "resume",
        "content",
        "conversation_id",
        "after_seq",
        "epoch",
        "run_id",
        "on",
        "tool_call_id",
        "decision",
        "params",
        "message_id",
        "value",
        "fields",
    }
)
DOCUMENTED_CODES = {"invalid_json", "missing_field", "invalid_field", "unknown_type"}


def is_valid_id(value: Any) -> bool:
    """The documented rule: a string of 1..128 characters, or an integer in ±2**53 (not bool)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**53
    return isinstance(value, str) and 1 <= len(value) <= MAX_ID_CHARS


def parse_error(text: str, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_command(text, **kwargs)
    return info.value


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --------------------------------------------------------------------------- examples: commands


def test_hello_minimal() -> None:
    assert parse_command('{"type":"hello","bot":"demo"}') == Hello(id=None, bot="demo")


def test_hello_full() -> None:
    frame = {
        "type": "hello",
        "id": "h1",
        "bot": "acme/support",
        "session_id": "s-42",
        "api_key": "rt_key",
        "user": "u-1",
        "resume": {"conversation_id": "c1", "after_seq": 41, "epoch": 2},
    }
    assert parse_command(dumps(frame)) == Hello(
        id="h1",
        bot="acme/support",
        session_id="s-42",
        api_key="rt_key",
        user="u-1",
        resume=Resume(conversation_id="c1", after_seq=41, epoch=2),
    )


def test_hello_resume_without_epoch() -> None:
    cmd = parse_command('{"type":"hello","bot":"b","resume":{"conversation_id":"c","after_seq":0}}')
    assert cmd == Hello(id=None, bot="b", resume=Resume("c", 0, None))


def test_message_send() -> None:
    assert parse_command('{"type":"message.send","id":"c-17","content":"hi"}') == MessageSend(
        id="c-17", content="hi"
    )
    assert parse_command(
        '{"type":"message.send","id":3,"content":"","conversation_id":"c"}'
    ) == MessageSend(id=3, content="", conversation_id="c")


def test_subscribe() -> None:
    assert parse_command('{"type":"subscribe","conversation_id":"c"}') == Subscribe(
        id=None, conversation_id="c"
    )
    assert parse_command(
        '{"type":"subscribe","id":"s","conversation_id":"c","after_seq":0,"epoch":1}'
    ) == Subscribe(id="s", conversation_id="c", after_seq=0, epoch=1)


def test_unsubscribe() -> None:
    assert parse_command('{"type":"unsubscribe","id":1,"conversation_id":"c"}') == Unsubscribe(
        id=1, conversation_id="c"
    )


def test_run_cancel() -> None:
    assert parse_command('{"type":"run.cancel","conversation_id":"c"}') == RunCancel(
        id=None, conversation_id="c"
    )
    assert parse_command('{"type":"run.cancel","conversation_id":"c","run_id":"r"}') == RunCancel(
        id=None, conversation_id="c", run_id="r"
    )


def test_typing_defaults_to_on() -> None:
    assert parse_command('{"type":"typing","conversation_id":"c"}') == Typing(
        id=None, conversation_id="c", on=True
    )
    assert parse_command('{"type":"typing","conversation_id":"c","on":false}') == Typing(
        id=None, conversation_id="c", on=False
    )


def test_ping() -> None:
    assert parse_command('{"type":"ping"}') == Ping(id=None)
    assert parse_command('{"type":"ping","id":"p"}') == Ping(id="p")


def test_null_fields_count_as_absent() -> None:
    assert parse_command('{"type":"ping","id":null}') == Ping(id=None)
    assert parse_command(
        '{"type":"subscribe","conversation_id":"c","after_seq":null,"epoch":null}'
    ) == Subscribe(id=None, conversation_id="c")
    assert parse_command('{"type":"hello","bot":"b","resume":null,"user":null}') == Hello(
        id=None, bot="b"
    )


def test_unknown_fields_are_ignored() -> None:
    assert parse_command('{"type":"ping","id":"p","extra":{"a":[1,2]}}') == Ping(id="p")


@pytest.mark.parametrize(
    "client_id", [0, 1, -1, 2**53 - 1, -(2**53) + 1, "a", "x" * MAX_ID_CHARS, "é" * 128]
)
def test_valid_ids_are_kept(client_id: Any) -> None:
    assert parse_command(dumps({"type": "ping", "id": client_id})) == Ping(id=client_id)


# --------------------------------------------------------------------------- examples: errors

# (frame, code, id the error echoes)
ERROR_CASES: list[tuple[str, str, Any]] = [
    # invalid_json: not JSON, or not an object; the id cannot be read
    ("", "invalid_json", None),
    ("not json", "invalid_json", None),
    ('{"type":"ping","id":"p"', "invalid_json", None),
    ("[1, 2]", "invalid_json", None),
    ('"ping"', "invalid_json", None),
    ("null", "invalid_json", None),
    ("42", "invalid_json", None),
    ('[{"type":"ping","id":"p"}]', "invalid_json", None),
    # invalid_field on `id` itself: the id is not echoed
    ('{"type":"ping","id":""}', "invalid_field", None),
    ('{"type":"ping","id":true}', "invalid_field", None),
    ('{"type":"ping","id":false}', "invalid_field", None),
    ('{"type":"ping","id":1.5}', "invalid_field", None),
    ('{"type":"ping","id":1.0}', "invalid_field", None),
    ('{"type":"ping","id":[1]}', "invalid_field", None),
    ('{"type":"ping","id":{"a":1}}', "invalid_field", None),
    (dumps({"type": "ping", "id": 2**53}), "invalid_field", None),
    (dumps({"type": "ping", "id": -(2**53)}), "invalid_field", None),
    (dumps({"type": "ping", "id": "x" * (MAX_ID_CHARS + 1)}), "invalid_field", None),
    ('{"type":"ping","id":100000000000000000000000}', "invalid_field", None),
    # the id is checked before the type
    ('{"id":""}', "invalid_field", None),
    # missing_field / unknown_type on the envelope: the id is echoed
    ("{}", "missing_field", None),
    ('{"id":"a"}', "missing_field", "a"),
    ('{"id":7,"type":null}', "missing_field", 7),
    ('{"id":"a","type":"nope"}', "unknown_type", "a"),
    ('{"id":"a","type":""}', "unknown_type", "a"),
    ('{"id":0,"type":5}', "unknown_type", 0),
    ('{"id":"a","type":["ping"]}', "unknown_type", "a"),
    ('{"id":"a","type":"PING"}', "unknown_type", "a"),
    ('{"type":"nope"}', "unknown_type", None),
    # hello
    ('{"type":"hello","id":"h"}', "missing_field", "h"),
    ('{"type":"hello","id":"h","bot":""}', "invalid_field", "h"),
    ('{"type":"hello","id":"h","bot":5}', "invalid_field", "h"),
    (dumps({"type": "hello", "id": "h", "bot": "b" * 121}), "invalid_field", "h"),
    ('{"type":"hello","id":"h","bot":"b","session_id":""}', "invalid_field", "h"),
    (dumps({"type": "hello", "bot": "b", "session_id": "s" * 257}), "invalid_field", None),
    (dumps({"type": "hello", "bot": "b", "api_key": "k" * 201}), "invalid_field", None),
    ('{"type":"hello","id":2,"bot":"b","user":7}', "invalid_field", 2),
    ('{"type":"hello","id":"h","bot":"b","resume":[]}', "invalid_field", "h"),
    ('{"type":"hello","id":"h","bot":"b","resume":"c"}', "invalid_field", "h"),
    ('{"type":"hello","id":1,"bot":"b","resume":{"conversation_id":"c"}}', "missing_field", 1),
    ('{"type":"hello","id":1,"bot":"b","resume":{"after_seq":1}}', "missing_field", 1),
    (
        '{"type":"hello","id":1,"bot":"b","resume":{"conversation_id":"c","after_seq":-1}}',
        "invalid_field",
        1,
    ),
    (
        '{"type":"hello","id":1,"bot":"b","resume":{"conversation_id":"c","after_seq":true}}',
        "invalid_field",
        1,
    ),
    (
        '{"type":"hello","id":1,"bot":"b","resume":{"conversation_id":"c","after_seq":1.0}}',
        "invalid_field",
        1,
    ),
    (
        '{"type":"hello","bot":"b","resume":{"conversation_id":"c","after_seq":1,"epoch":"1"}}',
        "invalid_field",
        None,
    ),
    # message.send
    ('{"type":"message.send","id":"m"}', "missing_field", "m"),
    ('{"type":"message.send","id":"m","content":null}', "missing_field", "m"),
    ('{"type":"message.send","id":"m","content":5}', "invalid_field", "m"),
    ('{"type":"message.send","id":"m","content":["hi"]}', "invalid_field", "m"),
    (
        dumps({"type": "message.send", "id": "m", "content": "hi", "conversation_id": "c" * 65}),
        "invalid_field",
        "m",
    ),
    # subscribe
    ('{"type":"subscribe","id":"s"}', "missing_field", "s"),
    ('{"type":"subscribe","id":"s","conversation_id":""}', "invalid_field", "s"),
    ('{"type":"subscribe","id":"s","conversation_id":"c","after_seq":"1"}', "invalid_field", "s"),
    ('{"type":"subscribe","id":"s","conversation_id":"c","after_seq":-1}', "invalid_field", "s"),
    (
        dumps({"type": "subscribe", "id": "s", "conversation_id": "c", "after_seq": 2**53}),
        "invalid_field",
        "s",
    ),
    ('{"type":"subscribe","id":"s","conversation_id":"c","epoch":false}', "invalid_field", "s"),
    # unsubscribe
    ('{"type":"unsubscribe","id":"u"}', "missing_field", "u"),
    ('{"type":"unsubscribe","id":"u","conversation_id":{}}', "invalid_field", "u"),
    # run.cancel
    ('{"type":"run.cancel","id":"r"}', "missing_field", "r"),
    ('{"type":"run.cancel","id":"r","conversation_id":"c","run_id":""}', "invalid_field", "r"),
    ('{"type":"run.cancel","id":"r","conversation_id":"c","run_id":1}', "invalid_field", "r"),
    # typing
    ('{"type":"typing","id":"t"}', "missing_field", "t"),
    ('{"type":"typing","id":"t","conversation_id":"c","on":"yes"}', "invalid_field", "t"),
    ('{"type":"typing","id":"t","conversation_id":"c","on":1}', "invalid_field", "t"),
]


@pytest.mark.parametrize(("frame", "code", "echo"), ERROR_CASES)
def test_error_codes_and_id_echo(frame: str, code: str, echo: Any) -> None:
    exc = parse_error(frame)
    assert exc.code == code
    assert exc.id == echo  # type: ignore[attr-defined]
    assert type(exc.id) is type(echo)  # type: ignore[attr-defined]  # 0 is not False
    assert exc.message
    assert exc.status == 400


def test_frame_too_large_boundary_ascii() -> None:
    base = '{"type":"ping","id":"p","pad":""}'
    pad = 100 - len(base)
    exact = base.replace('""', '"' + "x" * pad + '"')
    assert len(exact.encode()) == 100
    assert parse_command(exact, max_frame_bytes=100) == Ping(id="p")
    over = exact.replace('"p"', '"pp"')
    exc = parse_error(over, max_frame_bytes=100)
    assert exc.code == "frame_too_large"
    assert exc.id is None  # type: ignore[attr-defined]  # a frame that large is not read


def test_frame_too_large_counts_utf8_bytes_not_characters() -> None:
    base = '{"type":"ping","pad":""}'
    # 'é' is 2 bytes: 40 of them make 80 bytes in 40 characters
    text = base.replace('""', '"' + "é" * 40 + '"')
    size = len(text.encode())
    assert parse_command(text, max_frame_bytes=size) == Ping(id=None)
    assert parse_error(text, max_frame_bytes=size - 1).code == "frame_too_large"
    # 4-byte characters, just over and just at the limit
    emoji = base.replace('""', '"' + "😀" * 30 + '"')
    assert parse_command(emoji, max_frame_bytes=len(emoji.encode())) == Ping(id=None)
    assert parse_error(emoji, max_frame_bytes=len(emoji.encode()) - 1).code == "frame_too_large"


def test_frame_too_large_wins_over_invalid_json() -> None:
    assert parse_error("x" * 70000).code == "frame_too_large"
    assert parse_error("x" * 65536).code == "invalid_json"


def test_lone_surrogate_in_large_frame_is_a_protocol_error() -> None:
    """A Python str may hold a lone surrogate; parse_command must still only raise ProtocolError.

    Small frames get ``invalid_json`` (orjson refuses surrogates), but once the frame is long
    enough for the byte-size check, ``data.encode()`` raises ``UnicodeEncodeError`` instead.
    """
    assert parse_error('"\ud800"').code == "invalid_json"
    exc = parse_error('{"type":"ping","pad":"' + "\ud800" * 40 + '"}', max_frame_bytes=100)
    assert exc.code in {"frame_too_large", "invalid_json"}


# --------------------------------------------------------------------------- encode / error_frame


def test_encode_omits_a_missing_id() -> None:
    assert orjson.loads(encode("pong")) == {"type": "pong"}
    assert orjson.loads(encode("pong", "p")) == {"type": "pong", "id": "p"}
    assert orjson.loads(encode("pong", 0)) == {"type": "pong", "id": 0}
    assert list(orjson.loads(encode("ack", 5, conversation_id="c", epoch=1))) == [
        "type",
        "id",
        "conversation_id",
        "epoch",
    ]


def test_error_frame_examples() -> None:
    assert orjson.loads(error_frame("queue_full", "full")) == {
        "type": "error",
        "code": "queue_full",
        "message": "full",
        "id": None,
    }
    assert orjson.loads(error_frame("rate_limited", "slow", "m1", retry_after=1.5)) == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow",
        "id": "m1",
        "retry_after": 1.5,
    }


valid_ids = st.one_of(
    st.text(NO_NUL, min_size=1, max_size=MAX_ID_CHARS),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(NO_NUL, max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(NO_NUL, max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)
small_json_values = strategies.json_values(leaves=8, nul=False)


@given(
    code=st.text(NO_NUL),
    message=st.text(NO_NUL),
    client_id=st.one_of(st.none(), valid_ids),
    extra=st.dictionaries(
        st.text(NO_NUL).filter(lambda k: k not in {"type", "code", "message", "id", "client_id"}),
        small_json_values,
        max_size=3,
    ),
)
def test_error_frame_always_has_type_code_message_id(
    code: str, message: str, client_id: Any, extra: dict[str, Any]
) -> None:
    body = orjson.loads(error_frame(code, message, client_id, **extra))
    assert list(body)[:4] == ["type", "code", "message", "id"]
    assert body["type"] == "error"
    assert body["code"] == code
    assert body["message"] == message
    assert body["id"] == client_id
    assert {k: body[k] for k in extra} == extra


# --------------------------------------------------------------------------- properties


def check_outcome(text: str, max_frame_bytes: int = 65536) -> Command | ProtocolError:
    """Parse; anything other than a command or a ProtocolError fails the test."""
    try:
        result = parse_command(text, max_frame_bytes=max_frame_bytes)
    except ProtocolError as exc:
        assert exc.code in DOCUMENTED_CODES | {"frame_too_large"}
        assert hasattr(exc, "id")
        return exc
    assert isinstance(result, COMMAND_TYPES)
    return result


@settings(max_examples=200)
@given(text=st.text(NO_NUL), max_frame_bytes=st.integers(min_value=1, max_value=200))
def test_arbitrary_text_gives_a_command_or_protocol_error(text: str, max_frame_bytes: int) -> None:
    outcome = check_outcome(text, max_frame_bytes)
    if isinstance(outcome, ProtocolError) and outcome.code == "frame_too_large":
        assert len(text.encode()) > max_frame_bytes
        assert outcome.id is None  # type: ignore[attr-defined]
    if len(text.encode()) > max_frame_bytes:
        assert isinstance(outcome, ProtocolError) and outcome.code == "frame_too_large"


field_values = st.one_of(
    json_values,
    st.text(NO_NUL, min_size=1, max_size=70),
    st.integers(min_value=-2, max_value=2**53 + 1),
    st.booleans(),
)
commandish = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from([*PARSERS, "nope", "Ping"]), json_values),
        "id": st.one_of(valid_ids, json_values, st.just(""), st.just("x" * 129)),
        "bot": field_values,
        "session_id": field_values,
        "api_key": field_values,
        "user": field_values,
        "resume": st.one_of(
            field_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "conversation_id": field_values,
                    "after_seq": field_values,
                    "epoch": field_values,
                },
            ),
        ),
        "content": field_values,
        "conversation_id": field_values,
        "after_seq": field_values,
        "epoch": field_values,
        "run_id": field_values,
        "on": field_values,
        "other": json_values,
    },
)


@settings(max_examples=200)
@given(value=st.one_of(commandish, json_values))
def test_arbitrary_json_gives_a_command_or_protocol_error(value: Any) -> None:
    text = json.dumps(value)  # json, not orjson: integers of any size
    outcome = check_outcome(text)
    if not isinstance(value, dict):
        assert isinstance(outcome, ProtocolError) and outcome.code == "invalid_json"
        assert outcome.id is None  # type: ignore[attr-defined]
        return
    raw_id = value.get("id")
    if raw_id is not None and not is_valid_id(raw_id):
        assert isinstance(outcome, ProtocolError) and outcome.code == "invalid_field"
        assert outcome.id is None  # type: ignore[attr-defined]
        return
    if isinstance(outcome, ProtocolError):
        # the id was valid (or absent): every error echoes it
        assert outcome.id == raw_id  # type: ignore[attr-defined]
        assert type(outcome.id) is type(raw_id)  # type: ignore[attr-defined]
        kind = value.get("type")
        if kind is None:
            assert outcome.code == "missing_field"
        elif not isinstance(kind, str) or kind not in PARSERS:
            assert outcome.code == "unknown_type"
        else:
            assert outcome.code in {"missing_field", "invalid_field"}
    else:
        assert type(outcome) is TYPE_OF[value["type"]]
        assert outcome.id == raw_id
        assert type(outcome.id) is type(raw_id)


# -- round trip of valid commands

ABSENT: Any = object()


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is absent, null, or set."""
    return st.one_of(st.just(ABSENT), st.none(), strategy)


def put(frame: dict[str, Any], key: str, value: Any) -> None:
    if value is not ABSENT:
        frame[key] = value


def value_of(value: Any, default: Any = None) -> Any:
    return default if value is ABSENT or value is None else value


def text_of(max_len: int) -> st.SearchStrategy[str]:
    return st.text(NO_NUL, min_size=1, max_size=max_len)


seqs = st.integers(min_value=0, max_value=2**53 - 1)


@st.composite
def valid_commands(draw: st.DrawFn) -> tuple[dict[str, Any], Command]:
    kind = draw(st.sampled_from(sorted(PARSERS)))
    # unknown fields first, so the known ones win on a clash
    frame: dict[str, Any] = draw(
        st.dictionaries(
            st.text(NO_NUL, max_size=10).filter(lambda k: k not in KNOWN_KEYS),
            small_json_values,
            max_size=2,
        )
    )
    frame["type"] = kind
    raw_id = draw(optional(valid_ids))
    put(frame, "id", raw_id)
    cid = value_of(raw_id)
    expected: Command
    if kind == "hello":
        bot = draw(text_of(120))
        session_id = draw(optional(text_of(256)))
        api_key = draw(optional(text_of(200)))
        user = draw(optional(text_of(256)))
        raw_resume = draw(
            optional(
                st.fixed_dictionaries(
                    {"conversation_id": text_of(64), "after_seq": seqs},
                    optional={"epoch": st.one_of(st.none(), seqs)},
                )
            )
        )
        frame["bot"] = bot
        put(frame, "session_id", session_id)
        put(frame, "api_key", api_key)
        put(frame, "user", user)
        put(frame, "resume", raw_resume)
        resume = None
        if isinstance(raw_resume, dict):
            resume = Resume(
                raw_resume["conversation_id"], raw_resume["after_seq"], raw_resume.get("epoch")
            )
        expected = Hello(
            id=cid,
            bot=bot,
            session_id=value_of(session_id),
            api_key=value_of(api_key),
            user=value_of(user),
            resume=resume,
        )
    elif kind == "message.send":
        content = draw(st.text(NO_NUL, max_size=200))
        conversation_id = draw(optional(text_of(64)))
        frame["content"] = content
        put(frame, "conversation_id", conversation_id)
        expected = MessageSend(id=cid, content=content, conversation_id=value_of(conversation_id))
    elif kind == "subscribe":
        conversation_id = draw(text_of(64))
        after_seq = draw(optional(seqs))
        epoch = draw(optional(seqs))
        frame["conversation_id"] = conversation_id
        put(frame, "after_seq", after_seq)
        put(frame, "epoch", epoch)
        expected = Subscribe(
            id=cid,
            conversation_id=conversation_id,
            after_seq=value_of(after_seq),
            epoch=value_of(epoch),
        )
    elif kind == "unsubscribe":
        conversation_id = draw(text_of(64))
        frame["conversation_id"] = conversation_id
        expected = Unsubscribe(id=cid, conversation_id=conversation_id)
    elif kind == "run.cancel":
        conversation_id = draw(text_of(64))
        run_id = draw(optional(text_of(64)))
        frame["conversation_id"] = conversation_id
        put(frame, "run_id", run_id)
        expected = RunCancel(id=cid, conversation_id=conversation_id, run_id=value_of(run_id))
    elif kind == "typing":
        conversation_id = draw(text_of(64))
        on = draw(st.one_of(st.just(ABSENT), st.booleans()))
        frame["conversation_id"] = conversation_id
        put(frame, "on", on)
        expected = Typing(id=cid, conversation_id=conversation_id, on=value_of(on, True))
    elif kind in ("handoff.request", "handoff.cancel"):
        conversation_id = draw(text_of(64))
        frame["conversation_id"] = conversation_id
        expected = HandoffCommand(cid, kind.split(".")[1], conversation_id)
    elif kind == "confirmation.resolve":
        conversation_id = draw(text_of(64))
        tool_call_id = draw(text_of(128))
        decision = draw(st.sampled_from(["approve", "reject"]))
        params = draw(
            optional(st.dictionaries(st.text(NO_NUL, max_size=8), small_json_values, max_size=3))
        )
        frame.update(conversation_id=conversation_id, tool_call_id=tool_call_id, decision=decision)
        put(frame, "params", params)
        expected = ConfirmationResolve(
            id=cid,
            conversation_id=conversation_id,
            tool_call_id=tool_call_id,
            decision=decision,
            params=value_of(params),
        )
    elif kind == "feedback":
        conversation_id = draw(text_of(64))
        message_id = draw(text_of(64))
        value = draw(st.sampled_from(["positive", "negative", None]))
        frame.update(conversation_id=conversation_id, message_id=message_id, value=value)
        expected = Feedback(cid, conversation_id, message_id, value)
    elif kind == "contact.submit":
        conversation_id = draw(text_of(64))
        fields = draw(
            st.dictionaries(st.text(NO_NUL, max_size=8), st.text(NO_NUL, max_size=20), max_size=4)
        )
        frame.update(conversation_id=conversation_id, fields=fields)
        expected = ContactSubmit(cid, conversation_id, fields)
    else:
        expected = Ping(id=cid)
    return frame, expected


@settings(max_examples=150)
@given(case=valid_commands())
def test_valid_commands_round_trip(case: tuple[dict[str, Any], Command]) -> None:
    frame, expected = case
    command = parse_command(orjson.dumps(frame).decode())
    assert command == expected
    assert type(command.id) is type(expected.id)


@settings(max_examples=50)
@given(case=valid_commands(), junk_id=st.one_of(valid_ids, st.none()))
def test_field_errors_echo_a_valid_id(case: tuple[dict[str, Any], Command], junk_id: Any) -> None:
    """Breaking a required field of a valid command gives an error that echoes the id."""
    frame, expected = case
    if isinstance(expected, Ping):
        return
    if isinstance(expected, HandoffCommand) and expected.action == "request":
        return  # without a conversation, a request starts one
    frame = dict(frame)
    frame["id"] = junk_id
    required = {
        Hello: "bot",
        MessageSend: "content",
        Subscribe: "conversation_id",
        Unsubscribe: "conversation_id",
        RunCancel: "conversation_id",
        Typing: "conversation_id",
        ConfirmationResolve: "tool_call_id",
        HandoffCommand: "conversation_id",
        Feedback: "message_id",
        ContactSubmit: "fields",
    }[type(expected)]
    del frame[required]
    exc = parse_error(orjson.dumps(frame).decode())
    assert exc.code == "missing_field"
    assert required in exc.message
    assert exc.id == junk_id  # type: ignore[attr-defined]
    frame[required] = 12
    exc = parse_error(orjson.dumps(frame).decode())
    assert exc.code == "invalid_field"
    assert exc.id == junk_id  # type: ignore[attr-defined]


@given(
    frame=valid_commands().map(lambda case: case[0]),
    where=st.sampled_from(["key", "value", "nested"]),
)
def test_a_nul_anywhere_is_refused_before_the_command_is_read(
    frame: dict[str, Any], where: str
) -> None:
    """No store keeps U+0000 (PostgreSQL refuses it): any key or string holding one is
    ``invalid_field``, with no id echoed (it is refused with the frame's shape)."""
    frame = dict(frame)
    if where == "key":
        frame["x\x00"] = 1
    elif where == "value":
        frame["note"] = "a\x00b"
    else:
        frame["extra"] = {"deep": [{"k": "\x00"}]}
    exc = parse_error(orjson.dumps(frame).decode())
    assert exc.code == "invalid_field" and "U+0000" in exc.message
    assert exc.id is None  # type: ignore[attr-defined]
