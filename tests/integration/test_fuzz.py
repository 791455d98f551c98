"""Random and malformed input against a real server, on every store backend: every command of
``/ws`` and ``/ws/console`` and the JSON HTTP endpoints the admin fuzz
(``test_admin_api.py``) does not cover.

The properties, for every example:

1. No 5xx, and no ``internal_error`` frame; every HTTP error is ``{"error": {"code",
   "message"}}``.
2. A WebSocket is never dropped: after each frame the server either replied (a frame with a
   valid ``id`` gets exactly one ``ack``/``pong``/``error``/``welcome`` echoing it; one it
   cannot read the ``id`` of gets one ``error`` with ``id: null``) and still answers a
   ``ping``, or it closed the socket with a close code of the protocol's (1009 for a frame
   over the transport limit, 1007 for a text frame that is not UTF-8, 1013, 4xxx), never
   1006 (no close frame) nor 1011.
3. Whatever the server refused left no row behind: the row counts of every table are the
   same before and after.

The expected reply of each frame comes from the documented protocol (``docs/protocol.md``),
not from the server's parser: orjson decides what is JSON, the limits are 64 KiB frames,
1 MiB messages, 32 levels of nesting and 2000 values.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.protocol import PARSERS
from realtime.protocol_console import CONSOLE_PARSERS
from realtime.store import async_url
from realtime.transport.admin import routes as admin_routes
from tests.strategies import json_values
from tests.support import ADMIN_KEY, TERMINAL, UNIT, RunningServer

pytestmark = pytest.mark.anyio

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# The documented limits (docs/protocol.md, README): the server's defaults.
MAX_FRAME_BYTES = 65536  # a larger text frame: error frame_too_large
WS_MAX_SIZE = 1024 * 1024  # a larger message: close 1009
MAX_DEPTH = 32  # deeper nesting (the frame itself is level 1): error json_too_complex
MAX_VALUES = 2000  # more values (keys' values and items, all levels): json_too_complex
MAX_ID_CHARS = 128
SAFE_INTEGER = 2**53  # integer ids are JSON-safe integers

REPLIES = ("ack", "pong", "error", "welcome")  # what answers a command; the rest are events
# Close codes a server may use at any time: try again later, and 4000-4499 (reconnect and
# resume; 4001 is the hello timeout of a connection that stays anonymous long enough).
ANYTIME_CLOSES = frozenset({1000, 1001, 1008, 1012, 1013}) | frozenset(range(4000, 4500))

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()  # a key left out

VISITOR_TYPES = sorted(PARSERS)
CONSOLE_TYPES = sorted(CONSOLE_PARSERS)
ALL_TYPES = sorted(set(VISITOR_TYPES) | set(CONSOLE_TYPES))

AGENT_EMAIL = "alice@example.com"
AGENT_PASSWORD = "correct horse battery"


# -- the database ------------------------------------------------------------------------------


class Census:
    """Row counts of every table of the server's database, read over a connection of our
    own (not the server's engine)."""

    def __init__(self, engine: AsyncEngine, tables: list[str]) -> None:
        self.engine = engine
        self.tables = tables
        counts = [f'(SELECT count(*) FROM "{name}") AS "{name}"' for name in tables]
        active = "(SELECT count(*) FROM runs WHERE status IN ('queued', 'running')) AS active"
        self.query = sa.text(f"SELECT {', '.join([*counts, active])}")

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(self.query)).mappings().one()
        return {name: int(row[name]) for name in self.tables}

    async def settled(self) -> dict[str, int]:
        """The counts once no run is queued or running (runs keep writing after their ack)."""
        for _ in range(int(500 * UNIT)):
            async with self.engine.connect() as conn:
                row = (await conn.execute(self.query)).mappings().one()
            if row["active"] == 0:
                return {name: int(row[name]) for name in self.tables}
            await asyncio.sleep(0.02)
        raise AssertionError("runs never ended")


@pytest.fixture
async def census(server: RunningServer) -> AsyncIterator[Census]:
    engine = create_async_engine(async_url(server.settings.database_url))
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        assert "messages" in tables and "agent_tokens" in tables, tables
        yield Census(engine, sorted(tables))
    finally:
        await engine.dispose()


# -- what the fuzzers can name -----------------------------------------------------------------


