"""Tenant isolation: two tenants, alpha (A) and bravo (B), each with a bot, a knowledge source,
API keys (full, chat, bound to its bot), human agents, a webhook and conversations in each
state (bot, pending_human, with_human); then A's credentials against every admin route, every
visitor and console WebSocket command and the history read, aimed at B's ids.

What is B's must answer exactly as a thing that does not exist (404 or a typed not-found
error, never 403: no existence oracle; each probe is compared with the same probe on a random
id), and nothing of B may change: its rows in the store, its admin listings and histories
(read before and after), nor what an agent of B watching all its conversations and its queue
sees. Every deviation is collected and reported at once (with request and answer), so one
run lists them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from realtime.envelopes import mint
from realtime.protocol import PARSERS
from realtime.protocol_console import CONSOLE_PARSERS
from realtime.store import async_url
from realtime.transport.admin import routes as admin_routes
from tests.support import UNIT, Client, RunningServer, make_settings, run_server, ws_client

pytestmark = pytest.mark.anyio

A, B = "alpha", "bravo"
GHOST = "ghost"  # a tenant that does not exist
SECRET = "whsec-0123456789abcdef"
HISTORY = "/realtime/v1/conversations/{}/messages"
# Both tenants have a visitor with this session id and a user with this id: only the tenant
# tells them apart.
SHARED_SESSION, SHARED_USER = "s-shared", "u-shared"
NO_CONVERSATION = ("error", "conversation_not_found")


def fresh() -> str:
    """An id nothing has."""
    return str(uuid.uuid4())


@pytest.fixture
async def server(tmp_path: Path, database_url: str) -> AsyncIterator[RunningServer]:
    """The offline responder; queued requests and absent agents' conversations stay where
    they are for the whole test (no sweeper or grace period moves B's things meanwhile)."""
    settings = make_settings(
        tmp_path, database_url=database_url, presence_grace=600.0, handoff_timeout=3600.0
    )
    async with run_server(settings) as running:
        yield running


# -- clients -------------------------------------------------------------------------------


class Peer:
    """A WebSocket client that numbers its commands and keeps every frame it received."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.replies: list[dict[str, Any]] = []
        self.unsolicited: list[dict[str, Any]] = []  # events: not the answer to a command
        self.welcome: dict[str, Any] = {}
        self._n = 0
        self._heard = 0

    async def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send one command; its ack, error, welcome or pong."""
        self._n += 1
        client_id = f"c{self._n}"
        await self.client.send(type=kind, id=client_id, **fields)
        while True:
            frame = await self.client.recv()
            if frame.get("id") == client_id and frame["type"] in (
                "ack",
                "error",
                "welcome",
                "pong",
            ):
                self.replies.append(frame)
                if frame["type"] == "welcome":
                    self.welcome = frame
                return frame
            self.unsolicited.append(frame)

    async def quiet(self) -> list[dict[str, Any]]:
        """The events that arrived unasked since the last call of this (within a short wait,
        then a ping's round trip)."""
        await asyncio.sleep(0.3 * UNIT)
        await self.call("ping")
        heard, self._heard = self.unsolicited[self._heard :], len(self.unsolicited)
        return heard

    def everything(self) -> list[dict[str, Any]]:
        """What it received, without what it sent itself (ids it chose, echoed in acks)."""
        return [strip(f) for f in self.replies] + self.unsolicited


def strip(frame: dict[str, Any]) -> dict[str, Any]:
    """A reply without the echoes of the command (its id and conversation id)."""
    return {k: v for k, v in frame.items() if k not in ("id", "conversation_id")}


def kind(frame: dict[str, Any]) -> tuple[str, str | None]:
    return frame["type"], frame.get("code")


@contextlib.asynccontextmanager
async def connect(server: RunningServer, path: str = "/ws") -> AsyncIterator[Peer]:
    async with ws_client(server, path) as client:
        yield Peer(client)


@contextlib.asynccontextmanager
async def console(server: RunningServer, tenant: str, agent: dict[str, Any]) -> AsyncIterator[Peer]:
    async with connect(server, "/ws/console") as peer:
        welcome = await peer.call(
            "hello", tenant=tenant, email=agent["email"], password=agent["password"]
        )
        assert welcome["type"] == "welcome", welcome
        yield peer


Answer = tuple[int, Any]


async def answer(pending: Awaitable[httpx.Response]) -> Answer:
    response = await pending
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = response.text
    return response.status_code, body


def code(got: Answer) -> tuple[int, str | None]:
    status, body = got
    error = body.get("error") if isinstance(body, dict) else None
    return status, error.get("code") if isinstance(error, dict) else None


async def created(pending: Awaitable[httpx.Response]) -> dict[str, Any]:
    response = await pending
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the two tenants -----------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    slug: str
    bot_uuid: str
    source_id: str
    keys: dict[str, dict[str, Any]]  # full | chat | bound (to its bot) -> as created, with "key"
    webhook_id: str
    agents: dict[str, dict[str, Any]]  # desk | lead -> wire, with "password"
    envelope: str  # user SHARED_USER on its bot, minted by the admin API
    conversations: dict[str, str] = field(default_factory=dict)  # user | session | queued | claimed
    readers: dict[str, dict[str, str]] = field(default_factory=dict)  # their history's query

    @property
    def bot_ref(self) -> str:
        return f"{self.id}/{self.slug}"

    def key(self, which: str = "full") -> str:
        return str(self.keys[which]["key"])

    def needles(self) -> set[str]:
        """What must never appear in an answer given to the other tenant."""
        return {
            self.id,
            self.slug,
            self.bot_uuid,
            self.source_id,
            self.webhook_id,
            self.envelope,
            *(str(k[name]) for k in self.keys.values() for name in ("id", "key")),
            *(str(a["id"]) for a in self.agents.values()),
            *self.conversations.values(),
        }


async def make_tenant(server: RunningServer, tid: str) -> Tenant:
    """A tenant with everything, made with the admin key; then its conversations: one of a
    user (full key), one of a session, one queued for a person, one a person has."""
    base = f"/admin/v1/tenants/{tid}"
    slug = f"{tid}-bot"
    async with server.admin() as admin:
        await created(admin.post("/admin/v1/tenants", json={"name": tid.title(), "id": tid}))
        bot = await created(
            admin.post(
                f"{base}/bots",
                json={"bot_id": slug, "handoff_enabled": True, "handoff_trigger": "button"},
            )
        )
        source = await created(
            admin.post(
                f"{base}/bots/{slug}/sources",
                json={
                    "title": f"{tid.title()} hours",
                    "content": f"The {tid} shop opens at nine and closes at five.",
                },
            )
        )
        keys = {
            "full": await created(admin.post(f"{base}/keys", json={"name": "server"})),
            "chat": await created(
                admin.post(f"{base}/keys", json={"name": "widget", "scope": "chat"})
            ),
            "bound": await created(
                admin.post(f"{base}/keys", json={"name": "bound", "bot_id": slug})
            ),
        }
        hook = await created(
            admin.post(
                f"{base}/webhooks",
                json={
                    "url": f"https://{tid}.example.com/hook",
                    "events": ["message.sent"],
                    "secret": SECRET,
                },
            )
        )
        agents = {}
        # Both tenants have an agent desk@example.com (with its own password), and one whose
        # email only that tenant has.
        for role, email in (("desk", "desk@example.com"), ("lead", f"lead@{tid}.example.com")):
            password = f"{tid}-{role}-password"
            agent = await created(
                admin.post(
                    f"{base}/agents",
                    json={"name": f"{tid} {role}", "email": email, "password": password},
                )
            )
            agents[role] = {**agent, "password": password}
        envelope = await created(
            admin.post(
                f"{base}/envelopes", json={"channel": slug, "user": SHARED_USER, "ttl": 3600}
            )
        )
    tenant = Tenant(
        id=tid,
        slug=slug,
        bot_uuid=bot["uuid"],
        source_id=source["id"],
        keys=keys,
        webhook_id=hook["id"],
        agents=agents,
        envelope=envelope["signed_context"],
    )
    hellos = {
        "user": {"api_key": tenant.key(), "user": SHARED_USER},
        "session": {"session_id": SHARED_SESSION},
        "queued": {"session_id": f"s-{tid}-queued"},
        "claimed": {"session_id": f"s-{tid}-claimed"},
    }
    for name, hello in hellos.items():
        async with ws_client(server) as visitor:
            await visitor.send(type="hello", id="hello", bot=tenant.bot_ref, **hello)
            assert (await visitor.recv())["type"] == "welcome"
            frames = await visitor.ask(f"When does the {tid} shop open?", id="first")
            assert frames[-1]["type"] == "run.completed", frames[-1]
            cid = str(frames[0]["conversation_id"])
            if name in ("queued", "claimed"):
                await visitor.send(type="handoff.request", id="handoff", conversation_id=cid)
                while (frame := await visitor.recv()).get("id") != "handoff":
                    pass
                assert frame.get("queued") is True, frame
        tenant.conversations[name] = cid
        # Its owner reads it (no key: reading must not touch what the snapshot compares).
        tenant.readers[name] = (
            {"signed_context": tenant.envelope} if name == "user" else dict(hello)
        )
    async with console(server, tid, agents["desk"]) as desk:
        claimed = await desk.call(
            "conversation.claim", conversation_id=tenant.conversations["claimed"]
        )
        assert claimed["type"] == "ack", claimed
    return tenant


# -- what B has --------------------------------------------------------------------------------

# A row is a tenant's when one of these columns names it or one of its things.
OWNING = ("tenant_id", "conversation_id", "bot_uuid", "agent_id", "source_id")
# Tables whose own id is one of those things: table -> (its id column, the kind of thing).
THINGS = {
    "tenants": ("id", "tenant_id"),
    "conversations": ("id", "conversation_id"),
    "bots": ("uuid", "bot_uuid"),
    "agents": ("id", "agent_id"),
    "knowledge_sources": ("id", "source_id"),
}


async def store_rows(database_url: str, tenant: str) -> dict[str, list[str]]:
    """Every row of the store that is the tenant's or points at one of its things, in every
    table (read with SQL, whatever the tables are now)."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:

            def columns(sync: Any) -> dict[str, list[str]]:
                inspector = sa.inspect(sync)
                return {
                    name: [c["name"] for c in inspector.get_columns(name)]
                    for name in inspector.get_table_names()
                }

            tables: dict[str, list[dict[str, Any]]] = {}
            for name, cols in (await conn.run_sync(columns)).items():
                if name in THINGS or any(c in OWNING for c in cols):
                    result = await conn.execute(sa.text(f'SELECT * FROM "{name}"'))
                    tables[name] = [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()
    theirs: dict[str, set[Any]] = {
        "tenant_id": {tenant},
        "bot_uuid": {r["uuid"] for r in tables["bots"] if r["tenant_id"] == tenant},
        "agent_id": {r["id"] for r in tables["agents"] if r["tenant_id"] == tenant},
    }
    theirs["conversation_id"] = {
        r["id"]
        for r in tables["conversations"]
        if r["tenant_id"] == tenant or r["bot_uuid"] in theirs["bot_uuid"]
    }
    theirs["source_id"] = {
        r["id"]
        for r in tables["knowledge_sources"]
        if r["tenant_id"] == tenant or r["bot_uuid"] in theirs["bot_uuid"]
    }

    def is_theirs(table: str, row: dict[str, Any]) -> bool:
        if table in THINGS:
            column, thing = THINGS[table]
            if row[column] in theirs[thing]:
                return True
        return any(row.get(c) is not None and row[c] in theirs[c] for c in OWNING)

    return {
        name: sorted(repr(sorted(row.items())) for row in rows if is_theirs(name, row))
        for name, rows in sorted(tables.items())
    }


async def snapshot(server: RunningServer, t: Tenant) -> dict[str, Any]:
    """The tenant as its owners see it (histories, admin listings), then its stored rows."""
    async with server.http() as http:
        histories = {
            name: await answer(http.get(HISTORY.format(cid), params=t.readers[name]))
            for name, cid in t.conversations.items()
        }
    base = f"/admin/v1/tenants/{t.id}"
    listings = (
        base,
        f"{base}/keys",
        f"{base}/webhooks",
        f"{base}/agents",
        f"{base}/bots",
        f"{base}/bots/{t.slug}",
        f"{base}/bots/{t.slug}/sources",
    )
    async with server.admin() as admin:
        admin_view = {path: await answer(admin.get(path)) for path in listings}
    for name, got in {**histories, **admin_view}.items():
        assert got[0] == 200, (name, got)
    rows = await store_rows(server.settings.database_url, t.id)
    return {"history": histories, "admin": admin_view, "rows": rows}


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Where ``after`` differs from ``before``, as readable lines."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            line
            for key in sorted(set(before) | set(after), key=str)
            for line in differences(before.get(key), after.get(key), f"{where} {key}".strip())
        ]
    if isinstance(before, tuple) and isinstance(after, tuple) and len(before) == len(after):
        return [
            line
            for n, (was, now) in enumerate(zip(before, after, strict=True))
            for line in differences(was, now, f"{where}[{n}]")
        ]
    if isinstance(before, list) and isinstance(after, list) and before != after:
        gone = [x for x in before if x not in after]
        new = [x for x in after if x not in before]
        return [f"{where}: removed {gone!r}, added {new!r}"]
    return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


class Audit:
    """Every way the server answered otherwise than intended, reported together."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def expect(self, label: str, got: Any, want: Any) -> None:
        if got != want:
            self.problems.append(f"{label}\n    expected {want!r}\n    got      {got!r}")

    def same(self, label: str, theirs: Any, nothing: Any) -> None:
        """B's thing must be answered as a thing that does not exist."""
        if theirs != nothing:
            self.problems.append(
                f"{label}: answered otherwise than for an id that does not exist (an "
                f"existence oracle)\n    B's id:  {theirs!r}\n    no such: {nothing!r}"
            )

    def no_leak(self, label: str, needles: set[str], answers: Iterable[Any]) -> None:
        for got in answers:
            text = orjson.dumps(got).decode()
            found = sorted(n for n in needles if n in text)
            if found:
                self.problems.append(f"{label}: an answer names B's {found}: {text[:600]}")

    def report(self) -> None:
        count = len(self.problems)
        assert not self.problems, f"{count} isolation problem(s):\n" + "\n".join(self.problems)


@dataclass
class World:
    a: Tenant
    b: Tenant
    spy: Peer  # an agent of A following A's queue while B was made and all along
    audit: Audit


@contextlib.asynccontextmanager
async def isolated(server: RunningServer) -> AsyncIterator[World]:
    """Both tenants; B snapshotted and watched by its lead agent (its queue and every one of
    its conversations). Afterwards nothing of B may have changed nor happened, and A's agent
    must have heard nothing of B."""
    a = await make_tenant(server, A)
    audit = Audit()
    async with console(server, A, a.agents["lead"]) as spy:
        queue = await spy.call("queue.subscribe")
        assert queue["type"] == "ack", queue
        b = await make_tenant(server, B)
        async with console(server, B, b.agents["lead"]) as observer:
            assert (await observer.call("queue.subscribe"))["type"] == "ack"
            for cid in b.conversations.values():
                watched = await observer.call("conversation.watch", conversation_id=cid)
                assert watched["type"] == "ack", watched
            await observer.quiet()  # what its own arrival announced
            before = await snapshot(server, b)
            yield World(a, b, spy, audit)
            heard = await observer.quiet()
            after = await snapshot(server, b)
        await spy.quiet()
    for frame in heard:
        audit.problems.append(f"B's agent, watching B's queue and conversations, saw {frame}")
    for line in differences(before, after):
        audit.problems.append(f"B changed: {line}")
    audit.expect(
        "A's agent: the agents online in its welcome",
        set(spy.welcome["agents"])
        - {
            a.agents["desk"]["id"],
            a.agents["lead"]["id"],
        },
        set(),
    )
    audit.no_leak("A's agent following A's queue while B was made", b.needles(), spy.everything())
    audit.report()


# -- the admin API -------------------------------------------------------------------------------

TENANT_PATH = "/admin/v1/tenants/{tenant}"
BOT_PATH = TENANT_PATH + "/bots/{bot_id}"
# Bodies that would work, so that a route that forgot its check would act (and be seen).
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", TENANT_PATH): {"monthly_messages": 0},
    ("POST", TENANT_PATH + "/keys"): {"name": "stolen"},
    ("POST", TENANT_PATH + "/webhooks"): {
        "url": "https://evil.example.com/hook",
        "events": ["message.sent"],
        "secret": SECRET,
    },
    ("POST", TENANT_PATH + "/envelopes"): {"channel": f"{B}-bot", "user": SHARED_USER},
    ("POST", TENANT_PATH + "/agents"): {
        "name": "Mallory",
        "email": "mallory@example.com",
        "password": "mallory-password",
    },
    ("POST", TENANT_PATH + "/bots"): {"bot_id": "stolen-bot"},
    ("PATCH", BOT_PATH): {"name": "Stolen"},
    ("POST", BOT_PATH + "/sources"): {"content": "Stolen words."},
}


