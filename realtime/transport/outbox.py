"""A connection's bounded send queue (sans I/O).

Frames are put from anywhere (the broker's fan-out is synchronous) and taken by the
connection's one writer task. The queue is bounded in characters: when a client reads
slower than its conversations produce, the writer finds several frames queued and
consecutive ``run.token`` frames of one run are merged into one (same shape, the
concatenated ``delta``, the last ``seq``). If the queue still grows past its bound, the
outbox is marked ``overflowed``: the connection must be closed with ``slow_consumer``
(4008) and the client resumes from the last seq it processed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple

import orjson

from realtime.events import RUN_TOKEN


class Outbox:
    __slots__ = ("max_chars", "_items", "_live", "_ready", "overflowed", "closed")

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._items: deque[_Item] = deque()
        self._live = 0  # chars of queued frames that count against the bound
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Characters queued that count against the bound (replayed frames do not)."""
        return self._live

    def put(self, kind: str, text: str, *, replay: bool = False) -> bool:
        """Queue a frame; False when the outbox is closed or has just overflowed.

        Replayed frames (a resume's backlog, already held by the replay log) do not count
        against the bound, so a resume never overflows a connection by itself. The bound is
        in characters, which is bytes for the ASCII that most frames are.
        """
        if self.closed or self.overflowed:
            return False
        self._items.append(_Item(kind, text, replay))
        if not replay:
            self._live += len(text)
            if self._live > self.max_chars:
                self._compact()
                if self._live > self.max_chars:
                    self.overflowed = True
                    self._ready.set()
                    return False
        self._ready.set()
        return True

    async def wait(self) -> None:
        """Until something is queued (or the outbox overflowed or closed)."""
        await self._ready.wait()

    def take(self) -> list[str]:
        """Everything queued, tokens coalesced, oldest first."""
        self._ready.clear()
        if len(self._items) > 1:
            self._compact()
        texts = [item.text for item in self._items]
        self._items.clear()
        self._live = 0
        return texts

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._live = 0
        self._ready.set()

    def _compact(self) -> None:
        """Merge each unbroken run of token frames of one run into one frame.

        A merged frame counts against the bound unless every frame in it was replayed.
        """
        merged: deque[_Item] = deque()
        pending: dict[str, object] | None = None  # the token frame being extended
        pending_replay = True
        for item in self._items:
            if item.kind == RUN_TOKEN:
                token = orjson.loads(item.text)
                if (
                    pending is not None
                    and pending["run_id"] == token["run_id"]
                    and pending["conversation_id"] == token["conversation_id"]
                ):
                    pending["delta"] = str(pending["delta"]) + token["delta"]
                    pending["seq"] = token["seq"]
                    pending["ts"] = token["ts"]
                    pending_replay = pending_replay and item.replay
                    continue
                if pending is not None:
                    merged.append(_token_item(pending, pending_replay))
                pending, pending_replay = token, item.replay
                continue
            if pending is not None:
                merged.append(_token_item(pending, pending_replay))
                pending = None
            merged.append(item)
        if pending is not None:
            merged.append(_token_item(pending, pending_replay))
        self._items = merged
        self._live = sum(len(item.text) for item in merged if not item.replay)


class _Item(NamedTuple):
    kind: str
    text: str
    replay: bool


def _token_item(token: dict[str, object], replay: bool) -> _Item:
    return _Item(RUN_TOKEN, orjson.dumps(token).decode(), replay)