@dataclass
class World:
    """Real ids and credentials, mixed into the random input so that some of it gets past
    the parser and the checks into the engine."""

    bot_uuid: str
    conversations: list[str]  # the fuzz session's, another session's (queued for a person)
    runs: list[str]
    agents: list[str]
    full_key: str
    chat_key: str
    revoked_key: str
    acme_key: str
    envelope: str
    guest_envelope: str
    token: str
    other_session: str = "s-other"
    extra: list[str] = field(default_factory=list)

    def learn(self, frame: dict[str, Any]) -> None:
        """Ids the server handed out become names the next frames may use."""
        for key, into in (("conversation_id", self.conversations), ("run_id", self.runs)):
            value = frame.get(key)
            if isinstance(value, str) and value not in into and len(into) < 40:
                into.append(value)


async def build_world(server: RunningServer) -> World:
    async with server.admin() as admin:

        async def post(path: str, body: dict[str, Any], status: int = 201) -> Any:
            got = await admin.post(path, json=body)
            assert got.status_code == status, got.text
            return got.json()

        base = "/admin/v1/tenants/default"
        patched = await admin.patch(f"{base}/bots/demo", json={"handoff_enabled": True})
        assert patched.status_code == 200, patched.text
        alice = await post(
            f"{base}/agents",
            {"name": "Alice Doe", "email": AGENT_EMAIL, "password": AGENT_PASSWORD},
        )
        bob = await post(
            f"{base}/agents",
            {"name": "Bob Roe", "email": "bob@example.com", "password": "another password"},
        )
        await post(f"{base}/bots", {"bot_id": "spare"})
        full_key = (await post(f"{base}/keys", {"name": "full"}))["key"]
        chat_key = (await post(f"{base}/keys", {"name": "chat", "scope": "chat"}))["key"]
        revoked = await post(f"{base}/keys", {"name": "revoked"})
        gone = await admin.delete(f"{base}/keys/{revoked['id']}")
        assert gone.status_code == 200, gone.text
        await post("/admin/v1/tenants", {"name": "Acme", "id": "acme"})
        acme_key = (await post("/admin/v1/tenants/acme/keys", {"name": "acme"}))["key"]
        envelope = (await post(f"{base}/envelopes", {"channel": "demo", "user": "u-env"}))[
            "signed_context"
        ]
        guest = (await post(f"{base}/envelopes", {"channel": "demo"}))["signed_context"]
        login = await admin.post(
            "/realtime/v1/agents/login",
            json={"tenant": "default", "email": AGENT_EMAIL, "password": AGENT_PASSWORD},
        )
        assert login.status_code == 200, login.text
    conversations, runs = [], []
    for session, handoff in (("s-other", True), ("s-fuzz", False)):
        async with connect(f"ws://127.0.0.1:{server.port}/ws", max_size=None) as ws:
            welcome = await ask(
                ws, {"type": "hello", "id": "h", "bot": "demo", "session_id": session}
            )
            await ws.send(orjson.dumps({"type": "message.send", "id": "m", "content": "hi"}))
            frames = await read_until(ws, lambda f: f["type"] in TERMINAL)
            cid = frames[0]["conversation_id"]
            conversations.append(cid)
            runs += [f["run_id"] for f in frames if f["type"] == "run.started"]
            if handoff:
                queued = await ask(
                    ws, {"type": "handoff.request", "id": "q", "conversation_id": cid}
                )
                assert queued["type"] == "ack", queued
    return World(
        bot_uuid=welcome["bot"]["uuid"],
        conversations=conversations,
        runs=runs,
        agents=[alice["id"], bob["id"]],
        full_key=full_key,
        chat_key=chat_key,
        revoked_key=revoked["key"],
        acme_key=acme_key,
        envelope=envelope,
        guest_envelope=guest,
        token=login.json()["token"],
    )


async def read_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10 * UNIT))
        frames.append(frame)
        if done(frame):
            return frames


async def ask(ws: ClientConnection, command: dict[str, Any]) -> dict[str, Any]:
    await ws.send(orjson.dumps(command).decode())
    frames = await read_until(ws, lambda f: f["type"] in REPLIES and f.get("id") == command["id"])
    return frames[-1]


@pytest.fixture
async def world(server: RunningServer) -> World:
    return await build_world(server)