def tenant_routes(b: Tenant) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every admin route under a tenant's path (as the server has them now), its other
    parameters filled with B's ids: ``(method, path with {tenant} left, body)``."""
    ids = {
        "bot_id": b.slug,
        "key_id": b.keys["full"]["id"],
        "webhook_id": b.webhook_id,
        "source_id": b.source_id,
    }
    found = []
    for route in admin_routes:
        path = getattr(route, "path", "")
        if not path.startswith(TENANT_PATH):
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            body = BODIES.get((method, path), {}) if method in ("POST", "PATCH", "PUT") else None
            filled = re.sub(
                r"\{(\w+)\}",
                lambda m: "{tenant}" if m[1] == "tenant" else ids.get(m[1], fresh()),
                path,
            )
            found.append((method, filled, body))
    return found


async def test_the_admin_api_of_one_tenant_never_reaches_another(server: RunningServer) -> None:
    async with isolated(server) as world:
        a, b, audit = world.a, world.b, world.audit
        routes = tenant_routes(b)
        # The routes are the server's own list: a new one is probed too. These at least:
        known = {
            ("GET", ""),
            ("POST", "/keys"),
            ("GET", "/keys"),
            ("DELETE", f"/keys/{b.keys['full']['id']}"),
            ("POST", "/webhooks"),
            ("GET", "/webhooks"),
            ("DELETE", f"/webhooks/{b.webhook_id}"),
            ("POST", "/envelopes"),
            ("POST", "/agents"),
            ("GET", "/agents"),
            ("POST", "/bots"),
            ("GET", "/bots"),
            ("GET", f"/bots/{b.slug}"),
            ("PATCH", f"/bots/{b.slug}"),
            ("DELETE", f"/bots/{b.slug}"),
            ("POST", f"/bots/{b.slug}/sources"),
            ("GET", f"/bots/{b.slug}/sources"),
            ("DELETE", f"/bots/{b.slug}/sources/{b.source_id}"),
        }
        probed = {(method, path.removeprefix(TENANT_PATH)) for method, path, _ in routes}
        assert known <= probed, known - probed
        own = f"/admin/v1/tenants/{a.id}"
        credentials = {
            "A's full key": a.key(),
            "A's chat key": a.key("chat"),
            "A's bound full key": a.key("bound"),
            "an unknown key": "rtk_" + "x" * 40,
        }
        expected = {
            "A's full key": (404, "tenant_not_found"),
            "A's chat key": (403, "key_scope"),
            "A's bound full key": (403, "key_scope"),
            "an unknown key": (401, "unauthorized"),
        }
        async with server.http() as http:
            for who, key in credentials.items():
                headers = {"authorization": f"Bearer {key}"}
                for method, path, body in routes:
                    by_tenant: dict[str, Answer] = {}
                    # The full key on its own tenant would act: it is tried below, not here.
                    tenants = (B, GHOST) if who == "A's full key" else (B, GHOST, A)
                    for tenant in tenants:
                        url = path.replace("{tenant}", tenant)
                        by_tenant[tenant] = await answer(
                            http.request(method, url, json=body, headers=headers)
                        )
                    label = f"{who}: {method} {path.replace('{tenant}', B)} body={body}"
                    audit.expect(label, code(by_tenant[B]), expected[who])
                    audit.same(label, by_tenant[B], by_tenant[GHOST])
                    if A in by_tenant:
                        audit.same(label + " (vs A's own tenant)", by_tenant[B], by_tenant[A])

            headers = {"authorization": f"Bearer {a.key()}"}

            async def call(method: str, path: str, body: Any = None) -> Answer:
                """A request with A's full key."""
                return await answer(http.request(method, path, json=body, headers=headers))

            # Within A's own tenant, B's things do not exist either.
            missing = fresh()
            cases = [
                # (request with B's thing, the same with a thing nobody has, the error)
                (
                    ("GET", f"{own}/bots/{b.slug}"),
                    ("GET", f"{own}/bots/no-such-bot"),
                    "bot_not_found",
                ),
                (
                    ("GET", f"{own}/bots/{b.bot_uuid}"),
                    ("GET", f"{own}/bots/{missing}"),
                    "bot_not_found",
                ),
                (
                    ("PATCH", f"{own}/bots/{b.slug}", {"name": "Stolen"}),
                    ("PATCH", f"{own}/bots/no-such-bot", {"name": "Stolen"}),
                    "bot_not_found",
                ),
                (
                    ("DELETE", f"{own}/bots/{b.slug}"),
                    ("DELETE", f"{own}/bots/no-such-bot"),
                    "bot_not_found",
                ),
                (
                    ("DELETE", f"{own}/bots/{b.bot_uuid}"),
                    ("DELETE", f"{own}/bots/{missing}"),
                    "bot_not_found",
                ),
                (
                    ("GET", f"{own}/bots/{b.slug}/sources"),
                    ("GET", f"{own}/bots/no-such-bot/sources"),
                    "bot_not_found",
                ),
                (
                    ("POST", f"{own}/bots/{b.slug}/sources", {"content": "Stolen words."}),
                    ("POST", f"{own}/bots/no-such-bot/sources", {"content": "Stolen words."}),
                    "bot_not_found",
                ),
                (
                    ("DELETE", f"{own}/bots/{b.slug}/sources/{b.source_id}"),
                    ("DELETE", f"{own}/bots/no-such-bot/sources/{missing}"),
                    "bot_not_found",
                ),
                (
                    ("DELETE", f"{own}/bots/{a.slug}/sources/{b.source_id}"),
                    ("DELETE", f"{own}/bots/{a.slug}/sources/{missing}"),
                    "source_not_found",
                ),
                *(
                    (
                        ("DELETE", f"{own}/keys/{b.keys[which]['id']}"),
                        ("DELETE", f"{own}/keys/{missing}"),
                        "key_not_found",
                    )
                    for which in ("full", "chat", "bound")
                ),
                (
                    ("DELETE", f"{own}/webhooks/{b.webhook_id}"),
                    ("DELETE", f"{own}/webhooks/{missing}"),
                    "webhook_not_found",
                ),
                *(
                    (
                        ("POST", f"{own}/keys", {"name": "k", "bot_id": theirs}),
                        ("POST", f"{own}/keys", {"name": "k", "bot_id": nothing}),
                        "bot_not_found",
                    )
                    for theirs, nothing in ((b.slug, "no-such-bot"), (b.bot_uuid, missing))
                ),
                *(
                    (
                        ("POST", f"{own}/envelopes", {"channel": theirs, "user": SHARED_USER}),
                        ("POST", f"{own}/envelopes", {"channel": nothing, "user": SHARED_USER}),
                        "bot_not_found",
                    )
                    for theirs, nothing in (
                        (b.slug, "no-such-bot"),
                        (b.bot_ref, f"{GHOST}/{b.slug}"),
                        (b.bot_uuid, missing),
                    )
                ),
            ]
            for theirs, nothing, error in cases:
                got, none = await call(*theirs), await call(*nothing)  # type: ignore[arg-type]
                label = f"A's full key: {' '.join(map(str, theirs))}"
                audit.expect(label, code(got), (404, error))
                audit.same(label, got, none)

            # Only the server's admin key makes tenants (an existing id or not: same answer).
            for body in ({"name": "Bravo", "id": B}, {"name": "Fresh", "id": "fresh-tenant"}):
                got = await call("POST", "/admin/v1/tenants", body)
                audit.expect(
                    f"A's full key: POST /admin/v1/tenants {body}", code(got), (403, "forbidden")
                )

            # A's listings are A's alone.
            listed = await call("GET", "/admin/v1/tenants")
            audit.expect(
                "A's full key: GET /admin/v1/tenants",
                (listed[0], [t["id"] for t in listed[1]["tenants"]]),
                (200, [A]),
            )
            views = [listed]
            for path in (
                own,
                f"{own}/keys",
                f"{own}/webhooks",
                f"{own}/agents",
                f"{own}/bots",
                f"{own}/bots/{a.slug}",
                f"{own}/bots/{a.slug}/sources",
            ):
                got = await call("GET", path)
                audit.expect(f"A's full key: GET {path}", got[0], 200)
                views.append(got)
            audit.no_leak("A's full key: A's own listings", b.needles(), views)

            # B's names are free in A: taking them is no conflict (a 409 would tell they exist).
            bot = await call("POST", f"{own}/bots", {"bot_id": b.slug})
            audit.expect(f"A's full key: POST {own}/bots bot_id={b.slug}", code(bot), (201, None))
            agent = await call(
                "POST",
                f"{own}/agents",
                {"name": "Lead", "email": b.agents["lead"]["email"], "password": "a-lead-password"},
            )
            audit.expect(
                f"A's full key: POST {own}/agents with B's lead's email", code(agent), (201, None)
            )

        async with server.admin() as admin:
            every = (await admin.get("/admin/v1/tenants")).json()["tenants"]
        audit.expect(
            "the admin key: GET /admin/v1/tenants", {A, B} - {t["id"] for t in every}, set()
        )


