"""Restarts and lost logs: seqs never repeat, clients are told to reload, no work is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from realtime.testing import FakeOpenAI, Text
from tests.support import TERMINAL, UNIT, llm_settings, make_settings, only, run_server, ws_client

pytestmark = pytest.mark.anyio


async def test_seq_never_repeats_across_a_restart(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        first = await client.ask("What is an epoch?")
    cid = first[0]["conversation_id"]
    old_seqs = {f["seq"] for f in first if "seq" in f}
    last = max(old_seqs)

    if settings.redis_url:  # the log is in Redis: a restarted node finds it whole
        async with run_server(settings) as server:
            async with ws_client(server) as client:
                await client.hello(resume={"conversation_id": cid, "after_seq": last, "epoch": 1})
                second = await client.ask("And what is a seq?", conversation_id=cid)
        seqs = [f["seq"] for f in second if "seq" in f]
        assert seqs[0] == last + 1 and seqs == sorted(set(seqs))
        return

    async with run_server(settings) as server:
        async with ws_client(server) as client:
            await client.hello(resume={"conversation_id": cid, "after_seq": last, "epoch": 1})
            reset = await client.recv()
            assert reset["type"] == "history.reset"
            assert reset["conversation_id"] == cid
            assert reset["epoch"] == 2
            assert reset["last_seq"] >= last
            second = await client.ask("And what is a seq?", conversation_id=cid)
        async with server.http() as http:
            history = (
                await http.get(
                    f"/realtime/v1/conversations/{cid}/messages", params={"session_id": "s-1"}
                )
            ).json()
    new_seqs = [f["seq"] for f in second if "seq" in f]
    assert min(new_seqs) > reset["last_seq"] >= max(old_seqs)
    assert new_seqs == sorted(new_seqs)
    assert history["epoch"] == 2
    assert history["last_seq"] == max(new_seqs)
    assert len(history["messages"]) == 4


async def test_resume_beyond_the_log_gets_history_reset(tmp_path: Path, database_url: str) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, replay_events=8)
    ) as server:
        async with ws_client(server) as client:
            await client.hello()
            frames = await client.ask("How do I resume after a disconnect?")
        cid = frames[0]["conversation_id"]
        last = frames[-1]["seq"]
        assert last > 8
        async with ws_client(server) as client:
            await client.hello(resume={"conversation_id": cid, "after_seq": 1, "epoch": 1})
            reset = await client.recv()
            # From the log's tail, a resume still works.
            await client.send(type="subscribe", id="s", conversation_id=cid, after_seq=last - 3)
            tail = await client.recv_until(*TERMINAL)
    assert reset == {"type": "history.reset", "conversation_id": cid, "epoch": 1, "last_seq": last}
    assert tail[0] == {"type": "ack", "id": "s", "conversation_id": cid}
    seqs = [f["seq"] for f in tail[1:]]  # tokens may arrive merged: seqs increase, not +1
    assert seqs == sorted(set(seqs)) and seqs[0] >= last - 2 and seqs[-1] == last


async def test_interrupted_run_fails_and_queued_run_survives_a_restart(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    settings = llm_settings(
        tmp_path,
        fake_llm,
        database_url=database_url,
        drain_timeout=0.3,
    )
    slow = " ".join(f"w{i}" for i in range(200))
    fake_llm.add(lambda b: b["messages"][-1]["content"] == "first", [Text(slow, delay=0.05)])
    fake_llm.add(lambda b: b["messages"][-1]["content"] == "second", [Text("second answer")])
    async with run_server(settings) as server:
        async with ws_client(server) as client:
            await client.hello()
            await client.send(type="message.send", id="1", content="first")
            cid = (await client.recv())["conversation_id"]
            await client.recv_until("run.token")
            await client.send(type="message.send", id="2", content="second", conversation_id=cid)
            await client.recv_until("ack")
            stopping = asyncio.create_task(server.stop())
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await client.recv()
            await stopping
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

    async with run_server(settings) as server:
        async with server.http() as http:
            url = f"/realtime/v1/conversations/{cid}/messages"
            for _ in range(100):
                history = (await http.get(url, params={"session_id": "s-1"})).json()
                if len(history["messages"]) == 4:
                    break
                await asyncio.sleep(0.05 * UNIT)
    roles = [(m["role"], m.get("status")) for m in history["messages"]]
    assert roles == [
        ("user", None),
        ("user", None),
        ("assistant", "failed"),
        ("assistant", "completed"),
    ], roles
    interrupted, answered = history["messages"][2], history["messages"][3]
    assert slow.startswith(interrupted["content"]) and interrupted["content"]
    assert answered["content"] == "second answer"
    async with server_db(settings) as rows:
        assert rows == [("failed", "interrupted"), ("completed", None)]


class server_db:  # noqa: N801 - reads the runs table of a stopped server's database
    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        from realtime.store import Store

        self.store = Store(settings.database_url)

    async def __aenter__(self) -> list[tuple[str, str | None]]:
        async with self.store.read() as conn:
            result = await conn.exec_driver_sql(
                "SELECT status, error_code FROM runs ORDER BY created_at"
            )
            return [tuple(row) for row in result]  # type: ignore[misc]

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()


async def test_run_events_reach_every_subscriber_once(tmp_path: Path, database_url: str) -> None:
    async with run_server(make_settings(tmp_path, database_url=database_url)) as server:
        async with ws_client(server) as a, ws_client(server) as b:
            await a.hello(session_id="same")
            await b.hello(session_id="same")
            await a.send(type="message.send", id="x", content="What is an epoch?")
            ack = await a.recv()
            await b.send(
                type="subscribe", id="s", conversation_id=ack["conversation_id"], after_seq=0
            )
            frames_a = [ack] + await a.recv_until(*TERMINAL)
            frames_b = (await b.recv_until(*TERMINAL))[1:]
    seqs_a = [f["seq"] for f in frames_a if "seq" in f]
    seqs_b = [f["seq"] for f in frames_b if "seq" in f]
    assert seqs_b[0] == 1 and seqs_b == sorted(set(seqs_b))
    assert (
        only(frames_a, "run.completed")[0]["message"]
        == only(frames_b, "run.completed")[0]["message"]
    )
    assert max(seqs_a) == max(seqs_b)
