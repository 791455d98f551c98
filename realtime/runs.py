"""Runs: at most one per conversation at a time, across every node, each ending once.

The store is the queue. Accepting a message stores a ``queued`` run with it; deciding a
pending write stores the decision. Either then *kicks* the conversation: the node that takes
the conversation's lease (:mod:`realtime.broker.coordination`) works through what the store
holds for it, in order (a decided write's resumption first, then queued runs oldest first),
renewing the lease while it works, and gives the lease up when nothing is left. A node that
cannot take the lease does nothing: the holder looks at the store again before it lets go,
and once more after, so no work is stranded between them.

Each run is *claimed* with one conditional update (``queued`` or ``awaiting_confirmation`` →
``running`` on this node) and *ended* with another (only while unfinished), so even two
nodes that both believed they held the lease could not run a turn twice, nor end a run
twice. Whatever happens, a started run ends with exactly one of ``run.completed``,
``run.failed``, ``run.cancelled``, and whatever text it produced is stored as the assistant
message. Only ``run.cancel`` stops a run (on whichever node runs it); a client that goes
away does not.

Every node sweeps the store for work nobody does: queued runs and decided writes whose
conversation no node holds are kicked; a ``running`` run whose node holds no lease for a
whole lease TTL (the node died) ends as ``run.failed {code: node_lost}`` with the text its
node had streamed, and the conversation goes on with its next turn. A node restarting under
its own ``node_id`` (or any restart of a single node) ends its unfinished runs at once as
``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio

from realtime import events
from realtime.agent.loop import Agent, Decision, Pause, RunInput, RunState
from realtime.bots import with_defaults
from realtime.broker.coordination import Coordination
from realtime.config import Settings
from realtime.data.source import DataSource, DataSources
from realtime.errors import Conflict, RunError, run_error
from realtime.metrics import Metrics
from realtime.periodic import Periodic, stop_task
from realtime.store import Confirmation, Message, Run, Store, iso, utcnow
from realtime.types import new_id

log = logging.getLogger("realtime.runs")

Publish = Callable[[events.Event], Awaitable[events.Frame]]
SendCancel = Callable[[str, str, str], Awaitable[None]]  # node, conversation, run
RunText = Callable[[str, str], Awaitable[str]]  # conversation, run -> the text it streamed
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


class _Blocked:
    """A run of the conversation is going on on another node."""


_BLOCKED = _Blocked()


def lease_name(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class _Actor:
    """This node's work on one conversation: the task holding its lease, and the run."""

    __slots__ = ("current", "task", "more", "hint")

    def __init__(self, hint: Turn | None) -> None:
        self.current: ActiveRun | None = None
        self.task: asyncio.Task[None] | None = None
        self.more = False  # kicked while working: look at the store again before leaving
        self.hint = hint  # the turn the kicker knows is the only one waiting


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
        coordination: Coordination,
    ) -> None:
        self._settings = settings
        self._data = data
        self._store = store
        self._publish = publish
        self._agent = agent
        self._metrics = metrics
        self._node_id = node_id
        self._coord = coordination
        self._ttl = settings.run_lease_ttl
        self._actors: dict[str, _Actor] = {}
        self._suspects: dict[str, float] = {}  # conversation -> first seen running, unleased
        self._accepting = True
        self._sweeper = Periodic("run-sweeper", self._ttl / 2, self.sweep)
        # Set by the engine: when a completed run asked for a person; how to reach the node
        # running a conversation to cancel its run; the text a run streamed (from the log).
        self.on_handoff: Callable[[str, str], Awaitable[None]] | None = None
        self.send_cancel: SendCancel | None = None
        self.run_text: RunText | None = None

    # -- the queue ---------------------------------------------------------------------------

    def check_accepting(self) -> None:
        if not self._accepting:
            raise Conflict(
                "shutting_down", "the server is shutting down; reconnect shortly", retryable=True
            )

    def kick(self, conversation_id: str, only: Turn | None = None) -> None:
        """The store holds work for the conversation: do it here, unless another node is
        working on the conversation (it will find the work before it stops). ``only``: the
        caller just stored this turn and nothing else waited (no need to look it up)."""
        if not self._accepting:
            return
        actor = self._actors.get(conversation_id)
        if actor is not None:
            actor.more = True
            return
        actor = self._actors[conversation_id] = _Actor(only)
        actor.task = asyncio.create_task(
            self._drive(conversation_id, actor), name=f"runs-{conversation_id}"
        )

    def active(self, conversation_id: str) -> ActiveRun | None:
        """The conversation's run going on on this node."""
        actor = self._actors.get(conversation_id)
        return actor.current if actor is not None else None

    async def running(self, conversation_id: str) -> Run | None:
        """The conversation's run going on on any node (from the store)."""
        for run in await self._store.unfinished_runs(conversation_id):
            if run.status == "running":
                return run
        return None

    async def cancel(self, conversation_id: str, run_id: str | None = None) -> str:
        """Stop the conversation's run, on whichever node runs it; returns its id (its end
        arrives as ``run.cancelled``). Raises ``no_active_run``."""
        current = self.active(conversation_id)
        if current is not None and run_id in (None, current.turn.run_id):
            current.scope.cancel()
            return current.turn.run_id
        run = await self.running(conversation_id)
        if (
            run is not None
            and run_id in (None, run.id)
            and run.node_id not in (None, self._node_id)
            and self.send_cancel is not None
        ):
            await self.send_cancel(run.node_id, conversation_id, run.id)
            return run.id
        raise Conflict("no_active_run", "no run of this conversation is in progress")

    def cancel_local(self, conversation_id: str, run_id: str) -> None:
        """Another node asks: stop this run if it runs here."""
        current = self.active(conversation_id)
        if current is not None and current.turn.run_id == run_id:
            current.scope.cancel()

    async def stop(self, conversation_id: str) -> None:
        """Cancel the conversation's run, if one is going on (a person takes over)."""
        with contextlib.suppress(Conflict):
            await self.cancel(conversation_id)

    def busy(self) -> int:
        return sum(1 for a in self._actors.values() if a.current is not None)

    async def _drive(self, conversation_id: str, actor: _Actor) -> None:
        lease = lease_name(conversation_id)
        try:
            while self._accepting:
                actor.more = False
                try:
                    if not await self._coord.acquire(lease, self._node_id, self._ttl):
                        return  # another node works on it and will find the work
                except Exception as exc:  # Redis away: the sweeper kicks it again later
                    log.warning("cannot take the lease of %s: %s", conversation_id, exc)
                    return
                try:
                    blocked = await self._work(conversation_id, actor)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        try:
                            await self._coord.release(lease, self._node_id)
                        except Exception as exc:
                            log.warning("cannot release the lease of %s: %s", conversation_id, exc)
                if blocked:
                    return
                # Work stored by another node after our last look, while we held the lease,
                # is ours to do (alone, a node hears of all its work through ``more``).
                if actor.more:
                    continue
                if self._coord.exclusive:
                    return
                if not isinstance(await self._next_turn(conversation_id), Turn):
                    return
        except Exception:  # the store failed: the sweeper kicks the conversation again
            log.exception("working on conversation %s failed", conversation_id)
        finally:
            if self._actors.get(conversation_id) is actor:
                del self._actors[conversation_id]

    async def _work(self, conversation_id: str, actor: _Actor) -> bool:
        """Run the conversation's turns while holding its lease. True when a run of another
        node is still going on (the sweeper decides whether that node is lost)."""
        renewer = asyncio.create_task(self._renew(conversation_id, actor))
        try:
            while self._accepting:
                turn, actor.hint = actor.hint or await self._next_turn(conversation_id), None
                if turn is None:
                    return False
                if isinstance(turn, _Blocked):
                    return True
                await self._execute(actor, turn)
            return False
        finally:
            await stop_task(renewer)

    async def _renew(self, conversation_id: str, actor: _Actor) -> None:
        lease = lease_name(conversation_id)
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                if await self._coord.renew(lease, self._node_id, self._ttl):
                    continue
            except Exception as exc:
                log.warning("cannot renew the lease of %s: %s", conversation_id, exc)
                continue  # nobody else can take it from an unreachable Redis either
            # Another node holds it: if it also ended our run (it believed this node lost),
            # stop the run; its end is stored, so ours will not be (nor published).
            current = actor.current
            if current is None:
                continue
            try:
                run = await self._store.get_run(current.turn.run_id)
            except Exception as exc:
                log.warning("cannot read run %s: %s", current.turn.run_id, exc)
                continue
            if run is None or run.status != "running" or run.node_id != self._node_id:
                log.warning("run %s was taken over by another node; stopping", run and run.id)
                current.scope.cancel()

    async def _next_turn(self, conversation_id: str) -> Turn | _Blocked | None:
        """The conversation's next turn in the store: nothing while a run is going on (on
        another node: ``_BLOCKED``), else a decided write's resumption, else the oldest
        queued run. One query when there is nothing to do."""
        unfinished = await self._store.unfinished_runs(conversation_id, paused=True)
        if not unfinished:
            return None
        if any(run.status == "running" for run in unfinished):
            return _BLOCKED
        conversation = await self._store.get_conversation(conversation_id)
        if conversation is None:
            return None
        if any(run.status == "awaiting_confirmation" for run in unfinished):
            store = self._store.confirmations
            for confirmation in await store.claimed_of_waiting_runs(conversation_id):
                run = await self._store.get_run(confirmation.run_id)
                message = await self._store.get_message(run.message_id) if run else None
                if message is None:
                    log.error("confirmation %s has no run or message", confirmation.id)
                    continue
                resolution = Resolution(
                    confirmation,
                    confirmation.status,
                    confirmation.params,
                    confirmation.decided_by or "visitor",
                )
                return Turn(
                    confirmation.run_id, conversation_id, conversation.bot_uuid, message, resolution
                )
        for run in unfinished:
            if run.status != "queued":
                continue
            message = await self._store.get_message(run.message_id)
            if message is None:
                await self._store.finish_run(run.id, status="failed", error_code="internal_error")
                continue
            return Turn(run.id, conversation_id, conversation.bot_uuid, message)
        return None

    # -- one run ---------------------------------------------------------------------------

    async def _execute(self, actor: _Actor, turn: Turn) -> None:
        """Claim the turn and run it. The run is this node's active one until its end is
        stored: a history read meanwhile shows its text, never a message not there yet."""
        expect = "queued" if turn.resolution is None else "awaiting_confirmation"
        if not await self._store.claim_run(turn.run_id, self._node_id, expect=expect):
            return  # another node ran it
        active = ActiveRun(turn, RunState(turn.run_id, turn.conversation_id))
        actor.current = active
        self._metrics.runs_active.inc()
        try:
            await self._run(active)
        finally:
            actor.current = None
            self._metrics.runs_active.dec()

    async def _run(self, active: ActiveRun) -> None:
        turn = active.turn
        cid, rid = turn.conversation_id, turn.run_id
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
        try:
            if pause is not None:
                await self._pause(active, pause)
            else:
                await self._finish(active, outcome, error)
        except Exception:
            log.exception("could not record the end of run %s", rid)
        if outcome == "completed" and active.state.handoff_reason and self.on_handoff:
            try:
                await self.on_handoff(cid, active.state.handoff_reason)
            except Exception:
                log.exception("could not hand conversation %s over", cid)

    async def _run_agent(self, turn: Turn, state: RunState) -> Pause | None:
        bot = await self._store.get_bot_by_uuid(turn.bot_uuid)
        if bot is None:
            raise run_error("bot_unavailable", "this bot no longer exists")
        config = with_defaults(bot.config)
        history = await self._store.history_for(turn.message, self._settings.history_messages)
        has_knowledge = await self._store.knowledge.has_knowledge(bot.uuid)
        threshold = config.get("citation_threshold")
        meta = turn.message.meta  # what the envelope the message came with says (engine)
        tools = meta.get("tools")
        inp = RunInput(
            bot_uuid=bot.uuid,
            config=config,
            model=config.get("model") or self._settings.model,
            question=turn.message.content,
            history=history,
            has_knowledge=has_knowledge,
            threshold=self._settings.citation_threshold if threshold is None else threshold,
            data=await self.data_source(config),
            page_context=meta.get("context"),
            prompt=meta.get("prompt"),
            allowed_tools=tuple(tools) if isinstance(tools, list) else None,
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
        ended = await self._store.finish_run(
            rid,
            status=outcome,
            message=message,
            usage=dict(state.usage),
            error_code=error.code if error else None,
            error_message=error.message if error else None,
        )
        if not ended:  # another node ended it (it believed this node lost)
            return
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

    async def recover(self) -> int:
        """At start: end the runs an earlier life of this node left ``running`` (any such run,
        when this is the only node), then take up the work waiting in the store."""
        failed = 0
        for run in await self._store.unfinished_runs():
            if run.status != "running":
                continue
            if self._coord.exclusive or run.node_id == self._node_id:
                if await self._end_lost(run, "interrupted", "the server restarted mid-answer"):
                    failed += 1
        await self.sweep()
        self._sweeper.start()
        return failed

    async def sweep(self) -> None:
        """Kick the conversations with work that no node holds; end the runs of lost nodes."""
        if not self._accepting:
            return
        now = time.monotonic()
        waiting = {
            c.conversation_id for c in await self._store.confirmations.claimed_of_waiting_runs()
        }
        running: dict[str, Run] = {}
        for run in await self._store.unfinished_runs():
            if run.status == "running":
                running.setdefault(run.conversation_id, run)
            else:
                waiting.add(run.conversation_id)
        for cid in [c for c in self._suspects if c not in running]:
            del self._suspects[cid]
        for cid, run in running.items():
            if cid in self._actors:
                continue
            try:
                await self._check_running(cid, run, now)
            except Exception as exc:
                log.warning("cannot check run %s of a lost node: %s", run.id, exc)
        for cid in waiting - running.keys():
            self.kick(cid)

    async def _check_running(self, conversation_id: str, run: Run, now: float) -> None:
        """A run no task of this node runs. It is lost when its node has held no lease on
        the conversation for a whole lease TTL (a Redis that restarted forgets leases; a
        live holder takes its lease back within a third of the TTL)."""
        if not (self._coord.exclusive or run.node_id == self._node_id):
            if await self._coord.holder(lease_name(conversation_id)) is not None:
                self._suspects.pop(conversation_id, None)
                return
            if now - self._suspects.setdefault(conversation_id, now) < self._ttl:
                return
        self._suspects.pop(conversation_id, None)
        lease = lease_name(conversation_id)
        if not await self._coord.acquire(lease, self._node_id, self._ttl):
            return
        try:
            if run.node_id == self._node_id:
                await self._end_lost(run, "interrupted", "the server restarted mid-answer")
            else:
                await self._end_lost(run, "node_lost", "the server answering went away")
        finally:
            await self._coord.release(lease, self._node_id)
        self.kick(conversation_id)

    async def _end_lost(self, run: Run, code: str, text: str) -> bool:
        """End a run whose node is gone, storing the text it had streamed (from the log)."""
        streamed = ""
        if self.run_text is not None:
            with contextlib.suppress(Exception):
                streamed = await self.run_text(run.conversation_id, run.id)
        message = None
        if streamed:
            message = Message(
                id=new_id(),
                conversation_id=run.conversation_id,
                role="assistant",
                content=streamed,
                created_at=utcnow(),
                run_id=run.id,
                status="failed",
            )
        ended = await self._store.finish_run(
            run.id,
            status="failed",
            message=message,
            error_code=code,
            error_message=text,
            node=run.node_id,
        )
        if ended:
            self._metrics.runs_finished.labels("failed").inc()
            await self._publish(
                events.run_failed(
                    run.conversation_id,
                    run.id,
                    code=code,
                    message=text,
                    retryable=True,
                    partial=message.to_wire() if message is not None else None,
                )
            )
        return ended

    async def drain(self, grace: float) -> None:
        """Stop taking work; give the runs going on ``grace`` seconds, then interrupt them.
        Queued turns stay in the store, where the other nodes' sweepers find them."""
        self._accepting = False
        await self._sweeper.stop()
        tasks = [a.task for a in self._actors.values() if a.task is not None]
        if not tasks:
            return
        _, still = await asyncio.wait(tasks, timeout=grace)
        for task in still:
            task.cancel()
        for task in still:
            with contextlib.suppress(asyncio.CancelledError):
                await task