# -- the visitors' WebSocket ------------------------------------------------------------------

# (command, fields beside conversation_id, the answer when the conversation is not there)
VISITOR_COMMANDS: list[tuple[str, dict[str, Any], tuple[str, str | None]]] = [
    ("message.send", {"content": "What are your opening hours?"}, NO_CONVERSATION),
    ("subscribe", {}, NO_CONVERSATION),
    ("subscribe", {"after_seq": 0}, NO_CONVERSATION),
    ("unsubscribe", {}, ("ack", None)),  # of nothing it follows: nothing to tell
    ("typing", {"on": True}, NO_CONVERSATION),
    ("typing", {"on": False}, NO_CONVERSATION),
    ("run.cancel", {}, NO_CONVERSATION),
    ("run.cancel", {"run_id": fresh()}, NO_CONVERSATION),
    (
        "confirmation.resolve",
        {"tool_call_id": "call_1", "decision": "approve"},
        NO_CONVERSATION,
    ),
    ("confirmation.resolve", {"tool_call_id": "call_1", "decision": "reject"}, NO_CONVERSATION),
    ("handoff.request", {}, NO_CONVERSATION),
    ("handoff.cancel", {}, NO_CONVERSATION),
    ("feedback", {"message_id": fresh(), "value": "negative"}, NO_CONVERSATION),
    ("contact.submit", {"fields": {"name": "Eve", "email": "eve@example.com"}}, NO_CONVERSATION),
]


