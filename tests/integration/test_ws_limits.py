"""Open WebSockets per client address, on a node."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support import make_settings, run_server, ws_client

pytestmark = pytest.mark.anyio


async def test_connections_over_the_per_address_limit_are_refused_with_1013(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, connections_per_ip=3)
    async with run_server(settings) as server, contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws_client(server)) for _ in range(2)]
        clients.append(await stack.enter_async_context(ws_client(server, path="/ws/console")))
        for client in clients[:2]:
            assert (await client.hello())["type"] == "welcome"
        async with ws_client(server) as extra:
            refused = await extra.recv()
            with pytest.raises(ConnectionClosed) as closed:
                await extra.recv()
        await clients[0].close()
        async with ws_client(server) as later:  # a place is free again
            assert (await later.hello())["type"] == "welcome"
        # clients[1], clients[2] (and `later`, if its close is not through yet)
        assert server.engine.connections.count("127.0.0.1") in (2, 3)
    assert refused["type"] == "error" and refused["code"] == "too_many_connections"
    assert refused["retry_after"] == 5
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert server.engine.connections.count("127.0.0.1") == 0  # every close released its place
