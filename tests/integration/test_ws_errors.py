"""Bad input, failing models, slow clients: typed errors, usable connections, nothing stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from realtime.testing import Disconnect, Error, FakeOpenAI, Stall, Text
from tests.support import (
    ADMIN_KEY,
    UNIT,
    RunningServer,
    llm_settings,
    make_settings,
    run_server,
    text_of,
    ws_client,
)

pytestmark = pytest.mark.anyio


async def count_rows(server: RunningServer, table: str) -> int:
    async with server.engine.store.read() as conn:
        result = await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")
        return int(result.scalar_one())


BAD_BEFORE_HELLO = [
    ("not json", "invalid_json", None),
    ('["a list"]', "invalid_json", None),
    ('{"id": "1"}', "missing_field", "1"),
    ('{"type": "nope", "id": 7}', "unknown_type", 7),
    ('{"type": 12, "id": "t"}', "unknown_type", "t"),
    ('{"type": "ping", "id": true}', "invalid_field", None),
    ('{"type": "message.send", "id": "early", "content": "hi"}', "hello_required", "early"),
    ('{"type": "hello", "id": "h"}', "missing_field", "h"),
    ('{"type": "hello", "id": "h", "bot": "no-such-bot", "session_id": "s"}', "bot_not_found", "h"),
    ('{"type": "hello", "id": "h", "bot": "demo"}', "missing_field", "h"),
    ('{"type": "hello", "id": "h", "bot": "demo", "session_id": 5}', "invalid_field", "h"),
    (
        '{"type": "hello", "id": "h", "bot": "demo", "api_key": "rtk_nope", "user": "u"}',
        "unauthorized",
        "h",
    ),
]


async def test_bad_frames_before_hello(server: RunningServer) -> None:
    async with ws_client(server) as client:
        for raw, code, echo in BAD_BEFORE_HELLO:
            await client.send_raw(raw)
            frame = await client.recv()
            assert frame["type"] == "error", raw
            assert frame["code"] == code, (raw, frame)
            assert frame["id"] == echo, (raw, frame)
            assert isinstance(frame["message"], str) and frame["message"]
        await client.send_raw(b'{"type": "ping"}')
        assert (await client.recv())["code"] == "invalid_json"
        await client.hello()  # still usable


async def test_bad_frames_after_hello_store_nothing(server: RunningServer) -> None:
    limit = server.settings.max_message_chars
    async with ws_client(server) as client:
        await client.hello()
        cases = [
            ({"type": "message.send", "id": "a"}, "missing_field"),
            ({"type": "message.send", "id": "b", "content": 5}, "invalid_field"),
            ({"type": "message.send", "id": "c", "content": "   "}, "invalid_field"),
            ({"type": "message.send", "id": "d", "content": "x" * (limit + 1)}, "content_too_long"),
            (
                {
                    "type": "message.send",
                    "id": "e",
                    "content": "hi",
                    "conversation_id": "8d1e3f4a-0000-4000-8000-000000000000",
                },
                "conversation_not_found",
            ),
            (
                {"type": "message.send", "id": "f", "content": "hi", "conversation_id": "x" * 65},
                "invalid_field",
            ),
            (
                {"type": "hello", "id": "g", "bot": "demo", "session_id": "s"},
                "already_authenticated",
            ),
            ({"type": "run.cancel", "id": "h"}, "missing_field"),
            (
                {"type": "subscribe", "id": "i", "conversation_id": "c", "after_seq": -1},
                "invalid_field",
            ),
            ({"type": "typing", "id": "j", "conversation_id": "c", "on": "yes"}, "invalid_field"),
        ]
        for frame, code in cases:
            await client.send(**frame)
            reply = await client.recv()
            assert (reply["type"], reply["code"], reply["id"]) == ("error", code, frame["id"]), (
                reply
            )
        big = orjson.dumps({"type": "message.send", "id": "big", "content": "y" * 70_000}).decode()
        await client.send_raw(big)
        reply = await client.recv()
        assert (reply["code"], reply["id"]) == ("frame_too_large", None)
        await client.send(type="ping", id="still-here")
        assert await client.recv() == {"type": "pong", "id": "still-here"}
    assert await count_rows(server, "messages") == 0
    assert await count_rows(server, "conversations") == 0


async def test_frame_over_the_transport_limit_closes_with_1009(
    tmp_path: Path, database_url: str
) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, ws_max_size=100_000)
    ) as server:
        async with ws_client(server, max_size=None) as client:
            await client.hello()
            await client.send_raw("z" * 200_000)
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_hello_timeout_closes_with_4001(tmp_path: Path, database_url: str) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, hello_timeout=0.3)
    ) as server:
        async with ws_client(server) as client:
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv(wait=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_private_bot_needs_a_key(server: RunningServer) -> None:
    async with server.admin() as admin:
        created = await admin.post(
            "/admin/v1/tenants/default/bots", json={"bot_id": "secret", "privacy": "private"}
        )
        assert created.status_code == 201, created.text
        key = (
            await admin.post(
                "/admin/v1/tenants/default/keys", json={"name": "backend", "scope": "full"}
            )
        ).json()["key"]
    async with ws_client(server) as client:
        await client.send(type="hello", id="h", bot="secret", session_id="s")
        assert (await client.recv())["code"] == "forbidden"
        await client.send(type="hello", id="h2", bot="default/secret", api_key=key, user="u-1")
        welcome = await client.recv()
        assert welcome["type"] == "welcome" and welcome["session"] == {"kind": "user", "id": "u-1"}
        frames = await client.ask("anything")
        assert frames[-1]["type"] == "run.completed"
    assert ADMIN_KEY not in key


@pytest.mark.parametrize(
    ("steps", "code", "retryable"),
    [
        ([Error(429, "slow down", headers={"retry-after": "0"})], "rate_limited", True),
        ([Error(500, "boom")], "provider_error", True),
        ([Error(401, "bad key", type="invalid_request_error")], "provider_auth", False),
        ([Error(400, "bad request", type="invalid_request_error")], "provider_rejected", False),
        ([Text("partial answer", delay=0.01), Stall(30)], "timeout", True),
        ([Text("cut off here"), Disconnect()], "provider_unavailable", True),
    ],
)
async def test_model_failures_end_the_run_with_a_code(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI, steps: list, code: str, retryable: bool
) -> None:
    settings = llm_settings(
        tmp_path,
        fake_llm,
        database_url=database_url,
        llm_read_timeout=0.5,
    )
    fake_llm.add(None, steps)
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        frames = await client.ask("fail please")
        failed = frames[-1]
        assert failed["type"] == "run.failed", failed
        assert (failed["code"], failed["retryable"]) == (code, retryable)
        said = text_of(frames)
        if said:
            assert failed["partial"]["content"] == said
            assert failed["partial"]["status"] == "failed"
        else:
            assert "partial" not in failed
        # The conversation goes on after a failure.
        fake_llm.add(None, [Text("recovered")])
        again = await client.ask("again", conversation_id=frames[0]["conversation_id"])
        assert again[-1]["type"] == "run.completed"
        assert again[-1]["message"]["content"] == "recovered"


async def test_unreachable_model_is_provider_unavailable(tmp_path: Path, database_url: str) -> None:
    from tests.support import free_port

    settings = make_settings(
        tmp_path,
        database_url=database_url,
        provider="openai",
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
        openai_api_key="sk-test",
    )
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        frames = await client.ask("anyone there?")
    assert frames[-1]["type"] == "run.failed"
    assert frames[-1]["code"] == "provider_unavailable"


async def test_client_that_stops_reading_is_closed_4008_and_can_resume(
    tmp_path: Path, database_url: str, fake_llm: FakeOpenAI
) -> None:
    words = " ".join(f"token{i}" for i in range(60_000))
    fake_llm.add(None, [Text(words)])
    settings = llm_settings(
        tmp_path,
        fake_llm,
        database_url=database_url,
        send_queue_bytes=4096,
        replay_events=100_000,
    )
    async with run_server(settings) as server:
        async with ws_client(server, max_queue=1) as client:
            await client.hello()
            await client.send(type="message.send", id="m", content="flood me")
            ack = await client.recv()
            await asyncio.sleep(3 * UNIT)  # not reading: buffers fill, the outbox overflows
            seen = [ack]
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    seen.append(await client.recv())
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4008, "slow_consumer")
        assert server.engine.metrics.ws_closes.labels("slow_consumer")._value.get() == 1
        last = max(f["seq"] for f in seen if "seq" in f)
        async with ws_client(server) as client:
            await client.hello(
                resume={
                    "conversation_id": ack["conversation_id"],
                    "after_seq": last,
                    "epoch": ack["epoch"],
                }
            )
            rest = await client.recv_until("run.completed", wait=30)
    assert text_of(seen) + text_of(rest) == words


async def test_subscription_limit_refuses_before_storing(tmp_path: Path, database_url: str) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, max_subscriptions=2)
    ) as server:
        async with ws_client(server) as client:
            await client.hello()
            for n in range(2):
                frames = await client.ask(f"question {n}", id=f"q{n}")
                assert frames[-1]["type"] == "run.completed"
            await client.send(type="message.send", id="q2", content="one too many")
            error = await client.recv()
            await client.send(type="ping", id="p")
            assert await client.recv() == {"type": "pong", "id": "p"}
        assert (error["code"], error["id"]) == ("too_many_subscriptions", "q2")
        assert await count_rows(server, "conversations") == 2
        assert await count_rows(server, "messages") == 4


async def test_hello_deadline_is_not_reset_by_other_frames(
    tmp_path: Path, database_url: str
) -> None:
    async with run_server(
        make_settings(tmp_path, database_url=database_url, hello_timeout=0.5)
    ) as server:
        async with ws_client(server) as client:
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(20):
                    await client.send(type="ping")
                    assert (await client.recv())["type"] == "pong"
                    await asyncio.sleep(0.1)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_typing_reaches_other_listeners_without_seq(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.hello()
        frames = await client.ask("What is an epoch?")
        cid = frames[0]["conversation_id"]
        received = []
        sub = await server.engine.subscribe(cid, received.append)
        try:
            await client.send(type="typing", id="t", conversation_id=cid, on=True)
            assert await client.recv() == {"type": "ack", "id": "t"}
            await client.send(type="ping", id="p")  # the visitor does not get its own typing
            assert await client.recv() == {"type": "pong", "id": "p"}
        finally:
            sub.close()
    assert len(received) == 1
    typing = orjson.loads(received[0].text)
    assert received[0].seq == 0 and "seq" not in typing
    assert (typing["type"], typing["who"], typing["on"]) == ("typing", "visitor", True)


async def test_too_many_messages_are_rate_limited_and_not_stored(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, messages_per_minute=2)
    async with run_server(settings) as server, ws_client(server) as client:
        await client.hello()
        first = await client.ask("What is an epoch?", id="1")
        cid = first[0]["conversation_id"]
        await client.ask("And a seq?", id="2", conversation_id=cid)
        await client.send(type="message.send", id="3", content="one more", conversation_id=cid)
        limited = await client.recv()
        await client.send(type="message.send", id="1", content="What is an epoch?")
        retried = await client.recv()  # a retry of a stored message is not counted
        stored = await count_rows(server, "messages")
    assert (limited["type"], limited["code"], limited["id"]) == ("error", "rate_limited", "3")
    assert 0 < limited["retry_after"] <= 30
    assert retried["type"] == "ack" and retried["duplicate"] is True
    assert stored == 4  # two questions, two answers
