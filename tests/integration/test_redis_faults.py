"""A server on a Redis of its own that goes away: restarted empty (``kill -9`` of a private
``redis-server``, started again on the same port) or cut off with its data kept (a TCP
proxy that resets every connection and refuses new ones).

Visitors stay connected through it; ``/ready`` says ``degraded`` while Redis is away; once
it is back each visitor gets the events it missed, or exactly one ``history.reset`` (the
stream was lost), never a gap nor a duplicate; runs outlive a blip shorter than
``REALTIME_REDIS_OUTAGE_GRACE`` and fail cleanly, their text stored, after a longer one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtime.config import Settings
from realtime.testing import FakeOpenAI, Text
from tests.support import (
    TERMINAL,
    UNIT,
    Client,
    RedisServer,
    RunningServer,
    TcpProxy,
    llm_settings,
    make_settings,
    run_server,
    text_of,
    ws_client,
)

pytestmark = pytest.mark.anyio


def on(settings: Settings, url: str, grace: float = 10.0) -> Settings:
    return replace(settings, redis_url=url, redis_outage_grace=grace)


async def ready_when(server: RunningServer, broker: str, wait: float = 10.0) -> httpx.Response:
    """``GET /ready`` once its broker check says ``broker``."""
    deadline = asyncio.get_running_loop().time() + wait * UNIT
    async with server.http() as http:
        while True:
            response = await http.get("/ready")
            if response.json()["checks"]["broker"] == broker:
                return response
            assert asyncio.get_running_loop().time() < deadline, response.json()
            await asyncio.sleep(0.05)


async def history(server: RunningServer, conversation_id: str, session: str) -> dict[str, Any]:
    async with server.http() as http:
        response = await http.get(
            f"/realtime/v1/conversations/{conversation_id}/messages",
            params={"session_id": session},
        )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@dataclass
class Visitor:
    """What a client following the protocol makes of a conversation's frames: on
    ``history.reset`` it reloads the history and applies only later seqs."""

    server: RunningServer
    client: Client
    session: str
    epoch: int = 0
    last_seq: int = 0
    text: str = ""  # of the run in progress
    resets: list[dict[str, Any]] = field(default_factory=list)
    ended: dict[str, Any] | None = None  # the run's answer, when a reload found it stored
    seqs: dict[int, list[int]] = field(default_factory=dict)  # per epoch, as applied

    async def step(self, conversation_id: str, wait: float = 20.0) -> dict[str, Any]:
        """Receive one frame and apply it; returns it."""
        frame = await self.client.recv(wait)
        if frame["type"] == "history.reset":
            self.resets.append(frame)
            loaded = await history(self.server, conversation_id, self.session)
            self.epoch, self.last_seq = loaded["epoch"], loaded["last_seq"]
            run = loaded["active_run"]
            answers = [m for m in loaded["messages"] if m["role"] == "assistant"]
            if run is not None and not any(m.get("run_id") == run["run_id"] for m in answers):
                self.text = run["content"]
            else:  # the run ended meanwhile: its answer is stored
                self.ended = answers[-1]
                self.text = self.ended["content"]
            return frame
        seq = frame.get("seq", 0)
        if not seq or seq > self.last_seq:  # else the history reloaded holds it already
            if seq:
                self.seqs.setdefault(self.epoch, []).append(seq)
                self.last_seq = seq
            if frame["type"] == "run.token":
                self.text += frame["delta"]
        return frame

    async def follow_run(self, conversation_id: str) -> dict[str, Any]:
        """Apply frames until the run ends (its terminal frame, or a reload that finds its
        answer stored); returns the answer."""
        while True:
            frame = await self.step(conversation_id)
            if frame["type"] in TERMINAL:
                return frame["message"]  # type: ignore[no-any-return]
            if frame["type"] == "history.reset" and self.ended is not None:
                return self.ended

    def seqs_increase(self) -> bool:
        return all(s == sorted(set(s)) for s in self.seqs.values())


async def test_a_redis_restart_mid_conversation(
    tmp_path: Path, redis_server: RedisServer, database_url: str
) -> None:
    settings = on(make_settings(tmp_path, database_url=database_url), redis_server.url)
    async with run_server(settings) as server:
        async with ws_client(server) as visitor:
            await visitor.hello(session_id="v")
            first = await visitor.ask("What is an epoch?", id="q1")
            ack = first[0]
            cid, epoch = ack["conversation_id"], ack["epoch"]
            last = max(f["seq"] for f in first if "seq" in f)
            assert first[-1]["type"] == "run.completed"

            await redis_server.kill()
            down = await ready_when(server, "degraded")
            assert down.status_code == 200
            assert down.json() == {
                "status": "degraded",
                "checks": {"store": "ok", "broker": "degraded"},
            }
            async with server.http() as http:
                health = (await http.get("/health")).json()
            assert health["status"] == "ok" and health["broker"] == "degraded"
            await visitor.send(type="ping", id="p")  # the socket is still served
            assert (await visitor.recv())["type"] == "pong"

            await redis_server.start()  # empty: the conversation's stream is gone
            up = await ready_when(server, "ok")
            assert up.status_code == 200 and up.json()["status"] == "ready"
            reset = await visitor.recv(wait=10)
            assert reset["type"] == "history.reset", reset
            assert reset["conversation_id"] == cid
            assert reset["epoch"] == epoch + 1 and reset["last_seq"] > last
            reloaded = await history(server, cid, "v")
            assert reloaded["epoch"] == reset["epoch"]
            assert reloaded["last_seq"] >= reset["last_seq"]
            assert [m["content"] for m in reloaded["messages"]] == [
                "What is an epoch?",
                first[-1]["message"]["content"],
            ]

            await visitor.send(
                type="message.send", id="q2", content="And a seq?", conversation_id=cid
            )
            # (generous: a node whose first lease attempt fails leaves the run to its sweeper)
            second = await visitor.recv_until(*TERMINAL, wait=30)
            assert second[0]["type"] == "ack" and second[-1]["type"] == "run.completed"
            assert second[-1]["message"]["content"]
            assert not [f for f in second if f["type"] == "history.reset"]
            seqs = [f["seq"] for f in second if "seq" in f]
            assert seqs == sorted(set(seqs)) and seqs[0] > reloaded["last_seq"]

        # a visitor that was away resumes with its old cursor: told to reload, once
        async with ws_client(server) as back:
            await back.hello(
                session_id="v", resume={"conversation_id": cid, "after_seq": last, "epoch": epoch}
            )
            again = await back.recv()
            assert again["type"] == "history.reset" and again["epoch"] == epoch + 1
            with pytest.raises(TimeoutError):
                await back.recv(wait=0.3)
        final = await history(server, cid, "v")
    assert [m["role"] for m in final["messages"]] == ["user", "assistant", "user", "assistant"]
    assert final["messages"][3]["content"] == second[-1]["message"]["content"]


@dataclass
class Outage:
    """Takes the server's Redis away and brings it back, one of two ways."""

    url: str
    down: Callable[[], Awaitable[None]]
    up: Callable[[], Awaitable[None]]
    loses_data: bool