# -- random values -----------------------------------------------------------------------------

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\r\n",
    "\u202eevil",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "e\u0301",
    "𝕏😀",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "1e309",
    "0x1F",
    "null",
    "true",
    "[]",
    "{}",
    "%00",
    "../../etc/passwd",
    "' OR 1=1 --",
    '"; DROP TABLE messages; --',
    "<script>alert(1)</script>",
    "default/demo",
    "demo/",
    "/",
]
LONE_SURROGATES = ["\ud800", "a\udfff", "\udbff\ud800", "x\ud83d"]  # not UTF-8 encodable
LIMIT_LENGTHS = [63, 64, 65, 119, 120, 121, 127, 128, 129, 199, 200, 201, 255, 256, 257, 320, 321]
LONG_LENGTHS = [9999, 10000, 10001, 32768, 32769]
BIG_INTEGERS = [
    -1,
    0,
    2**31,
    2**53 - 1,
    2**53,
    -(2**53) + 1,
    -(2**53),
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    10**30,
    -(10**400),
]

odd_text = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Mn", "So"]), max_size=10),
)
sized_text = st.builds(
    lambda n, c: c * n,
    st.sampled_from(LIMIT_LENGTHS + LONG_LENGTHS),
    st.sampled_from(["x", "é", "€", "😀"]),
)
numbers = st.one_of(
    st.sampled_from(BIG_INTEGERS),
    st.integers(),
    st.floats(),  # NaN and infinities too: json.dumps writes them, and they are not JSON
)
anything = st.one_of(
    odd_text,
    sized_text,
    numbers,
    st.booleans(),
    st.none(),
    json_values(leaves=6),
    st.sampled_from(LONE_SURROGATES),
)
ids = st.one_of(
    st.just(ABSENT),
    st.none(),
    st.text(min_size=1, max_size=12),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.sampled_from(["", "x" * 128, "x" * 129, "é" * 128, "😀" * 129, 2**53, -(2**53), 1.0, 0.5]),
    st.sampled_from(LONE_SURROGATES),
    numbers,
    st.booleans(),
    json_values(leaves=3),
)


def nested(depth: int, leaf: Any, as_list: bool) -> Any:
    for n in range(depth):
        leaf = [leaf] if as_list else {f"k{n}": leaf}
    return leaf


