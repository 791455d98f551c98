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

import orjson

from realtime.events import RUN_TOKEN


class Outbox:
    __slots__ = ("max_chars", "_items", "_size", "_replayed", "_ready", "overflowed", "closed")

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._items: deque[tuple[str, str]] = deque()  # (type, text)
        self._size = 0
        self._replayed = 0  # chars of replayed frames: bounded by the log, not by us
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._size

    def put(self, kind: str, text: str, *, replay: bool = False) -> bool:
        """Queue a frame; False when the outbox is closed or has just overflowed.

        Replayed frames (a resume's backlog, already held by the replay log) do not count
        against the bound, so a resume never overflows a connection by itself.
        """
        if self.closed or self.overflowed:
            return False
        self._items.append((kind, text))
        self._size += len(text)
        if replay:
            self._replayed += len(text)
        elif self._size - self._replayed > self.max_chars:
            self._compact()
            self._replayed = min(self._replayed, self._size)
            if self._size - self._replayed > self.max_chars:
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
        texts = [text for _, text in self._items]
        self._items.clear()
        self._size = self._replayed = 0
        return texts

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._size = self._replayed = 0
        self._ready.set()

    def _compact(self) -> None:
        merged: deque[tuple[str, str]] = deque()
        pending: dict[str, object] | None = None  # the token frame being extended
        size = 0
        for kind, text in self._items:
            if kind == RUN_TOKEN:
                token = orjson.loads(text)
                if (
                    pending is not None
                    and pending["run_id"] == token["run_id"]
                    and pending["conversation_id"] == token["conversation_id"]
                ):
                    pending["delta"] = str(pending["delta"]) + token["delta"]
                    pending["seq"] = token["seq"]
                    pending["ts"] = token["ts"]
                    continue
                if pending is not None:
                    size += _append_token(merged, pending)
                pending = token
                continue
            if pending is not None:
                size += _append_token(merged, pending)
                pending = None
            merged.append((kind, text))
            size += len(text)
        if pending is not None:
            size += _append_token(merged, pending)
        self._items = merged
        self._size = size


def _append_token(items: deque[tuple[str, str]], token: dict[str, object]) -> int:
    text = orjson.dumps(token).decode()
    items.append((RUN_TOKEN, text))
    return len(text)