async def test_visitors_of_one_tenant_never_reach_anothers_bots_or_conversations(
    server: RunningServer,
) -> None:
    # Every command of the protocol that names a conversation is tried (a new one too).
    untried = set(PARSERS) - {"hello", "ping"} - {c for c, _, _ in VISITOR_COMMANDS}
    assert not untried, f"add these visitor commands to VISITOR_COMMANDS: {untried}"
    async with isolated(server) as world:
        a, b, audit = world.a, world.b, world.audit
        peers: list[Peer] = []
        secret = await server.engine.store.signing_secret(A)
        assert isinstance(secret, str)

        # hello: A's credentials naming B's bot, as a bot that does not exist.
        bots = [
            (b.bot_ref, f"{B}/no-such-bot"),
            (b.bot_uuid, fresh()),
            (f"{A}/{b.slug}", f"{A}/no-such-bot"),
            (b.slug, "no-such-bot"),
        ]
        hellos: dict[str, tuple[dict[str, Any], tuple[str, str | None]]] = {
            "A's full key + user": (
                {"api_key": a.key(), "user": SHARED_USER},
                ("error", "bot_not_found"),
            ),
            "A's chat key + session": (
                {"api_key": a.key("chat"), "session_id": SHARED_SESSION},
                ("error", "bot_not_found"),
            ),
            "A's chat key + user": (
                {"api_key": a.key("chat"), "user": SHARED_USER},
                ("error", "bot_not_found"),
            ),
            "A's bound key + user": (
                {"api_key": a.key("bound"), "user": SHARED_USER},
                ("error", "bot_not_found"),
            ),
            "A's envelope": ({"signed_context": a.envelope}, ("error", "envelope_channel")),
        }
        async with connect(server) as peer:
            peers.append(peer)
            for who, (creds, error) in hellos.items():
                for theirs, nothing in bots:
                    got = await peer.call("hello", bot=theirs, **creds)
                    none = await peer.call("hello", bot=nothing, **creds)
                    label = f"/ws hello {who}, bot={theirs}"
                    audit.expect(label, kind(got), error)
                    audit.same(label, strip(got), strip(none))
            # A chat key never speaks for a user, even on its own bot.
            got = await peer.call("hello", bot=a.bot_ref, api_key=a.key("chat"), user=SHARED_USER)
            audit.expect(
                "/ws hello A's chat key + user on A's bot", kind(got), ("error", "key_scope")
            )
            # An envelope whose k says B, signed with A's secret.
            for channel in (b.slug, a.slug):
                forged = mint(
                    secret, user=SHARED_USER, route="", channel=channel, context={}, tenant=B
                )
                ghost = mint(
                    secret, user=SHARED_USER, route="", channel=channel, context={}, tenant=GHOST
                )
                got = await peer.call("hello", signed_context=forged)
                none = await peer.call("hello", signed_context=ghost)
                label = f"/ws hello with an envelope k={B} c={channel} signed by A"
                audit.expect(label, kind(got), ("error", "envelope_tampered"))
                audit.same(label, strip(got), strip(none))

        # A's visitors, each with the session id or user id of one of B's (only the tenant
        # differs), on A's bot: every command on B's conversations.
        identities = {
            "session": ({"bot": a.bot_ref, "session_id": SHARED_SESSION}, "session"),
            "full key + user": (
                {"bot": a.bot_ref, "api_key": a.key(), "user": SHARED_USER},
                "user",
            ),
            "chat key + session": (
                {"bot": a.bot_ref, "api_key": a.key("chat"), "session_id": SHARED_SESSION},
                "session",
            ),
            "bound key + user": (
                {"bot": a.bot_ref, "api_key": a.key("bound"), "user": SHARED_USER},
                "user",
            ),
            "envelope": ({"signed_context": a.envelope}, "user"),
        }
        targets = list(b.conversations.items())
        for who, (creds, own) in identities.items():
            async with connect(server) as peer:
                peers.append(peer)
                for name, cid in targets:
                    got = await peer.call(
                        "hello", resume={"conversation_id": cid, "after_seq": 0}, **creds
                    )
                    none = await peer.call(
                        "hello", resume={"conversation_id": fresh(), "after_seq": 0}, **creds
                    )
                    label = f"/ws hello as A's {who} resuming B's {name} conversation"
                    audit.expect(label, kind(got), NO_CONVERSATION)
                    audit.same(label, strip(got), strip(none))
                welcome = await peer.call("hello", **creds)
                assert welcome["type"] == "welcome", (who, welcome)
                assert welcome["bot"]["uuid"] == a.bot_uuid, welcome
                # The control: the same identity's own conversation in A is there.
                mine = await peer.call("subscribe", conversation_id=a.conversations[own])
                assert mine["type"] == "ack", (who, mine)
                await peer.call("unsubscribe", conversation_id=a.conversations[own])
                for command, fields, error in VISITOR_COMMANDS:
                    for name, cid in targets:
                        got = await peer.call(command, conversation_id=cid, **fields)
                        none = await peer.call(command, conversation_id=fresh(), **fields)
                        label = f"/ws {command} {fields} as A's {who} on B's {name} conversation"
                        audit.expect(label, kind(got), error)
                        audit.same(label, strip(got), strip(none))
        for peer in peers:
            audit.no_leak("/ws: what A's visitors received", b.needles(), peer.everything())