def field_values(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible and wrong values for every field a command reads."""
    random_uuid = st.builds(lambda: str(uuid.uuid4()))
    cids = st.one_of(st.sampled_from(world.conversations), random_uuid)
    good: dict[str, st.SearchStrategy[Any]] = {
        "conversation_id": cids,
        "content": st.sampled_from(["hi", "What is an epoch?", "   ", "x" * 10001]),
        "run_id": st.one_of(st.sampled_from(world.runs), random_uuid),
        "on": st.booleans(),
        "tool_call_id": st.sampled_from(["call_1", "call_abc123"]),
        "decision": st.sampled_from(["approve", "reject", "APPROVE", "maybe"]),
        "params": st.one_of(
            st.just({}), st.dictionaries(st.text(max_size=5), anything, max_size=3)
        ),
        "after_seq": st.sampled_from([0, 1, 5, 2**53 - 1]),
        "epoch": st.sampled_from([0, 1, 2]),
        "bot": st.sampled_from(["demo", "default/demo", "spare", world.bot_uuid, "nope", "acme/x"]),
        "session_id": st.sampled_from(["s-fuzz", world.other_session]),
        "api_key": st.sampled_from(
            [world.full_key, world.chat_key, world.revoked_key, world.acme_key, "rtk_nope"]
        ),
        "user": st.sampled_from(["u-1", "u-env"]),
        "resume": st.fixed_dictionaries(
            {"conversation_id": cids, "after_seq": st.sampled_from([0, 3])},
            optional={"epoch": st.sampled_from([0, 1, 7])},
        ),
        "signed_context": st.sampled_from(
            [
                world.envelope,
                world.guest_envelope,
                world.envelope[:-2] + "AA",
                world.envelope.split(".")[0],
                "a.b",
                ".",
            ]
        ),
        "tenant": st.sampled_from(["default", "acme", "nope"]),
        "email": st.sampled_from([AGENT_EMAIL, "bob@example.com", "ALICE@example.com", "x@y"]),
        "password": st.sampled_from([AGENT_PASSWORD, "wrong password"]),
        "token": st.sampled_from([world.token, "rtg_nope", world.full_key]),
        "status": st.sampled_from(["online", "away", "offline", "Online"]),
        "to_agent_id": st.one_of(st.sampled_from(world.agents), random_uuid),
    }
    return {name: st.one_of(value, value, anything) for name, value in good.items()}


def commands(world: World, types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects shaped like commands: a type of the endpoint's (or another's, or junk), an id
    of any kind, any subset of the fields any command reads, and maybe unknown keys."""

    def assemble(kind: Any, client_id: Any, fields: dict[str, Any], extra: dict[str, Any]):
        frame: dict[str, Any] = {**extra, **fields}
        if kind is not ABSENT:
            frame["type"] = kind
        if client_id is not ABSENT:
            frame["id"] = client_id
        return frame

    kinds = st.one_of(
        st.sampled_from(types), st.sampled_from(types), st.sampled_from(ALL_TYPES), ids
    )
    return st.builds(
        assemble,
        kinds,
        ids,
        st.fixed_dictionaries({}, optional=field_values(world)),
        st.dictionaries(st.text(max_size=6), anything, max_size=2),
    )


# -- frames on the wire ------------------------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """One WebSocket message as sent: a text frame (``str``, or raw ``bytes`` that may not
    be UTF-8) or a binary frame."""

    data: str | bytes
    binary: bool = False

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 300 else self.data[:300]
        kind = "binary" if self.binary else "text"
        return f"Wire({kind}, {len(self.data)} long: {shown!r})"


def encode(value: Any, style: str) -> Wire:
    """``value`` as JSON text (``json.dumps``: any integer, NaN and lone surrogates allowed)."""
    text = json.dumps(value, ensure_ascii=style == "ascii", allow_nan=True)
    raw = text.encode("utf-8", "surrogatepass")  # lone surrogates: not UTF-8
    if style == "binary":
        return Wire(raw, binary=True)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return Wire(raw)
    return Wire(text)


def padded(frame: dict[str, Any], size: int, filler: str, style: str) -> Wire:
    """``frame`` with ``content`` filled to about ``size`` bytes of JSON text (exactly, when
    the filler divides the rest)."""
    frame = {**frame, "content": ""}
    base = len(json.dumps(frame, ensure_ascii=style == "ascii").encode())
    width = len(json.dumps(filler, ensure_ascii=style == "ascii").encode()) - 2
    room = max(0, size - base)
    frame["content"] = filler * (room // width) + "x" * (room % width)
    return encode(frame, style)


MALFORMED = [
    "",
    " ",
    "{",
    "}",
    "[",
    "null",
    "0",
    '"ping"',
    '{"type": "ping", "id": 1,}',
    '{"type": "ping", "id": NaN}',
    '{"type": "ping", "id": Infinity}',
    '{"type": "ping", "id": 1e400}',
    '{"type": "ping" "id": 1}',
    '{"type": "ping", "id": "\\ud800"}',
    '{"type": "ping", "id": "\\udc00"}',
    '{"type": "ping", "id": 01}',
    '{"type": "ping", "id": 1}{"type": "ping"}',
    '{"type": "ping", "id": 1} trailing',
    '\ufeff{"type": "ping", "id": 1}',
    '{"type": "ping", "type": "hello", "id": 1}',
    "{'type': 'ping'}",
    '{"type": "ping", "id": "\x00"}',
    '{"type": "ping", "id": 18446744073709551615}',
    '{"type": "ping", "id": 18446744073709551616}',
    '{"type": "ping", "id": -9223372036854775809}',
]
NOT_UTF8 = [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]


def frames(world: World, types: list[str]) -> st.SearchStrategy[Wire]:
    styles = st.sampled_from(["ascii", "utf8", "utf8", "binary"])
    command = commands(world, types)
    as_list = st.booleans()
    deep = st.builds(
        lambda frame, depth, leaf, listy, key: {**frame, key: nested(depth, leaf, listy)},
        command,
        st.sampled_from([1, 2, 29, 30, 31, 32, 33, 40, 500]),
        anything,
        as_list,
        st.sampled_from(["params", "content", "resume", "extra"]),
    )
    wide = st.builds(
        lambda frame, n, listy: {
            **frame,
            "params": list(range(n)) if listy else {str(i): i for i in range(n)},
        },
        command,
        st.sampled_from([1990, 1994, 1995, 1996, 1997, 2000, 2001, 5000]),
        as_list,
    )
    big = st.builds(
        padded,
        command,
        st.sampled_from(
            [
                MAX_FRAME_BYTES - 1,
                MAX_FRAME_BYTES,
                MAX_FRAME_BYTES + 1,
                MAX_FRAME_BYTES + 3,
                200_000,
                WS_MAX_SIZE - 1,
                WS_MAX_SIZE,
                WS_MAX_SIZE + 1,
                WS_MAX_SIZE + 50_000,
            ]
        ),
        st.sampled_from(["x", "é", "€", "😀"]),
        st.sampled_from(["ascii", "utf8"]),
    )
    return st.one_of(
        st.builds(encode, command, styles),
        st.builds(encode, command, styles),
        st.builds(encode, command, st.just("utf8")),
        st.builds(encode, json_values(), styles),
        st.builds(encode, st.one_of(deep, wide), styles),
        big,
        st.builds(Wire, st.one_of(st.sampled_from(MALFORMED), st.text(max_size=40))),
        st.builds(Wire, st.binary(max_size=40), st.just(True)),
        st.builds(
            lambda head, bad, tail: Wire(head.encode() + bad + tail.encode()),
            st.sampled_from(['{"type": "ping", "id": "', '{"type": "hello", "bot": "', ""]),
            st.sampled_from(NOT_UTF8),
            st.sampled_from(['"}', "", '"']),
        ),
    )


# -- what a frame must get back ----------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    close: int | None = None  # the socket must close with this code
    code: str | None = None  # one error with this code and ``id: null``
    echo: Any = ABSENT  # a valid id: exactly one reply echoing it
    kind: Any = ABSENT  # the command's type, when it is an object with a readable id


def shape(value: Any) -> tuple[int, int]:
    """(deepest nesting level of an object or array, with the frame at level 1; the number
    of values in objects and arrays, at every level)."""
    deepest, count = 0, 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        count += len(children)
        pending.extend((child, depth + 1) for child in children)
    return deepest, count


def valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -SAFE_INTEGER < value < SAFE_INTEGER
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def expectation(wire: Wire) -> Expect:
    raw = wire.data.encode() if isinstance(wire.data, str) else wire.data
    if len(raw) > WS_MAX_SIZE:
        return Expect(close=1009)
    if wire.binary:
        return Expect(code="invalid_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Expect(close=1007)  # RFC 6455 8.1: a text frame that is not UTF-8
    if len(raw) > MAX_FRAME_BYTES:
        return Expect(code="frame_too_large")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return Expect(code="invalid_json")
    if not isinstance(value, dict):
        return Expect(code="invalid_json")
    deepest, count = shape(value)
    if deepest > MAX_DEPTH or count > MAX_VALUES:
        return Expect(code="json_too_complex")
    client_id = value.get("id")
    if client_id is not None and not valid_id(client_id):
        return Expect(code="invalid_field")
    return Expect(echo=ABSENT if client_id is None else client_id, kind=value.get("type"))


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def check_error(frame: dict[str, Any]) -> None:
    code, message = frame.get("code"), frame.get("message")
    assert isinstance(code, str) and code, frame
    assert "internal" not in code, frame
    assert isinstance(message, str) and message, frame
    assert "id" in frame, frame


# -- one fuzzed WebSocket ----------------------------------------------------------------------


@dataclass
class Outcome:
    replies: list[dict[str, Any]]
    closed: int | None = None  # the close code the server sent

    @property
    def refused(self) -> bool:
        return self.closed is None and [r["type"] for r in self.replies] == ["error"]


class Link:
    """A WebSocket reused across examples: reopened (and greeted again) after the server
    closed it."""

    def __init__(self, server: RunningServer, path: str, hello: dict[str, Any], world: World):
        self.url = f"ws://127.0.0.1:{server.port}{path}"
        self.hello = {**hello, "id": "fuzz-hello"}
        self.world = world
        self.ws: ClientConnection | None = None
        self.authenticated = False
        self.probes = itertools.count()

    async def ready(self, authenticated: bool) -> None:
        if self.ws is not None and self.authenticated != authenticated:
            await self.drop()
        if self.ws is None:
            self.ws = await connect(self.url, open_timeout=5 * UNIT, max_size=None, max_queue=None)
            self.authenticated = False
            if authenticated:
                welcome = await ask(self.ws, self.hello)
                assert welcome["type"] == "welcome", welcome
                self.authenticated = True

    async def drop(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def exchange(self, wire: Wire) -> Outcome:
        """Send ``wire``, then a ping; the replies before its pong, or how the socket closed."""
        assert self.ws is not None
        ws, probe = self.ws, f"probe:{next(self.probes)}"
        replies: list[dict[str, Any]] = []
        try:
            await ws.send(wire.data, text=not wire.binary)
            await ws.send(orjson.dumps({"type": "ping", "id": probe}).decode())
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), 10 * UNIT)
                except TimeoutError:
                    raise AssertionError(f"no pong within 10 s after {wire!r}") from None
                frame = orjson.loads(raw)
                assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
                self.world.learn(frame)
                if frame["type"] == "pong" and frame.get("id") == probe:
                    return Outcome(replies)
                if frame["type"] in REPLIES:
                    replies.append(frame)
        except ConnectionClosed as exc:
            self.ws, self.authenticated = None, False
            assert exc.rcvd is not None, f"dropped without a close frame after {wire!r}"
            return Outcome(replies, closed=exc.rcvd.code)

    def check(self, wire: Wire, expect: Expect, outcome: Outcome, was_authenticated: bool) -> None:
        """Property 2 for one frame."""
        context = f"{wire!r} ->  {outcome}"
        for reply in outcome.replies:
            if reply["type"] == "error":
                check_error(reply)
        if outcome.closed is not None:
            assert outcome.closed != 1011, context
            if expect.close is not None:
                assert outcome.closed == expect.close or outcome.closed in ANYTIME_CLOSES, context
            else:
                assert outcome.closed in ANYTIME_CLOSES, context
            return
        assert expect.close is None, f"expected close {expect.close}: {context}"
        replies = outcome.replies
        if expect.code is not None:
            got = [(r["type"], r.get("code"), r.get("id")) for r in replies]
            assert got == [("error", expect.code, None)], context
        elif expect.echo is not ABSENT:
            assert len(replies) == 1 and same(replies[0].get("id"), expect.echo), context
        else:
            assert len(replies) <= 1 and all(r.get("id") is None for r in replies), context
        for reply in replies:
            if reply["type"] == "welcome":
                assert expect.kind == "hello" and not was_authenticated, context
                self.authenticated = True
            if reply["type"] == "pong":
                assert expect.kind == "ping", context
        if expect.kind == "ping" and expect.code is None:
            assert [r["type"] for r in replies] in (["pong"], []), context
            assert replies or expect.echo is ABSENT, context


async def fuzz_socket(
    link: Link, census: Census, data: st.DataObject, strategy: st.SearchStrategy[Wire]
) -> None:
    """One example: a few frames on a connection that has (or has not) said hello."""
    await link.ready(authenticated=data.draw(st.booleans(), label="authenticated"))
    before = await census.settled()
    outcomes = []
    for _ in range(data.draw(st.integers(1, 3), label="frames")):
        if link.ws is None:  # closed by the last frame
            await link.ready(authenticated=False)
        wire = data.draw(strategy, label="frame")
        expect = expectation(wire)
        was_authenticated = link.authenticated
        outcome = await link.exchange(wire)
        link.check(wire, expect, outcome, was_authenticated)
        outcomes.append(outcome)
    if all(o.refused for o in outcomes):
        assert await census.counts() == before, f"refused frames left rows: {outcomes}"


@pytest.fixture
async def visitor(server: RunningServer, world: World) -> AsyncIterator[Link]:
    link = Link(server, "/ws", {"type": "hello", "bot": "demo", "session_id": "s-fuzz"}, world)
    try:
        yield link
    finally:
        await link.drop()


@pytest.fixture
async def agent(server: RunningServer, world: World) -> AsyncIterator[Link]:
    link = Link(server, "/ws/console", {"type": "hello", "token": world.token}, world)
    try:
        yield link
    finally:
        await link.drop()


@FUZZ
@given(data=st.data())
async def test_random_visitor_frames_get_one_reply_and_refusals_store_nothing(
    server: RunningServer, census: Census, world: World, visitor: Link, data: st.DataObject
) -> None:
    await fuzz_socket(visitor, census, data, frames(world, VISITOR_TYPES))


@FUZZ
@given(data=st.data())
async def test_random_console_frames_get_one_reply_and_refusals_store_nothing(
    server: RunningServer, census: Census, world: World, agent: Link, data: st.DataObject
) -> None:
    await fuzz_socket(agent, census, data, frames(world, CONSOLE_TYPES))


# -- HTTP --------------------------------------------------------------------------------------


def check_answer(answer: httpx.Response) -> None:
    """Property 1: never 5xx; errors are ``{"error": {"code", "message"}}``."""
    context = (
        f"{answer.request.method} {answer.request.url} -> {answer.status_code} {answer.text[:300]}"
    )
    assert answer.status_code < 500, context
    if answer.status_code >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), context
        body = answer.json()
        assert isinstance(body, dict) and set(body) == {"error"}, context
        error = body["error"]
        assert isinstance(error, dict), context
        assert isinstance(error.get("code"), str) and error["code"], context
        assert isinstance(error.get("message"), str) and error["message"], context
        assert "internal" not in error["code"], context


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def bodies(keys: list[str], good: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Random request bodies: JSON values, objects with the endpoint's keys (plausible or
    wrong values), deep or wide JSON, and raw bytes."""
    fields = {key: st.one_of(good.get(key, anything), anything) for key in keys}
    shaped = st.fixed_dictionaries({}, optional=fields)
    return st.one_of(
        st.builds(lambda v: ("json", v), json_values()),
        st.builds(lambda v: ("json", v), shaped),
        st.builds(lambda v: ("json", v), shaped),
        st.builds(
            lambda v, depth, listy: ("json", {**v, "x": nested(depth, 1, listy)}),
            shaped,
            st.sampled_from([30, 31, 32, 33, 100]),
            st.booleans(),
        ),
        st.builds(
            lambda v, n: ("json", {**v, "x": list(range(n))}),
            shaped,
            st.sampled_from([1990, 1999, 2000, 2001]),
        ),
        st.builds(lambda v, style: ("raw", encode(v, style).data), shaped, st.just("utf8")),
        st.builds(lambda b: ("raw", b), st.binary(max_size=60)),
        st.builds(lambda t: ("raw", t.encode()), st.sampled_from(MALFORMED)),
        st.builds(lambda b: ("raw", b), st.sampled_from(NOT_UTF8)),
        st.builds(lambda n: ("raw", b"{" + b" " * n + b"}"), st.sampled_from([4 * 2**20 + 1])),
    )


