"""Background work on a timer: the sweepers (idle logs, expired confirmations, unclaimed
handoff requests), and stopping a task cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("realtime.periodic")


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Periodic:
    """Calls ``action`` every ``interval`` seconds until stopped. A failing call is logged and
    tried again on the next tick: one bad sweep never stops the sweeper."""

    def __init__(self, name: str, interval: float, action: Callable[[], Awaitable[object]]):
        self.name = name
        self.interval = interval
        self._action = action
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._action()
            except Exception:
                log.exception("%s failed; trying again in %.1f s", self.name, self.interval)