@pytest.fixture(params=["restart", "cut"])
async def outage(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Outage]:
    if request.param == "restart":
        yield Outage(redis_server.url, redis_server.kill, redis_server.start, True)
        return
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    try:
        yield Outage(proxy.url, proxy.cut, proxy.mend, False)
    finally:
        await proxy.close()


async def test_a_short_blip_does_not_fail_a_streamed_answer(
    tmp_path: Path, outage: Outage, fake_llm: FakeOpenAI, database_url: str
) -> None:
    # Long enough that the answer still streams when Redis is back (the model's tokens
    # queue up meanwhile), so the visitor's reload finds the run going on.
    words = " ".join(f"w{i}" for i in range(120))
    fake_llm.add(None, [Text(words, delay=0.02)])
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    async with run_server(on(settings, outage.url, grace=10.0)) as server:
        async with ws_client(server) as client:
            await client.hello(session_id="v")
            await client.send(type="message.send", id="m", content="stream please")
            ack = await client.recv()
            cid = ack["conversation_id"]
            visitor = Visitor(server, client, "v", epoch=ack["epoch"])
            while visitor.text.count("w") < 5:  # a few tokens in
                await visitor.step(cid)
            await outage.down()
            await ready_when(server, "degraded")
            await asyncio.sleep(1.0)
            await outage.up()
            answer = await visitor.follow_run(cid)
        final = await history(server, cid, "v")
    assert answer["status"] == "completed", answer
    assert answer["content"] == words
    assert visitor.text == words  # nothing missed, nothing twice
    assert visitor.seqs_increase()
    if outage.loses_data:
        assert len(visitor.resets) == 1 and visitor.resets[0]["epoch"] == ack["epoch"] + 1
    else:
        assert visitor.resets == [] and list(visitor.seqs) == [ack["epoch"]]
    assert [m["content"] for m in final["messages"]] == ["stream please", words]


async def test_a_long_outage_fails_the_run_cleanly(
    tmp_path: Path, redis_server: RedisServer, fake_llm: FakeOpenAI, database_url: str
) -> None:
    """Redis is cut off (its data kept) for longer than the grace: the run fails with its
    text so far stored; when Redis is back the visitor gets one history.reset (for the
    events that could not be published) and the history shows the failed answer; the next
    question is answered in full."""
    words = " ".join(f"w{i}" for i in range(200))
    fake_llm.add(None, [Text(words, delay=0.02)])
    fake_llm.add(None, [Text("all good again")])
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    settings = llm_settings(tmp_path, fake_llm, database_url=database_url)
    try:
        async with run_server(on(settings, proxy.url, grace=0.5)) as server:
            async with ws_client(server) as client:
                await client.hello(session_id="v")
                await client.send(type="message.send", id="m", content="stream please")
                ack = await client.recv()
                cid = ack["conversation_id"]
                seen = [await client.recv() for _ in range(6)]
                await proxy.cut()
                await asyncio.sleep(2.0)
                await proxy.mend()
                await ready_when(server, "ok")
                rest = await client.recv_until("history.reset", wait=10)
                assert not [f for f in rest if f["type"] in TERMINAL]
                reloaded = await history(server, cid, "v")
                answer = reloaded["messages"][-1]
                assert answer["role"] == "assistant" and answer["status"] == "failed"
                said = text_of(seen + rest)
                assert said and words.startswith(answer["content"])
                assert answer["content"].startswith(said)
                assert reloaded["active_run"] is None
                await client.send(
                    type="message.send", id="m2", content="again?", conversation_id=cid
                )
                nxt = await client.recv_until(*TERMINAL, wait=30)
                assert nxt[-1]["type"] == "run.completed"
                assert nxt[-1]["message"]["content"] == "all good again"
                assert not [f for f in nxt if f["type"] == "history.reset"]
    finally:
        await proxy.close()