# -- the agents' console --------------------------------------------------------------------

# (command, fields beside conversation_id, the answer when the conversation is not there)
CONSOLE_COMMANDS: list[tuple[str, dict[str, Any], tuple[str, str | None]]] = [
    ("conversation.claim", {}, NO_CONVERSATION),
    ("conversation.take_over", {}, NO_CONVERSATION),
    ("conversation.watch", {}, NO_CONVERSATION),
    ("conversation.unwatch", {}, ("ack", None)),  # of nothing it follows: nothing to tell
    ("conversation.send", {"content": "Hello from alpha."}, NO_CONVERSATION),
    ("conversation.read", {}, NO_CONVERSATION),
    ("conversation.transfer", {}, NO_CONVERSATION),
    ("conversation.release", {}, NO_CONVERSATION),
    ("conversation.close", {}, NO_CONVERSATION),
    ("subscribe", {}, NO_CONVERSATION),
    ("subscribe", {"after_seq": 0}, NO_CONVERSATION),
    ("unsubscribe", {}, ("ack", None)),
    ("typing", {"on": True}, NO_CONVERSATION),
    ("confirmation.resolve", {"tool_call_id": "call_1", "decision": "approve"}, NO_CONVERSATION),
]


async def test_agents_of_one_tenant_never_reach_anothers_conversations_or_agents(
    server: RunningServer,
) -> None:
    # Every command of the console that names a conversation is tried (a new one too).
    without_conversation = {"hello", "ping", "presence.set", "conversations.list"}
    without_conversation |= {"conversations.live"}
    without_conversation |= {"queue.subscribe", "queue.unsubscribe"}
    untried = set(CONSOLE_PARSERS) - without_conversation - {c for c, _, _ in CONSOLE_COMMANDS}
    assert not untried, f"add these console commands to CONSOLE_COMMANDS: {untried}"
    async with isolated(server) as world:
        a, b, audit = world.a, world.b, world.audit
        desk, lead = b.agents["desk"], b.agents["lead"]

        # Signing in to A with B's credentials fails as a wrong password does.
        logins = {
            "B's desk agent's credentials at A (A has that email)": (
                A,
                desk["email"],
                desk["password"],
            ),
            "B's lead agent's credentials at A": (A, lead["email"], lead["password"]),
            "A's desk agent's credentials at B (B has that email)": (
                B,
                a.agents["desk"]["email"],
                a.agents["desk"]["password"],
            ),
            "A's lead agent's credentials at B": (
                B,
                a.agents["lead"]["email"],
                a.agents["lead"]["password"],
            ),
        }
        wrong = (A, a.agents["desk"]["email"], "not-the-password")
        async with server.http() as http:

            async def login(tenant: str, email: str, password: str) -> Answer:
                body = {"tenant": tenant, "email": email, "password": password}
                return await answer(http.post("/realtime/v1/agents/login", json=body))

            refused = await login(*wrong)
            assert code(refused) == (401, "unauthorized"), refused
            for label, creds in logins.items():
                login_answer = await login(*creds)
                audit.expect(
                    f"POST /realtime/v1/agents/login, {label}",
                    code(login_answer),
                    (401, "unauthorized"),
                )
                audit.same(f"POST /realtime/v1/agents/login, {label}", login_answer, refused)
            signed_in = await login(A, a.agents["desk"]["email"], a.agents["desk"]["password"])
            assert signed_in[0] == 200, signed_in
        async with connect(server, "/ws/console") as peer:
            refused_ws = await peer.call(
                "hello", tenant=wrong[0], email=wrong[1], password=wrong[2]
            )
            assert kind(refused_ws) == ("error", "unauthorized"), refused_ws
            for label, (tenant, email, password) in logins.items():
                got = await peer.call("hello", tenant=tenant, email=email, password=password)
                audit.expect(f"/ws/console hello, {label}", kind(got), ("error", "unauthorized"))
                audit.same(f"/ws/console hello, {label}", strip(got), strip(refused_ws))
            # A's desk agent, who has A's claimed conversation.
            welcome = await peer.call("hello", token=signed_in[1]["token"])
            assert welcome["type"] == "welcome", welcome
            audit.expect(
                "/ws/console welcome: the agents online",
                set(welcome["agents"]) - {a.agents["desk"]["id"], a.agents["lead"]["id"]},
                set(),
            )
            queue = await peer.call("queue.subscribe")
            audit.expect(
                "/ws/console queue.subscribe: the queue",
                [item["conversation"]["id"] for item in queue["queue"]],
                [a.conversations["queued"]],
            )
            listed = await peer.call("conversations.list")
            audit.expect(
                "/ws/console conversations.list",
                [item["conversation"]["id"] for item in listed["conversations"]],
                [a.conversations["claimed"]],
            )
            live = await peer.call("conversations.live", minutes=1440)
            assert live["conversations"], live  # the control: A's own are there
            audit.expect(
                "/ws/console conversations.live: only A's bot conversations",
                {item["conversation"]["id"] for item in live["conversations"]}
                - set(a.conversations.values()),
                set(),
            )
            audit.expect(
                "/ws/console welcome: the agents named",
                set(welcome["agents_info"]) - {a.agents["desk"]["id"], a.agents["lead"]["id"]},
                set(),
            )
            # The control: A's own conversation is there.
            mine = await peer.call("conversation.watch", conversation_id=a.conversations["session"])
            assert mine["type"] == "ack", mine
            await peer.call("conversation.unwatch", conversation_id=a.conversations["session"])

            targets = list(b.conversations.items())
            for command, fields, error in CONSOLE_COMMANDS:
                for name, cid in targets:
                    got = await peer.call(command, conversation_id=cid, **fields)
                    none = await peer.call(command, conversation_id=fresh(), **fields)
                    label = f"/ws/console {command} {fields} on B's {name} conversation"
                    audit.expect(label, kind(got), error)
                    audit.same(label, strip(got), strip(none))
                if command in ("conversation.transfer",):
                    for agent in (desk, lead):
                        got = await peer.call(
                            command,
                            conversation_id=b.conversations["claimed"],
                            to_agent_id=agent["id"],
                        )
                        audit.expect(
                            f"/ws/console {command} of B's claimed conversation to B's agent",
                            kind(got),
                            NO_CONVERSATION,
                        )

            # A's own conversation, to one of B's agents: no such agent.
            for role, agent in b.agents.items():
                got = await peer.call(
                    "conversation.transfer",
                    conversation_id=a.conversations["claimed"],
                    to_agent_id=agent["id"],
                )
                none = await peer.call(
                    "conversation.transfer",
                    conversation_id=a.conversations["claimed"],
                    to_agent_id=fresh(),
                )
                label = f"/ws/console conversation.transfer of A's conversation to B's {role} agent"
                audit.expect(label, kind(got), ("error", "agent_not_found"))
                audit.same(label, strip(got), strip(none))
            # Still A's after all that.
            listed = await peer.call("conversations.list")
            assert [item["conversation"]["id"] for item in listed["conversations"]] == [
                a.conversations["claimed"]
            ], listed
            await peer.quiet()
            audit.no_leak("/ws/console: what A's agent received", b.needles(), peer.everything())


