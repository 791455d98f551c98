"""The engine: the one place that decides what happens in a conversation.

Transports (the WebSocket endpoint, HTTP routes, later the SSE dialects) call the engine
and read its event streams; the engine never imports a transport. It owns the backends
(store, broker, provider) and the runs.

The life of a visitor message (:meth:`Engine.send_message`)::

    validate → idempotency check → rate limit → store message (+ queued run, if the queue
      has room) → on_accepted(ack)  (the transport subscribes and sends its ack first)
      → publish message.created → kick the conversation: the node holding its lease runs it
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from realtime import contact, envelopes, events
from realtime.agent.loop import Agent
from realtime.agent.offline import OfflineProvider
from realtime.agent.provider import Provider
from realtime.agent.tools import ToolRegistry, default_registry
from realtime.bots import origin_allowed, with_defaults
from realtime.broker.base import Broker
from realtime.broker.coordination import Coordination, MemoryCoordination
from realtime.config import Settings
from realtime.confirmations import Confirmations
from realtime.connections import Connections
from realtime.data.source import DataSources
from realtime.envelopes import Envelope, EnvelopeInvalid
from realtime.errors import AuthError, Conflict, Forbidden, NotFound, ProtocolError, RateLimited
from realtime.events import Frame
from realtime.handoff import Handoffs, asks_for_human, check_handoff_allowed, tenant_channel
from realtime.knowledge.retrieval import Retriever
from realtime.limits import message_rules
from realtime.metrics import Metrics
from realtime.periodic import Periodic
from realtime.runs import CANCEL, RunManager, Turn
from realtime.store import Bot, Confirmation, Conversation, HumanAgent, Message, Store, iso
from realtime.store.handoff import check_password, hash_password
from realtime.streams import Streams
from realtime.types import Identity, is_uuid, new_id

log = logging.getLogger("realtime.engine")

DEFAULT_TENANT = "default"
RUN_CANCEL = "run.cancel"  # on a node's channel: cancel a run that runs there


def node_channel(node_id: str) -> str:
    return f"node:{node_id}"


_DUMMY_HASH = hash_password("not-a-password")  # a failed lookup costs as much as a bad password
# Verifies the envelopes of tenants that do not exist: they fail as tampered, like a bad one.
_NO_SECRET = secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated visitor: who they are and which bot they talk to; with the signed
    context envelope they presented, if they did (its page context goes with every message
    they send on this session)."""

    identity: Identity
    bot: Bot
    envelope: Envelope | None = None

    @property
    def config(self) -> dict[str, Any]:
        return with_defaults(self.bot.config)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``message.send`` created (or, for a retried client id, had created)."""

    conversation_id: str
    message_id: str
    duplicate: bool
    epoch: int = 0
    after_seq: int = 0  # the stream's seq before message.created: subscribe after it

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
        }
        if self.duplicate:
            wire["duplicate"] = True
        else:
            wire["epoch"] = self.epoch
        return wire


@dataclass(frozen=True, slots=True)
class History:
    conversation: Conversation
    messages: list[Message]
    epoch: int
    last_seq: int
    active_run: dict[str, Any] | None
    pending_confirmation: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation.to_wire(),
            "messages": [m.to_wire() for m in self.messages],
            "epoch": self.epoch,
            "last_seq": self.last_seq,
            "active_run": self.active_run,
            "pending_confirmation": self.pending_confirmation,
        }


OnAccepted = Callable[[Accepted], Awaitable[None]]


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        broker: Broker,
        provider: Provider | None = None,
        *,
        metrics: Metrics | None = None,
        tools: ToolRegistry | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.provider = provider or OfflineProvider()
        self.metrics = metrics or Metrics()
        self.node_id = settings.node_id or f"node-{secrets.token_hex(3)}"
        self.coordination = coordination or MemoryCoordination()
        self.streams = Streams(broker, store)
        self.retriever = Retriever(store.knowledge)
        self.agent = Agent(
            self.provider,
            tools or default_registry(),
            self.retriever,
            max_tool_steps=settings.max_tool_steps,
        )
        self.data = DataSources()
        # WebSockets open per client address, across the nodes (the transports admit them).
        self.connections = Connections(settings.connections_per_ip, self.coordination, self.node_id)
        self._connection_heartbeat = Periodic(
            "connection-heartbeat", self.connections.ttl / 3, self.connections.heartbeat
        )
        self.runs = RunManager(
            settings=settings,
            store=store,
            publish=self.publish,
            agent=self.agent,
            metrics=self.metrics,
            node_id=self.node_id,
            data=self.data,
            coordination=self.coordination,
        )
        self.runs.send_cancel = self._send_cancel
        self.runs.run_text = self.streams.run_text
        self.handoffs = Handoffs(
            store,
            self.streams,
            self.publish,
            self.runs,
            presence_grace=settings.presence_grace,
            timeout=settings.handoff_timeout,
            coordination=self.coordination,
            node_id=self.node_id,
        )
        self.runs.on_handoff = self._handoff_from_run
        self.confirmations = Confirmations(
            store,
            self.runs,
            self.agent.tools,
            self.retriever,
            sweep_interval=min(1.0, settings.confirmation_ttl / 4),
        )
        # Transports follow conversations through the streams (gapless, see streams.py).
        self.subscribe = self.streams.subscribe

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start()
        await self.coordination.start()
        await self.broker.listen(node_channel(self.node_id), self._on_control)
        failed = await self.runs.recover()
        if failed:
            log.info("recovered runs: %d interrupted", failed)
        self.confirmations.start()
        self.handoffs.start(min(1.0, self.settings.handoff_timeout / 4))
        self._connection_heartbeat.start()

    async def stop(self) -> None:
        await self.handoffs.stop()
        await self.confirmations.stop()
        await self.runs.drain(self.settings.drain_timeout)
        self.broker.unlisten(node_channel(self.node_id), self._on_control)
        await self._connection_heartbeat.stop()
        await self.connections.forget()
        await self.streams.close()
        await self.provider.close()
        await self.data.close()
        await self.coordination.close()
        await self.broker.close()

    async def publish(self, event: events.Event) -> Frame:
        self.metrics.events.inc()
        return await self.streams.publish(event)

    # -- between nodes -----------------------------------------------------------------------

    async def _send_cancel(self, node_id: str, conversation_id: str, run_id: str) -> None:
        """Ask the node running a conversation's run to cancel it."""
        await self.broker.publish_ephemeral(
            events.tenant_event(
                node_channel(node_id),
                RUN_CANCEL,
                conversation_id=conversation_id,
                run_id=run_id,
            )
        )

    def _on_control(self, frame: Frame) -> None:
        """A message from another node on this node's channel."""
        try:
            body = orjson.loads(frame.text)
            if body.get("type") == RUN_CANCEL:
                self.runs.cancel_local(str(body["conversation_id"]), str(body["run_id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed control message: %.200s", frame.text)

    # -- sessions and access ---------------------------------------------------------------

    async def resolve_bot(self, ref: str) -> Bot:
        """A bot by UUID, ``slug`` (in the default tenant) or ``tenant/slug``."""
        if not isinstance(ref, str) or not ref or len(ref) > 120:
            raise NotFound("bot_not_found", "no such bot")
        if is_uuid(ref):
            bot = await self.store.get_bot_by_uuid(ref.lower())
        else:
            tenant, _, slug = ref.rpartition("/")
            bot = await self.store.get_bot(tenant or DEFAULT_TENANT, slug)
        if bot is None:
            raise NotFound("bot_not_found", "no such bot")
        return bot

    async def open_session(
        self,
        bot_ref: str | None,
        *,
        session_id: str | None = None,
        api_key: str | None = None,
        user: str | None = None,
        signed_context: str | None = None,
        origin: str | None = None,
    ) -> Session:
        """Authenticate a visitor for a bot (DECISIONS 6).

        ``session_id`` alone works for public bots; ``api_key`` + ``user`` for any bot of the
        key's tenant (and of the key's bot, when the key is bound to one) with a ``full``
        key, ``api_key`` + ``session_id`` with a ``chat`` key; a
        ``signed_context`` for the bot it names, public or private
        (:meth:`open_envelope_session`). A browser's ``origin`` must be one the bot allows
        (``origin_not_allowed``): every transport that opens a session gets the check.
        """
        session = await self._open_session(
            bot_ref,
            session_id=session_id,
            api_key=api_key,
            user=user,
            signed_context=signed_context,
        )
        if origin is not None and not self.origin_allowed(session.bot, origin):
            raise Forbidden("origin_not_allowed", "this bot is not available from this site")
        return session

    def origin_allowed(self, bot: Bot, origin: str) -> bool:
        """A browser (it sends ``Origin``) may use the bot only from its ``allowed_origins``
        (all, when the list is empty); clients that send no ``Origin`` are not browsers and
        prove themselves otherwise (keys, envelopes)."""
        return origin_allowed(origin, with_defaults(bot.config)["allowed_origins"])

    async def _open_session(
        self,
        bot_ref: str | None,
        *,
        session_id: str | None,
        api_key: str | None,
        user: str | None,
        signed_context: str | None,
    ) -> Session:
        if signed_context is not None:
            if api_key is not None:
                raise ProtocolError("invalid_field", "send 'signed_context' or 'api_key', not both")
            return await self.open_envelope_session(signed_context, bot_ref, session_id=session_id)
        if bot_ref is None:
            raise ProtocolError("missing_field", "'bot' is required")
        bot = await self.resolve_bot(bot_ref)
        if api_key is not None:
            key = await self.store.find_api_key(api_key)
            if key is None:
                raise AuthError("unauthorized", "unknown or revoked API key")
            if key.tenant_id != bot.tenant_id or (key.bot_uuid and key.bot_uuid != bot.uuid):
                raise NotFound("bot_not_found", "no such bot")
            if key.scope != "full":
                # A chat key sits in public pages: it opens its bot (even a private one) to
                # anonymous sessions, and may never speak for a user (DECISIONS 3).
                if user is not None:
                    raise Forbidden(
                        "key_scope",
                        "a chat key cannot speak for a user: use a full key or a signed context",
                    )
                if session_id is None:
                    raise ProtocolError("missing_field", "'session_id' is required with a chat key")
                await self.store.tenancy.touch_key(key)
                return Session(Identity(bot.tenant_id, "session", session_id), bot)
            if not user:
                raise ProtocolError("missing_field", "'user' is required with 'api_key'")
            await self.store.tenancy.touch_key(key)
            return Session(Identity(bot.tenant_id, "user", user), bot)
        if session_id is None:
            raise ProtocolError("missing_field", "'session_id' or 'api_key' is required")
        if with_defaults(bot.config)["privacy"] != "public":
            raise Forbidden("forbidden", "this bot is private: authenticate with an API key")
        return Session(Identity(bot.tenant_id, "session", session_id), bot)

    async def open_envelope_session(
        self, token: str, bot_ref: str | None = None, *, session_id: str | None = None
    ) -> Session:
        """A visitor vouched for by a signed context envelope (DECISIONS 4, 6).

        The envelope's ``k`` (read unverified, only to pick the secret; absent: ``default``)
        names the tenant whose signing secret must verify it; an unknown tenant fails as
        ``envelope_tampered``, like a bad signature (no existence oracle). Its channel ``c``
        is the bot's slug in that tenant; ``bot_ref``, when given, must name that same bot
        (``envelope_channel`` otherwise, checked after the expiry as the format says). The
        identity is ``user:<u>`` of the tenant: the same user owns the same conversations
        from any device and any transport. A guest envelope (``u`` null) needs a
        ``session_id`` too, which then owns the conversations (``envelope_anonymous``
        without one).
        """
        tenant_id = envelopes.unverified_tenant(token) or DEFAULT_TENANT
        plausible = len(tenant_id) <= 64 and "\x00" not in tenant_id  # no id is longer or has NUL
        secret = await self.store.signing_secret(tenant_id) if plausible else None
        channel = None if bot_ref is None else await self._channel_of(tenant_id, bot_ref)
        envelope = envelopes.verify(
            token, _NO_SECRET if secret is None else secret, channel=channel
        )
        bot = (
            await self.store.get_bot(tenant_id, envelope.channel)
            if "\x00" not in envelope.channel
            else None
        )
        if bot is None:
            raise NotFound("bot_not_found", "no such bot")
        if envelope.user is not None:
            if not 1 <= len(envelope.user) <= envelopes.MAX_USER_CHARS:
                raise EnvelopeInvalid(
                    f"the envelope's 'u' must be 1..{envelopes.MAX_USER_CHARS} characters"
                )
            identity = Identity(tenant_id, "user", envelope.user)
        elif session_id is not None:
            identity = Identity(tenant_id, "session", session_id)
        else:
            raise ProtocolError(
                "envelope_anonymous",
                "this envelope names no user ('u' is null): send 'session_id' with it",
            )
        return Session(identity, bot, envelope)

    async def _channel_of(self, tenant_id: str, bot_ref: str) -> str:
        """The channel (slug in ``tenant_id``) that a hello's ``bot`` names; a bot of another
        tenant, or no bot, gives a string no channel equals."""
        if is_uuid(bot_ref):
            bot = await self.store.get_bot_by_uuid(bot_ref.lower())
            return bot.slug if bot is not None and bot.tenant_id == tenant_id else "/"
        tenant, slash, slug = bot_ref.rpartition("/")
        if slash:
            return slug if tenant == tenant_id else "/"
        return bot_ref

    async def session_for_conversation(
        self,
        conversation_id: str,
        *,
        session_id: str | None = None,
        api_key: str | None = None,
        user: str | None = None,
        signed_context: str | None = None,
        origin: str | None = None,
    ) -> Session:
        """Authenticate for an existing conversation's bot (HTTP reads carry no ``bot``).

        A ``signed_context`` is verified before the conversation is looked up, and its
        channel must be the conversation's bot.
        """
        if signed_context is not None:
            session = await self.open_session(
                None,
                session_id=session_id,
                api_key=api_key,
                signed_context=signed_context,
                origin=origin,
            )
            await self.conversation_for(session, conversation_id)
            return session
        conversation = await self._conversation(conversation_id)
        try:
            return await self.open_session(
                conversation.bot_uuid,
                session_id=session_id,
                api_key=api_key,
                user=user,
                origin=origin,
            )
        except NotFound:
            raise NotFound("conversation_not_found", "no such conversation") from None

    async def conversation_for(self, session: Session, conversation_id: str) -> Conversation:
        """The session's conversation with its bot; anything else is not found."""
        conversation = await self._conversation(conversation_id)
        if (
            conversation.tenant_id != session.identity.tenant
            or conversation.owner != session.identity.key
            or conversation.bot_uuid != session.bot.uuid
        ):
            raise NotFound("conversation_not_found", "no such conversation")
        return conversation

    async def _conversation(self, conversation_id: str) -> Conversation:
        conversation = (
            await self.store.get_conversation(conversation_id) if is_uuid(conversation_id) else None
        )
        if conversation is None:
            raise NotFound("conversation_not_found", "no such conversation")
        return conversation

    # -- messages --------------------------------------------------------------------------

    async def send_message(
        self,
        session: Session,
        content: str,
        *,
        client_id: str | None = None,
        conversation_id: str | None = None,
        on_accepted: OnAccepted | None = None,
    ) -> Accepted:
        """Store a visitor message and queue its run; see the module docstring."""
        if not content.strip():
            raise ProtocolError("invalid_field", "'content' must not be empty")
        if len(content) > self.settings.max_message_chars:
            raise ProtocolError(
                "content_too_long",
                f"'content' is over {self.settings.max_message_chars} characters",
            )
        identity = session.identity
        if client_id is not None:
            seen = await self.store.find_idempotent(identity.tenant, identity.key, client_id)
            if seen is not None:
                return Accepted(seen[0], seen[1], duplicate=True)
        self.runs.check_accepting()
        retry_after = await self.coordination.hit_all(
            message_rules(
                f"messages:{identity.tenant}:{identity.key}:{session.bot.uuid}",
                self.settings.messages_per_minute,
                session.config["rate_limits"],
            )
        )
        if retry_after:
            raise RateLimited(retry_after=retry_after)
        if conversation_id is not None:
            await self.conversation_for(session, conversation_id)
        # A visitor asking for a person, where the bot hands off by itself: no run.
        config = session.config
        wants_human = (
            config["handoff_enabled"]
            and config["handoff_trigger"] in ("auto", "both")
            and asks_for_human(content)
        )
        run_id = new_id()
        envelope = session.envelope
        stored = await self.store.add_user_message(
            tenant_id=identity.tenant,
            owner=identity.key,
            bot_uuid=session.bot.uuid,
            conversation_id=conversation_id,
            content=content,
            client_id=client_id,
            run_id=None if wants_human else run_id,
            node=self.node_id,
            meta=envelope_meta(envelope) if envelope is not None else None,
            queue_limit=self.settings.queue_limit,
        )
        message = stored.message
        answered = stored.created and stored.status == "bot" and not wants_human
        if not stored.created:
            return Accepted(message.conversation_id, message.id, duplicate=True)
        cid = message.conversation_id
        alone = stored.waiting == 0  # nothing else waits: the run needs no looking up
        if conversation_id is not None:
            # A write waiting for confirmation is rejected by the new message (DECISIONS 11).
            if await self.confirmations.reject_pending(cid) is not None:
                alone = False
        try:
            state = await self.streams.open(cid)
            accepted = Accepted(cid, message.id, False, state.epoch, state.last_seq)
            self.metrics.messages.inc()
            if on_accepted is not None:
                await on_accepted(accepted)
            await self.publish(events.message_created(cid, message.to_wire()))
            if stored.reopened:
                await self.publish(events.conversation_updated(cid, status="bot", agent=None))
        finally:
            # The message and its run are stored: it is answered even if the sender vanished.
            if answered:
                turn = Turn(run_id, cid, session.bot.uuid, message) if alone else None
                self.runs.kick(cid, turn)
        if wants_human:
            conversation = await self._conversation(cid)
            if conversation.status in ("bot", "closed"):
                await self.handoffs.request(conversation, "message")
        return accepted

    async def new_conversation(self, session: Session) -> str:
        """An empty conversation of the session's identity and bot."""
        identity = session.identity
        return await self.store.create_conversation(identity.tenant, identity.key, session.bot.uuid)

    def check_handoff(self, session: Session) -> None:
        """Raise ``handoff_unavailable`` unless the visitor's button may hand off here."""
        check_handoff_allowed(session.config, "button")

    def check_contact(self, session: Session, fields: dict[str, Any]) -> dict[str, str]:
        """The contact form's answers as the bot's fields take them (or its error)."""
        config = session.config
        if not config["contact_form_enabled"]:
            raise Conflict("contact_form_unavailable", "this bot has no contact form")
        return contact.check_submission(contact.fields_of(config), fields)

    async def request_handoff(self, session: Session, conversation_id: str) -> bool:
        """The visitor's button: queue the conversation for a person (False: already is)."""
        conversation = await self.conversation_for(session, conversation_id)
        if conversation.status in ("pending_human", "with_human"):
            return False
        return await self.handoffs.request(conversation, "button")

    async def cancel_handoff(self, session: Session, conversation_id: str) -> None:
        conversation = await self.conversation_for(session, conversation_id)
        await self.handoffs.cancel(conversation)

    async def _handoff_from_run(self, conversation_id: str, reason: str) -> None:
        """A run asked for a person (the model's tool, or the offline responder)."""
        conversation = await self._conversation(conversation_id)
        try:
            await self.handoffs.request(conversation, reason)
        except Conflict as exc:
            log.info("handoff from a run of %s refused: %s", conversation_id, exc.message)

    async def cancel_run(
        self, session: Session, conversation_id: str, run_id: str | None = None
    ) -> str:
        """Stop the conversation's run: the one generating, or the one waiting for a
        confirmation (its write is rejected). Raises ``no_active_run``."""
        await self.conversation_for(session, conversation_id)
        if self.runs.active(conversation_id) is None:
            pending = await self.store.confirmations.find(conversation_id)
            if pending is not None and run_id in (None, pending.run_id):
                ended = await self.confirmations.reject_pending(conversation_id, by=CANCEL)
                if ended is not None:
                    return ended
        return await self.runs.cancel(conversation_id, run_id)

    async def resolve_confirmation(
        self,
        session: Session,
        conversation_id: str,
        tool_call_id: str,
        decision: str,
        params: dict[str, Any] | None = None,
    ) -> Confirmation:
        """Approve (optionally with edited params) or reject a pending write; see
        :meth:`realtime.confirmations.Confirmations.resolve` for the errors."""
        await self.conversation_for(session, conversation_id)
        return await self.confirmations.resolve(
            conversation_id, session.bot.uuid, tool_call_id, decision, params=params
        )

    async def typing(self, session: Session, conversation_id: str, on: bool) -> None:
        await self.conversation_for(session, conversation_id)
        await self.streams.publish_ephemeral(events.typing(conversation_id, "visitor", on))

    async def feedback(
        self, session: Session, conversation_id: str, message_id: str, value: str | None
    ) -> None:
        """The visitor rates one of the bot's answers in their conversation."""
        await self.conversation_for(session, conversation_id)
        if not (
            is_uuid(message_id)
            and await self.store.set_feedback(conversation_id, message_id, value)
        ):
            raise NotFound("message_not_found", "no such answer in this conversation")

    async def submit_contact(
        self, session: Session, conversation_id: str, fields: dict[str, Any]
    ) -> dict[str, str]:
        """The contact form: the answers checked against the bot's fields, kept with the
        conversation (the agents' handoff context shows them) and announced as
        ``lead.captured``."""
        await self.conversation_for(session, conversation_id)
        info = self.check_contact(session, fields)
        await self.store.set_visitor_info(conversation_id, info)
        await self.publish(events.lead_captured(conversation_id, info))
        return info

    # -- human agents ------------------------------------------------------------------------

    async def agent_login(self, tenant_id: str, email: str, password: str) -> HumanAgent:
        """The agent with these credentials; ``unauthorized`` otherwise (no hint which)."""
        found = await self.store.handoff.find_agent(tenant_id, email)
        stored = found[1] if found is not None else _DUMMY_HASH
        ok = await asyncio.to_thread(check_password, password, stored)
        if found is None or not ok:
            raise AuthError("unauthorized", "unknown email or wrong password")
        return found[0]

    async def agent_for_token(self, token: str) -> HumanAgent:
        agent = await self.store.handoff.agent_for_token(token)
        if agent is None:
            raise AuthError("unauthorized", "unknown or expired token")
        return agent

    async def issue_agent_token(self, agent: HumanAgent) -> tuple[str, str]:
        token, expires = await self.store.handoff.issue_agent_token(
            agent.id, timedelta(seconds=self.settings.agent_token_ttl)
        )
        return token, iso(expires) or ""

    async def agent_typing(self, agent: HumanAgent, conversation_id: str, on: bool) -> None:
        await self.handoffs.owned(agent, conversation_id)
        await self.streams.publish_ephemeral(
            events.typing(conversation_id, "agent", on, agent.public())
        )

    async def agent_resolve_confirmation(
        self,
        agent: HumanAgent,
        conversation_id: str,
        tool_call_id: str,
        decision: str,
        params: dict[str, Any] | None = None,
    ) -> Confirmation:
        """An agent who owns the conversation answers the visitor's pending write, when the
        bot allows it (``agent_confirmations``)."""
        conversation = await self.handoffs.owned(agent, conversation_id)
        bot = await self.store.get_bot_by_uuid(conversation.bot_uuid)
        if bot is None or not with_defaults(bot.config)["agent_confirmations"]:
            raise Forbidden("forbidden", "this bot lets only the visitor confirm its actions")
        return await self.confirmations.resolve(
            conversation_id,
            conversation.bot_uuid,
            tool_call_id,
            decision,
            params=params,
            by="agent",
        )

    async def listen_tenant(
        self, tenant_id: str, sink: Callable[[Frame], None]
    ) -> Callable[[], None]:
        """Follow a tenant's console channel (queue and presence changes); returns the stop."""
        channel = tenant_channel(tenant_id)
        await self.broker.listen(channel, sink)
        return lambda: self.broker.unlisten(channel, sink)

    # -- reading ---------------------------------------------------------------------------

    async def history(self, session: Session, conversation_id: str) -> History:
        """Stored messages plus the cursor to resume from (DECISIONS 9).

        ``last_seq`` is read before the messages, so every event up to it is reflected in
        them; a client applies live events with a greater seq, upserting messages by id.
        """
        return await self.history_of(await self.conversation_for(session, conversation_id))

    async def history_of(self, conversation: Conversation) -> History:
        """:meth:`history` for a conversation the caller may read (agents read any of theirs)."""
        conversation_id = conversation.id
        state = await self.streams.open(conversation_id)
        active = self.runs.active(conversation_id)
        active_run = None
        if active is not None:
            active_run = {"run_id": active.turn.run_id, "content": active.state.text}
        else:
            elsewhere = await self.runs.running(conversation_id)
            if elsewhere is not None:  # on another node: its text so far is in the log
                text = await self.streams.run_text(conversation_id, elsewhere.id, state.last_seq)
                active_run = {"run_id": elsewhere.id, "content": text}
        messages = await self.store.list_messages(conversation_id)
        pending = await self.store.confirmations.find(conversation_id)
        return History(
            conversation,
            messages,
            state.epoch,
            state.last_seq,
            active_run,
            pending.to_wire() if pending is not None else None,
        )


def envelope_meta(envelope: Envelope) -> dict[str, Any]:
    """What a message sent under an envelope keeps (``Message.meta``): ``route_name`` and
    ``context_hash`` (DECISIONS 4), and for its run, on whichever node it runs: the page
    ``context``, the ``prompt`` and the tool allowlist ``tools``."""
    meta: dict[str, Any] = {
        "route_name": envelope.route,
        "context_hash": envelope.context_hash,
    }
    if envelope.context:
        meta["context"] = envelope.context
    if envelope.prompt:
        meta["prompt"] = envelope.prompt
    if envelope.tools is not None:
        meta["tools"] = list(envelope.tools)
    return meta