def content_of(body: tuple[str, Any]) -> bytes:
    kind, value = body
    if kind == "raw":
        return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@FUZZ
@given(data=st.data())
async def test_random_agent_logins_never_fail_the_server_nor_store_a_refusal(
    server: RunningServer, census: Census, world: World, data: st.DataObject
) -> None:
    good = {
        "tenant": st.sampled_from(["default", "acme", "nope"]),
        "email": st.sampled_from([AGENT_EMAIL, "bob@example.com", "ALICE@EXAMPLE.COM", ""]),
        "password": st.sampled_from([AGENT_PASSWORD, "wrong", AGENT_PASSWORD + " "]),
    }
    body = data.draw(bodies(["tenant", "email", "password", "token", "name"], good), label="body")
    headers = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "content-type": st.sampled_from(
                    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
                ),
                "authorization": st.sampled_from([f"Bearer {ADMIN_KEY}", "Bearer x"]),
            },
        ),
        label="headers",
    )
    before = await census.settled()
    async with server.http() as http:
        answer = await http.post(
            "/realtime/v1/agents/login", content=content_of(body), headers=headers
        )
    check_answer(answer)
    if answer.status_code >= 400:
        assert await census.counts() == before, f"a refused login left rows: {answer.text}"
    else:
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert got["token"].startswith("rtg_") and got["agent"]["email"] == AGENT_EMAIL
        after = await census.counts()
        assert after["agent_tokens"] == before["agent_tokens"] + 1