# -- the history read ----------------------------------------------------------------------------


async def test_history_reads_with_one_tenants_credentials_never_reach_anothers(
    server: RunningServer,
) -> None:
    async with isolated(server) as world:
        a, b, audit = world.a, world.b, world.audit
        secret = await server.engine.store.signing_secret(A)
        assert isinstance(secret, str)
        forged = mint(secret, user=SHARED_USER, route="", channel=b.slug, context={}, tenant=B)

        def bearer(key: str) -> dict[str, str]:
            return {"authorization": f"Bearer {key}"}

        # (query, headers, A's own conversation it reads, the answer for another's)
        credentials: dict[str, tuple[dict[str, str], dict[str, str], str, tuple[int, str]]] = {
            "A's visitor's session_id": (
                {"session_id": f"s-{A}-queued"},
                {},
                "queued",
                (404, "conversation_not_found"),
            ),
            "A's full key + user": (
                {"user": SHARED_USER},
                bearer(a.key()),
                "user",
                (404, "conversation_not_found"),
            ),
            "A's full key in x-api-key + user": (
                {"user": SHARED_USER},
                {"x-api-key": a.key()},
                "user",
                (404, "conversation_not_found"),
            ),
            "A's chat key + session_id": (
                {"session_id": SHARED_SESSION},
                bearer(a.key("chat")),
                "session",
                (404, "conversation_not_found"),
            ),
            "A's bound key + user": (
                {"user": SHARED_USER},
                bearer(a.key("bound")),
                "user",
                (404, "conversation_not_found"),
            ),
            "A's envelope": (
                {"signed_context": a.envelope},
                {},
                "user",
                (404, "conversation_not_found"),
            ),
            "A's envelope + session_id": (
                {"signed_context": a.envelope, "session_id": SHARED_SESSION},
                {},
                "user",
                (404, "conversation_not_found"),
            ),
            f"an envelope k={B} signed with A's secret": (
                {"signed_context": forged},
                {},
                "",
                (403, "envelope_tampered"),
            ),
        }
        answers = []
        async with server.http() as http:
            for who, (query, headers, own, error) in credentials.items():
                if own:  # the control: the credentials read A's own conversation
                    mine = await answer(
                        http.get(
                            HISTORY.format(a.conversations[own]), params=query, headers=headers
                        )
                    )
                    assert mine[0] == 200, (who, mine)
                for name, cid in b.conversations.items():
                    got = await answer(http.get(HISTORY.format(cid), params=query, headers=headers))
                    none = await answer(
                        http.get(HISTORY.format(fresh()), params=query, headers=headers)
                    )
                    label = f"GET {HISTORY.format('{B ' + name + '}')} with {who}"
                    audit.expect(label, code(got), error)
                    audit.same(label, got, none)
                    answers.append(got)
        audit.no_leak("history reads", b.needles(), answers)
