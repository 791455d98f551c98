"""A state machine over the real engine (SQLite store, memory broker, offline responder):
random requests, claims, take-overs, messages, transfers, releases, closes and agent
disconnects. Invariants: at most one owner, the store agrees with the model, no message is
lost, and the bot never answers a message sent while a person owned the conversation."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from realtime.admin import Admin
from realtime.bootstrap import bootstrap
from realtime.broker.memory import MemoryBroker
from realtime.engine import Engine
from realtime.errors import RealtimeError
from realtime.events import Frame
from realtime.store import HumanAgent, Store
from tests.support import make_settings

AGENTS = ("ann", "ben")
_TEMPLATE: Path | None = None


def template() -> Path:
    """A bootstrapped database with handoff enabled and two agents, made once."""
    global _TEMPLATE
    if _TEMPLATE is None:
        root = Path(tempfile.mkdtemp(prefix="handoff-template-"))
        settings_ = make_settings(root, demo_docs=str(root / "no-docs"))

        async def build() -> None:
            store = Store(settings_.database_url)
            await bootstrap(store, settings_)
            admin = Admin(store)
            await admin.update_bot(
                "default", "demo", {"handoff_enabled": True, "handoff_trigger": "button"}
            )
            for name in AGENTS:
                await admin.create_agent(
                    "default",
                    {"name": name, "email": f"{name}@x.io", "password": "password1", "capacity": 2},
                )
            await store.close()

        asyncio.run(build())
        _TEMPLATE = root / "realtime.db"
    return _TEMPLATE


class HandoffMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="handoff-"))
        shutil.copy(template(), self.root / "realtime.db")
        self.settings = replace(
            make_settings(self.root, demo_docs=str(self.root / "no-docs")), presence_grace=0.0
        )
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(self.settings, Store(self.settings.database_url), MemoryBroker(), None)
        self.run(self.engine.start())
        self.session = self.run(self.engine.open_session("demo", session_id="visitor"))
        self.agents: dict[str, HumanAgent] = {}
        for name in AGENTS:
            found = self.run(self.engine.store.handoff.find_agent("default", f"{name}@x.io"))
            assert found is not None
            self.agents[name] = found[0]
        accepted = self.run(self.engine.send_message(self.session, "What is an epoch?"))
        self.cid = accepted.conversation_id
        self.status, self.owner = "bot", None  # the model
        self.connected: Counter[str] = Counter()  # console connections per agent
        self.sent: list[tuple[str, str]] = [(accepted.message_id, "bot")]  # (id, status when sent)
        self.frames: list[dict[str, Any]] = []
        self.sub = self.run(self.engine.subscribe(self.cid, self._seen, after_seq=0))

    def _seen(self, frame: Frame) -> None:
        self.frames.append(orjson.loads(frame.text))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def inside(self, fn: Any, *args: Any) -> None:
        """Call ``fn`` with this machine's loop running (presence schedules timers)."""

        async def call() -> None:
            fn(*args)

        self.run(call())

    def settle(self) -> None:
        self.run(asyncio.sleep(0.01))  # the end of a zero grace period fires
        self.run(self.engine.handoffs.presence.idle())

    def attempt(self, coro: Any) -> bool:
        try:
            self.run(coro)
            return True
        except RealtimeError:
            return False

    # -- the visitor -------------------------------------------------------------------------

    @rule(text=st.sampled_from(["What is an epoch?", "hello", "thanks"]))
    def visitor_sends(self, text: str) -> None:
        try:
            accepted = self.run(
                self.engine.send_message(self.session, text, conversation_id=self.cid)
            )
        except RealtimeError as exc:
            assert exc.code == "queue_full" and self.status in ("bot", "closed")
            return  # five messages wait for the bot already; nothing was stored
        self.sent.append((accepted.message_id, self.status))
        if self.status == "closed":
            self.status = "bot"

    @rule()
    def visitor_asks_for_a_person(self) -> None:
        ok = self.attempt(self.engine.request_handoff(self.session, self.cid))
        assert ok
        if self.status in ("bot", "closed"):
            self.status, self.owner = "pending_human", None

    @rule()
    def visitor_withdraws(self) -> None:
        ok = self.attempt(self.engine.cancel_handoff(self.session, self.cid))
        assert ok == (self.status == "pending_human")
        if ok:
            self.status = "bot"

    # -- the agents --------------------------------------------------------------------------

    @rule(name=st.sampled_from(AGENTS), take_over=st.booleans())
    def agent_claims(self, name: str, take_over: bool) -> None:
        agent = self.agents[name]
        ok = self.attempt(self.engine.handoffs.claim(agent, self.cid, take_over=take_over))
        allowed = ("pending_human", "bot") if take_over else ("pending_human",)
        assert ok == (self.status in allowed), (self.status, take_over)
        if ok:
            self.status, self.owner = "with_human", name

    @rule(name=st.sampled_from(AGENTS))
    def agent_sends(self, name: str) -> None:
        message = None
        try:
            message = self.run(
                self.engine.handoffs.send(self.agents[name], self.cid, f"from {name}", 8000)
            )
        except RealtimeError:
            pass
        assert (message is not None) == (self.status == "with_human" and self.owner == name)
        if message is not None:
            self.sent.append((message.id, self.status))

    @rule(name=st.sampled_from(AGENTS), to=st.sampled_from((*AGENTS, None)))
    def agent_transfers(self, name: str, to: str | None) -> None:
        target = self.agents[to].id if to else None
        ok = self.attempt(self.engine.handoffs.transfer(self.agents[name], self.cid, target))
        mine = self.status == "with_human" and self.owner == name
        assert ok == (mine and to != name), (self.status, self.owner, name, to)
        if ok:
            self.status, self.owner = ("with_human", to) if to else ("pending_human", None)

    @rule(name=st.sampled_from(AGENTS), close=st.booleans())
    def agent_ends(self, name: str, close: bool) -> None:
        handoffs = self.engine.handoffs
        action = handoffs.close if close else handoffs.release
        ok = self.attempt(action(self.agents[name], self.cid))
        assert ok == (self.status == "with_human" and self.owner == name)
        if ok:
            self.status, self.owner = ("closed" if close else "bot"), None

    @rule(name=st.sampled_from(AGENTS))
    def agent_connects(self, name: str) -> None:
        self.inside(self.engine.handoffs.presence.connect, "default", self.agents[name].id)
        self.connected[name] += 1

    @precondition(lambda self: bool(+self.connected))
    @rule(data=st.data())
    def agent_disconnects(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(+self.connected)))
        self.connected[name] -= 1
        self.inside(self.engine.handoffs.presence.disconnect, self.agents[name].id)
        self.settle()  # past the (zero) grace period: its conversations go back to the queue
        gone = self.connected[name] == 0
        if gone and self.status == "with_human" and self.owner == name:
            self.status, self.owner = "pending_human", None

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def one_owner_and_the_store_agrees(self) -> None:
        conversation = self.run(self.engine.store.get_conversation(self.cid))
        assert conversation.status == self.status, (conversation.status, self.status)
        expected = self.agents[self.owner].id if self.owner else None
        assert conversation.agent_id == expected
        assert (conversation.agent_id is None) == (conversation.status != "with_human")

    def teardown(self) -> None:
        try:
            self.settle()
            self.run(self.engine.runs.drain(5))
            stored = self.run(self.engine.store.list_messages(self.cid))
            ids = [m.id for m in stored]
            assert len(ids) == len(set(ids))
            for message_id, _ in self.sent:
                assert message_id in ids, "a message was lost"
            created = [f["message"]["id"] for f in self.frames if f["type"] == "message.created"]
            assert len(created) == len(set(created))
            assert {m for m, _ in self.sent} <= set(created)
            answered = {f["message_id"] for f in self.frames if f["type"] == "run.started"}
            for message_id, status in self.sent:
                if status in ("pending_human", "with_human"):
                    assert message_id not in answered, "the bot answered a person's visitor"
        finally:
            self.sub.close()
            self.run(self.engine.stop())
            self.run(self.engine.store.close())
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:  # connections of cancelled runs that the pool still closes
                task.cancel()
            if pending:
                self.run(asyncio.wait(pending, timeout=5))
            self.loop.close()
            shutil.rmtree(self.root, ignore_errors=True)


HandoffMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
TestHandoffLifecycle = HandoffMachine.TestCase