def path_ids(world: World) -> st.SearchStrategy[str]:
    """Path segments: real ids, made-up ones, and odd text (never ``/``, ``.`` or ``..``,
    which are not this route)."""
    odd = st.one_of(odd_text, sized_text).filter(
        lambda t: t and "/" not in t and t not in {".", ".."}
    )
    return st.one_of(
        st.sampled_from(world.conversations),
        st.builds(lambda: str(uuid.uuid4())),
        st.builds(lambda t: quote(t, safe=""), odd),
    )


@FUZZ
@given(data=st.data())
async def test_random_history_reads_never_fail_the_server_nor_write(
    server: RunningServer, census: Census, world: World, data: st.DataObject
) -> None:
    path = f"/realtime/v1/conversations/{data.draw(path_ids(world), label='id')}/messages"
    param = st.one_of(odd_text, sized_text, st.sampled_from(LONE_SURROGATES))
    params = data.draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from(["session_id", "user", "signed_context", "after_seq"]),
                    odd_text,
                ),
                st.one_of(
                    st.sampled_from(
                        ["s-fuzz", world.other_session, "u-1", "u-env", world.envelope]
                    ),
                    param,
                ),
            ),
            max_size=4,
        ),
        label="query",
    )
    credentials = [world.full_key, world.chat_key, world.revoked_key, world.acme_key, ADMIN_KEY]
    headers = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "authorization": st.one_of(
                    st.sampled_from(credentials).map(lambda k: f"Bearer {k}"),
                    st.sampled_from(["Bearer", "Bearer ", "bearer  x ", "Basic YTpi"]),
                    header_text,
                ),
                "x-api-key": st.one_of(st.sampled_from(credentials), header_text),
                "origin": st.one_of(
                    st.sampled_from(["https://example.com", "null", "http://127.0.0.1"]),
                    header_text,
                ),
            },
        ),
        label="headers",
    )
    query = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'), safe='')}="
        f"{quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in params
    )
    method = data.draw(st.sampled_from(["GET", "GET", "OPTIONS"]), label="method")
    before = await census.settled()
    async with server.http() as http:
        answer = await http.request(method, f"{path}?{query}" if query else path, headers=headers)
    if method == "OPTIONS":  # the CORS preflight: no body, only a status
        assert answer.status_code in (204, 403, 404), answer
        if answer.status_code == 204:
            assert answer.headers["access-control-allow-origin"] == headers["origin"]
    else:
        check_answer(answer)
        if answer.status_code == 200:
            assert answer.json()["conversation"]["id"] in world.conversations
    assert await census.counts() == before, "a read wrote rows"


