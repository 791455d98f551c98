"""Runs: at most one per conversation at a time, queued behind each other, each ending once.

Each conversation with work to do has a :class:`_Actor`: a queue of turns and one task that
runs them in order. A turn is recorded in the store as a ``queued`` run when the message is
accepted, so a restart finds it and runs it; a run that was ``running`` when the process
died ends as ``run.failed {code: interrupted}`` (:meth:`RunManager.recover`).

Whatever happens, a started run ends with exactly one of ``run.completed``, ``run.failed``,
``run.cancelled``, and whatever text it produced is stored as the assistant message. Only
``run.cancel`` stops a run; a client that goes away does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio

from realtime import events
from realtime.agent.loop import Agent, Decision, Pause, RunInput, RunState
from realtime.bots import with_defaults
from realtime.config import Settings
from realtime.data.source import DataSource, DataSources
from realtime.errors import Conflict, RunError, run_error
from realtime.metrics import Metrics
from realtime.store import Confirmation, Message, Store, iso, utcnow
from realtime.types import new_id

log = logging.getLogger("realtime.runs")

Publish = Callable[[events.Event], Awaitable[events.Frame]]
NEW_MESSAGE = "new_message"  # who rejected a pending write by writing a new message
CANCEL = "cancel"  # who rejected a pending write by cancelling its run


@dataclass(frozen=True, slots=True)
class Resolution:
    """What became of a paused run's pending write: ``approved`` or ``rejected`` resume the
    run; ``expired``, or a rejection ``by`` a new message, end it."""

    confirmation: Confirmation
    decision: str  # approved | rejected | expired
    params: dict[str, Any]
    by: str

    @property
    def resumes(self) -> bool:
        return self.decision in ("approved", "rejected") and self.by not in (NEW_MESSAGE, CANCEL)


@dataclass(frozen=True, slots=True)
class Turn:
    run_id: str
    conversation_id: str
    bot_uuid: str
    message: Message  # the user message the run answers
    resolution: Resolution | None = None  # set when the turn continues a paused run


@dataclass(slots=True)
class ActiveRun:
    turn: Turn
    state: RunState
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class _Actor:
    __slots__ = ("pending", "reserved", "current", "task")

    def __init__(self) -> None:
        self.pending: deque[Turn] = deque()
        self.reserved = 0  # slots promised to messages being stored right now
        self.current: ActiveRun | None = None
        self.task: asyncio.Task[None] | None = None


class RunManager:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        publish: Publish,
        agent: Agent,
        metrics: Metrics,
        node_id: str,
        data: DataSources,
    ) -> None:
        self._settings = settings
        self._data = data
        self._store = store
        self._publish = publish
        self._agent = agent
        self._metrics = metrics
        self._node_id = node_id
        self._actors: dict[str, _Actor] = {}
        self._accepting = True
        # Called when a completed run asked for a person (set by the engine).
        self.on_handoff: Callable[[str, str], Awaitable[None]] | None = None

    # -- queueing --------------------------------------------------------------------------

    def check_accepting(self) -> None:
        if not self._accepting:
            raise Conflict(
                "shutting_down", "the server is shutting down; reconnect shortly", retryable=True
            )

    def reserve(self, conversation_id: str) -> None:
        """Promise a place in the queue before storing a message; raises ``queue_full``."""
        self.check_accepting()
        actor = self._actors.get(conversation_id)
        if actor is None:
            actor = self._actors[conversation_id] = _Actor()
        waiting = len(actor.pending) + actor.reserved
        if actor.current is not None and waiting >= self._settings.queue_limit:
            raise Conflict(
                "queue_full",
                f"{waiting} messages already wait for an answer; wait for the current run",
                retryable=True,
            )
        actor.reserved += 1

    def release(self, conversation_id: str) -> None:
        actor = self._actors.get(conversation_id)
        if actor is not None:
            actor.reserved = max(0, actor.reserved - 1)
            self._forget_if_idle(conversation_id, actor)

    def submit(self, turn: Turn, *, reserved: bool = True) -> None:
        actor = self._actors.get(turn.conversation_id)
        if actor is None:
            actor = self._actors[turn.conversation_id] = _Actor()
        if reserved:
            actor.reserved = max(0, actor.reserved - 1)
        actor.pending.append(turn)
        if actor.task is None:
            actor.task = asyncio.create_task(
                self._drain(turn.conversation_id, actor), name=f"runs-{turn.conversation_id}"
            )

    def active(self, conversation_id: str) -> ActiveRun | None:
        actor = self._actors.get(conversation_id)
        return actor.current if actor is not None else None

    def cancel(self, conversation_id: str, run_id: str | None = None) -> str:
        """Stop the conversation's active run; returns its id. Raises ``no_active_run``."""
        current = self.active(conversation_id)
        if current is None or (run_id is not None and current.turn.run_id != run_id):
            raise Conflict("no_active_run", "no run of this conversation is in progress")
        current.scope.cancel()
        return current.turn.run_id

    def busy(self) -> int:
        return sum(1 for a in self._actors.values() if a.current is not None)

    async def _drain(self, conversation_id: str, actor: _Actor) -> None:
        try:
            while actor.pending:
                await self._execute(actor, actor.pending.popleft())
        finally:
            actor.task = None
            self._forget_if_idle(conversation_id, actor)

    def _forget_if_idle(self, conversation_id: str, actor: _Actor) -> None:
        if (
            actor.task is None
            and not actor.pending
            and not actor.reserved
            and actor.current is None
        ):
            if self._actors.get(conversation_id) is actor:
                del self._actors[conversation_id]

    # -- one run ---------------------------------------------------------------------------

    async def _execute(self, actor: _Actor, turn: Turn) -> None:
        cid, rid = turn.conversation_id, turn.run_id
        active = ActiveRun(turn, RunState(rid, cid))
        actor.current = active
        self._metrics.runs_active.inc()
        outcome, error, pause = "failed", None, None
        try:
            if turn.resolution is not None and not turn.resolution.resumes:
                await self._end_paused(active, turn.resolution)
                return
            conversation = await self._store.get_conversation(cid)
            bot_owns = conversation is not None and conversation.status == "bot"
            if turn.resolution is None and not bot_owns:
                # Handed to a person while this message waited: the bot stays silent.
                await self._finish(active, "cancelled", None)
                return
            active.state.silent = not bot_owns
            await self._store.start_run(rid, self._node_id)
            if turn.resolution is None:
                self._metrics.runs_started.inc()
                await self._publish(events.run_started(cid, rid, turn.message.id))
            with active.scope:
                with anyio.fail_after(self._settings.run_timeout):
                    pause = await self._run_agent(turn, active.state)
                outcome = "completed"
            if active.scope.cancelled_caught:
                outcome, pause = "cancelled", None
        except TimeoutError:
            error = run_error("timeout", "the run took longer than the server allows")
        except RunError as exc:
            error = exc
        except Exception:
            log.exception("run %s failed", rid)
            error = run_error("internal_error", "the server failed while answering")
        except BaseException:  # shutting down: record the interruption, then go
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._finish(
                    active, "failed", run_error("interrupted", "the server stopped mid-answer")
                )
            raise
        finally:
            actor.current = None
            self._metrics.runs_active.dec()
        try:
            if pause is not None:
                await self._pause(active, pause)
            else:
                await self._finish(active, outcome, error)
            if outcome == "completed" and active.state.handoff_reason and self.on_handoff:
                await self.on_handoff(cid, active.state.handoff_reason)
        except Exception:
            log.exception("could not record the end of run %s", rid)

    async def _run_agent(self, turn: Turn, state: RunState) -> Pause | None:
        bot = await self._store.get_bot_by_uuid(turn.bot_uuid)
        if bot is None:
            raise run_error("bot_unavailable", "this bot no longer exists")
        config = with_defaults(bot.config)
        history = await self._store.history_for(turn.message, self._settings.history_messages)
        has_knowledge = await self._store.knowledge.has_knowledge(bot.uuid)
        threshold = config.get("citation_threshold")
        inp = RunInput(
            bot_uuid=bot.uuid,
            config=config,
            model=config.get("model") or self._settings.model,
            question=turn.message.content,
            history=history,
            has_knowledge=has_knowledge,
            threshold=self._settings.citation_threshold if threshold is None else threshold,
            data=await self.data_source(config),
        )
        resolution = turn.resolution
        if resolution is None:
            return await self._agent.run(inp, state, self._publish_counted)
        decision = Decision(resolution.decision == "approved", resolution.params, resolution.by)
        return await self._agent.resume(
            inp, state, resolution.confirmation.continuation, decision, self._publish_counted
        )

    async def data_source(self, config: dict[str, Any]) -> DataSource | None:
        """The bot's database, introspected (cached); RunError when it cannot be opened."""
        if not config.get("data_source"):
            return None
        try:
            return await self._data.get(config["data_source"])
        except Exception as exc:
            log.warning("data source of a bot failed: %s", exc)
            raise run_error(
                "data_source_unavailable", "the bot's database cannot be opened"
            ) from exc

    async def _pause(self, active: ActiveRun, pause: Pause) -> None:
        """Store the pending write and its continuation; the run waits, no task does."""
        cid, rid = active.turn.conversation_id, active.turn.run_id
        now = utcnow()
        confirmation = Confirmation(
            id=new_id(),
            conversation_id=cid,
            run_id=rid,
            tool_call_id=pause.tool_call_id,
            tool=pause.tool,
            params=pause.params,
            step=pause.step,
            status="pending",
            continuation=pause.continuation,
            created_at=now,
            expires_at=now + timedelta(seconds=self._settings.confirmation_ttl),
        )
        await self._store.confirmations.pause(confirmation)
        await self._publish(
            events.confirmation_requested(
                cid,
                rid,
                tool_call_id=pause.tool_call_id,
                tool=pause.tool,
                params=pause.params,
                step=pause.step,
                expires_at=iso(confirmation.expires_at),
            )
        )
        await self._publish(events.run_status(cid, rid, "awaiting_confirmation"))

    async def _end_paused(self, active: ActiveRun, resolution: Resolution) -> None:
        """A pending write expired, or a new message rejected it: the run ends here."""
        state, confirmation = active.state, resolution.confirmation
        state.restore(confirmation.continuation["state"])
        bot = await self._store.get_bot_by_uuid(active.turn.bot_uuid)
        state.config = with_defaults(bot.config if bot else {})
        await self._publish(
            events.confirmation_resolved(
                active.turn.conversation_id,
                active.turn.run_id,
                confirmation.tool_call_id,
                resolution.decision,
                resolution.by,
            )
        )
        if resolution.decision == "expired":
            error = run_error("confirmation_expired", "nobody confirmed the action in time")
            await self._finish(active, "failed", error)
        else:
            await self._finish(active, "cancelled", None)

    async def _publish_counted(self, event: events.Event) -> events.Frame:
        if event.type == events.RUN_TOKEN:
            self._metrics.tokens.inc()
        return await self._publish(event)

    async def _finish(self, active: ActiveRun, outcome: str, error: RunError | None) -> None:
        turn, state = active.turn, active.state
        cid, rid = turn.conversation_id, turn.run_id
        text = state.text
        message = None
        if outcome == "completed" or text:
            message = Message(
                id=new_id(),
                conversation_id=cid,
                role="assistant",
                content=text,
                created_at=utcnow(),
                citations=state.citations(),
                steps=state.steps or None,
                usage=dict(state.usage),
                confidence=state.confidence,
                run_id=rid,
                status=outcome,
            )
        await self._store.finish_run(
            rid,
            status=outcome,
            message=message,
            usage=dict(state.usage),
            error_code=error.code if error else None,
            error_message=error.message if error else None,
        )
        wire = message.to_wire() if message is not None else None
        if outcome == "completed":
            assert wire is not None
            event = events.run_completed(
                cid, rid, wire, confidence=state.confidence, usage=dict(state.usage)
            )
        elif outcome == "cancelled":
            event = events.run_cancelled(cid, rid, wire)
        else:
            assert error is not None
            event = events.run_failed(
                cid,
                rid,
                code=error.code,
                message=error.message,
                retryable=error.retryable,
                partial=wire,
            )
        self._metrics.runs_finished.labels(outcome).inc()
        self._metrics.run_seconds.observe(time.monotonic() - state.started)
        if state.first_token_at is not None:
            self._metrics.first_token_seconds.observe(state.first_token_at - state.started)
        await self._publish(event)

    # -- lifecycle -------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """After a restart: fail runs that were running, requeue runs that never started, and
        go on with paused runs whose confirmation was resolved but not acted on."""
        failed = requeued = 0
        for confirmation in await self._store.confirmations.claimed_of_waiting_runs():
            run = await self._store.get_run(confirmation.run_id)
            message = await self._store.get_message(run.message_id) if run else None
            conversation = await self._store.get_conversation(confirmation.conversation_id)
            if message is None or conversation is None:
                continue
            resolution = Resolution(
                confirmation,
                confirmation.status,
                confirmation.params,
                confirmation.decided_by or "visitor",
            )
            self.submit(
                Turn(
                    confirmation.run_id, conversation.id, conversation.bot_uuid, message, resolution
                ),
                reserved=False,
            )
            requeued += 1
        for run in await self._store.unfinished_runs():
            if run.status == "running":
                error = run_error("interrupted", "the server restarted mid-answer")
                await self._store.finish_run(
                    run.id, status="failed", error_code=error.code, error_message=error.message
                )
                await self._publish(
                    events.run_failed(
                        run.conversation_id,
                        run.id,
                        code=error.code,
                        message=error.message,
                        retryable=True,
                    )
                )
                failed += 1
                continue
            message = await self._store.get_message(run.message_id)
            conversation = await self._store.get_conversation(run.conversation_id)
            if message is None or conversation is None:
                await self._store.finish_run(run.id, status="failed", error_code="internal_error")
                continue
            self.submit(
                Turn(run.id, run.conversation_id, conversation.bot_uuid, message), reserved=False
            )
            requeued += 1
        return failed, requeued

    async def drain(self, grace: float) -> None:
        """Stop accepting; give running work ``grace`` seconds; then interrupt it."""
        self._accepting = False
        tasks = [a.task for a in self._actors.values() if a.task is not None]
        if not tasks:
            return
        _, still = await asyncio.wait(tasks, timeout=grace)
        for task in still:
            task.cancel()
        for task in still:
            with contextlib.suppress(asyncio.CancelledError):
                await task