# -- the admin API: random callers on every route, random bodies where the admin fuzz has none

CALLERS = ["none", "garbage", "revoked", "chat", "acme", "full", "admin"]


def credential(world: World, caller: str, junk: str) -> dict[str, str]:
    key = {
        "none": None,
        "garbage": junk,
        "revoked": world.revoked_key,
        "chat": world.chat_key,
        "acme": world.acme_key,
        "full": world.full_key,
        "admin": ADMIN_KEY,
    }[caller]
    return {} if key is None else {"authorization": f"Bearer {key}"}


ADMIN_ROUTES = [
    (method, route.path)
    for route in admin_routes
    for method in sorted(route.methods or ())
    if method != "HEAD" and route.path != "/admin/v1/openapi.json"
]
# Bodies for writes that test_admin_api.py does not fuzz (with the admin key, its bodies
# reach every write of tenant default; here: envelopes, and every write of other tenants and
# bots).
ENVELOPE_KEYS = ["channel", "user", "route", "context", "ttl", "g", "pr", "s", "t", "x", "xt", "xc"]
BOT_KEYS = ["bot_id", "name", "privacy", "handoff_enabled", "temperature", "allowed_origins"]


@FUZZ
@given(data=st.data())
async def test_random_admin_calls_never_fail_the_server_nor_store_a_refusal(
    server: RunningServer, census: Census, world: World, data: st.DataObject
) -> None:
    method, template = data.draw(st.sampled_from(ADMIN_ROUTES), label="route")
    names = {
        "tenant": st.sampled_from(["default", "acme", "nope"]),
        "bot_id": st.sampled_from(["demo", "spare", world.bot_uuid, "nope"]),
        "key_id": st.builds(lambda: str(uuid.uuid4())),
        "webhook_id": st.builds(lambda: str(uuid.uuid4())),
        "source_id": st.builds(lambda: str(uuid.uuid4())),
    }
    odd = st.builds(
        lambda t: quote(t, safe=""),
        odd_text.filter(lambda t: t and "/" not in t and t not in {".", ".."}),
    )
    path = template
    for name, strategy in names.items():
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", data.draw(st.one_of(strategy, odd), label=name))
    if method == "DELETE" and data.draw(st.booleans(), label="keep demo"):
        # Deleting the demo bot or tenant default's keys would only make the rest 404.
        path = path.replace("/bots/demo", "/bots/spare")
    caller = data.draw(st.sampled_from(CALLERS), label="caller")
    headers = credential(world, caller, data.draw(header_text, label="junk key"))
    content = None
    if method in ("POST", "PATCH"):
        keys = ENVELOPE_KEYS if path.endswith("/envelopes") else BOT_KEYS
        good = {
            "channel": st.sampled_from(["demo", "spare", "nope"]),
            "bot_id": st.sampled_from(["demo", "spare", "new-bot"]),
            "ttl": st.sampled_from([1, 900, 86400, 86401, 0]),
            "context": st.dictionaries(st.text(max_size=5), anything, max_size=3),
        }
        content = content_of(data.draw(bodies(keys, good), label="body"))
        sources = path.endswith("/sources") and not path.startswith("/admin/v1/tenants/nope")
        if sources and caller in ("full", "admin"):
            # a source that is stored indexes in the background: test_admin_api.py's
            headers = credential(world, "chat", "")
    before = await census.settled()
    async with server.http() as http:
        answer = await http.request(method, path, content=content, headers=headers)
    check_answer(answer)
    if caller in ("none", "garbage", "revoked"):
        assert answer.status_code == 401, answer.text
    if caller == "chat":
        assert answer.status_code == 403, answer.text
    if answer.status_code >= 400:
        assert await census.counts() == before, f"a refused call left rows: {answer.text}"
