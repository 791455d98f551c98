"""Administration: tenants, API keys, bots and their knowledge sources (the core side).

The HTTP routes under ``/admin/v1`` (:mod:`realtime.transport.admin`) and the CLI both call
this; it validates input and raises the error tree, so every caller answers the same way.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from realtime import envelopes
from realtime.bots import check_slug, validate_settings, with_defaults
from realtime.errors import AuthError, Conflict, Forbidden, NotFound, ProtocolError
from realtime.knowledge.ingest import add_source
from realtime.store import ApiKey, Bot, HumanAgent, Source, Store, Tenant, hash_secret
from realtime.store.handoff import hash_password
from realtime.store.records import utcnow
from realtime.store.tenancy import Webhook

ADMIN_KEY_SETTING = "admin_key_hash"
SCOPES = ("chat", "full")
# What a webhook may subscribe to (the BotPlot document's events, contracts.md §3).
WEBHOOK_EVENTS = (
    "conversation.started",
    "message.received",
    "message.sent",
    "handoff.requested",
    "lead.captured",
)
MAX_WEBHOOKS = 10
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of the admin API: ``tenant`` None is the server's admin key."""

    tenant: str | None

    def check_tenant(self, tenant_id: str) -> None:
        """Another tenant's things do not exist for a tenant's key (404, no oracle)."""
        if self.tenant is not None and self.tenant != tenant_id:
            raise NotFound("tenant_not_found", "no such tenant")

    def check_server(self) -> None:
        if self.tenant is not None:
            raise Forbidden("forbidden", "this needs the server's admin key")


class Admin:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the admin key ---------------------------------------------------------------------

    async def ensure_admin_key(self, configured: str) -> str | None:
        """Install the configured admin key, or generate one on first start.

        Returns the raw key when one was generated (to be printed once), else None.
        """
        if configured:
            await self.store.set_setting(ADMIN_KEY_SETTING, hash_secret(configured))
            return None
        if await self.store.get_setting(ADMIN_KEY_SETTING):
            return None
        raw = "rta_" + secrets.token_urlsafe(30)
        await self.store.set_setting(ADMIN_KEY_SETTING, hash_secret(raw))
        return raw

    async def check_admin_key(self, raw: str | None) -> None:
        stored = await self.store.get_setting(ADMIN_KEY_SETTING)
        if not raw or not stored or not hmac.compare_digest(hash_secret(raw), stored):
            raise AuthError("unauthorized", "a valid admin key is required")

    async def authenticate(self, raw: str | None) -> Principal:
        """Who calls the admin API: the server's admin key (every tenant), or a tenant's
        ``full`` API key not bound to a bot (its own tenant only). A ``chat`` key (made to
        sit in public pages) or a bot-bound key is refused with ``key_scope`` (403)."""
        if raw and raw.startswith("rtk_"):
            key = await self.store.find_api_key(raw)
            if key is not None:
                if key.scope != "full" or key.bot_uuid is not None:
                    raise Forbidden(
                        "key_scope", "the admin API needs the admin key or a tenant's full key"
                    )
                await self.store.tenancy.touch_key(key)
                return Principal(key.tenant_id)
        await self.check_admin_key(raw)
        return Principal(None)

    # -- tenants and keys ------------------------------------------------------------------

    async def create_tenant(self, body: dict[str, Any]) -> Tenant:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            raise ProtocolError("invalid_field", "'name' must be 1..200 characters")
        tenant_id = body.get("id")
        if tenant_id is None:
            tenant_id = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "tenant"
            if await self.store.get_tenant(tenant_id) is not None:
                tenant_id = f"{tenant_id}-{secrets.token_hex(3)}"
        elif not isinstance(tenant_id, str) or not _TENANT_RE.fullmatch(tenant_id):
            raise ProtocolError("invalid_field", "'id' must be 2..63 of a-z 0-9 _ - (lowercase)")
        if await self.store.get_tenant(tenant_id) is not None:
            raise Conflict("tenant_exists", f"tenant {tenant_id!r} already exists")
        return await self.store.create_tenant(tenant_id, name.strip())

    async def tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound("tenant_not_found", "no such tenant")
        return tenant

    async def set_quota(self, tenant_id: str, body: dict[str, Any]) -> Tenant:
        """``{"monthly_messages": n | null}``: the tenant's visitor messages a month (UTC
        calendar months), or no quota."""
        await self.tenant(tenant_id)
        unknown = sorted(set(body) - {"monthly_messages"})
        if unknown:
            raise ProtocolError("invalid_field", f"unknown fields: {', '.join(unknown)}")
        if "monthly_messages" not in body:
            raise ProtocolError("missing_field", "'monthly_messages' is required")
        quota = body["monthly_messages"]
        if quota is not None and (
            isinstance(quota, bool) or not isinstance(quota, int) or not 0 <= quota <= 2**31 - 1
        ):
            raise ProtocolError(
                "invalid_field", "'monthly_messages' must be an integer 0..2147483647 or null"
            )
        tenant = await self.store.set_quota(tenant_id, quota)
        if tenant is None:  # deleted meanwhile
            raise NotFound("tenant_not_found", "no such tenant")
        return tenant

    async def usage(self, tenant: Tenant) -> dict[str, Any]:
        """The tenant with this month's usage."""
        month = utcnow().strftime("%Y-%m")
        messages = await self.store.usage(tenant.id, month)
        return {**tenant.to_wire(), "usage": {"month": month, "messages": messages}}

    async def create_key(self, tenant_id: str, body: dict[str, Any]) -> tuple[ApiKey, str]:
        await self.tenant(tenant_id)
        name = body.get("name", "key")
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise ProtocolError("invalid_field", "'name' must be 1..200 characters")
        scope = body.get("scope", "full")
        if scope not in SCOPES:
            raise ProtocolError("invalid_field", "'scope' must be 'chat' or 'full'")
        bot_uuid = None
        if body.get("bot_id") is not None:
            bot_uuid = (await self.bot(tenant_id, body["bot_id"])).uuid
        return await self.store.create_api_key(tenant_id, name, scope, bot_uuid)

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        await self.tenant(tenant_id)
        return await self.store.tenancy.list_keys(tenant_id)

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKey:
        await self.tenant(tenant_id)
        key = await self.store.tenancy.revoke_key(tenant_id, key_id)
        if key is None:
            raise NotFound("key_not_found", "no such API key")
        return key

    # -- webhooks ----------------------------------------------------------------------------

    async def add_webhook(self, tenant_id: str, body: dict[str, Any]) -> Webhook:
        """Register an endpoint for some of :data:`WEBHOOK_EVENTS`; its secret signs the
        deliveries (``sha256=`` HMAC of the raw body) and is never shown again."""
        await self.tenant(tenant_id)
        url = body.get("url")
        if not isinstance(url, str) or not _valid_url(url):
            raise ProtocolError(
                "invalid_field", "'url' must be an http(s) URL of 2000 characters or less"
            )
        events = body.get("events")
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e in WEBHOOK_EVENTS for e in events)
        ):
            raise ProtocolError(
                "invalid_field", f"'events' must be a list of: {', '.join(WEBHOOK_EVENTS)}"
            )
        secret = body.get("secret")
        if not isinstance(secret, str) or not 16 <= len(secret) <= 200:
            raise ProtocolError("invalid_field", "'secret' must be 16..200 characters")
        if await self.store.tenancy.count_webhooks(tenant_id) >= MAX_WEBHOOKS:
            raise Conflict("webhook_limit", f"a tenant has at most {MAX_WEBHOOKS} webhooks")
        return await self.store.tenancy.add_webhook(
            tenant_id, url, list(dict.fromkeys(events)), secret
        )

    async def list_webhooks(self, tenant_id: str) -> list[Webhook]:
        await self.tenant(tenant_id)
        return await self.store.tenancy.list_webhooks(tenant_id)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> None:
        await self.tenant(tenant_id)
        if not await self.store.tenancy.delete_webhook(tenant_id, webhook_id):
            raise NotFound("webhook_not_found", "no such webhook")

    # -- signed context envelopes ----------------------------------------------------------

    async def mint_envelope(self, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``{"signed_context", "expires_at"}`` for the tenant's bot ``channel``, signed with
        the tenant's secret (which no answer ever contains): fields as in
        :func:`realtime.envelopes.mint_request` (400 when wrong); 404 for an unknown tenant
        or bot."""
        tenant = await self.tenant(tenant_id)
        request = envelopes.mint_request(body)
        await self.bot(tenant.id, request.channel)
        return request.mint(tenant.signing_secret, tenant=tenant.id)

    # -- bots ------------------------------------------------------------------------------

    async def bot(self, tenant_id: str, bot_id: Any) -> Bot:
        if not isinstance(bot_id, str):
            raise NotFound("bot_not_found", "no such bot")
        bot = await self.store.get_bot(tenant_id, bot_id)
        if bot is None:
            raise NotFound("bot_not_found", "no such bot")
        return bot

    async def create_bot(self, tenant_id: str, body: dict[str, Any]) -> Bot:
        await self.tenant(tenant_id)
        settings = dict(body)
        slug = check_slug(settings.pop("bot_id", None))
        config = validate_settings(settings, partial=False)
        if await self.store.get_bot(tenant_id, slug) is not None:
            raise Conflict("bot_exists", f"bot {slug!r} already exists")
        return await self.store.create_bot(tenant_id, slug, config)

    async def update_bot(self, tenant_id: str, bot_id: str, body: dict[str, Any]) -> Bot:
        bot = await self.bot(tenant_id, bot_id)
        if "bot_id" in body and body["bot_id"] != bot.slug:
            raise ProtocolError("invalid_field", "'bot_id' cannot be changed")
        changes = validate_settings({k: v for k, v in body.items() if k != "bot_id"}, partial=True)
        updated = await self.store.update_bot(bot.uuid, {**bot.config, **changes})
        assert updated is not None
        return updated

    async def delete_bot(self, tenant_id: str, bot_id: str) -> None:
        bot = await self.bot(tenant_id, bot_id)
        await self.store.delete_bot(bot.uuid)

    def bot_wire(self, bot: Bot) -> dict[str, Any]:
        return {**bot.to_wire(), **with_defaults(bot.config)}

    # -- human agents ------------------------------------------------------------------------

    async def create_agent(self, tenant_id: str, body: dict[str, Any]) -> HumanAgent:
        await self.tenant(tenant_id)
        name = body.get("name")
        email = body.get("email")
        password = body.get("password")
        label = body.get("label") or (name.split()[0] if isinstance(name, str) and name else None)
        capacity = body.get("capacity", 5)
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            raise ProtocolError("invalid_field", "'name' must be 1..200 characters")
        if not isinstance(email, str) or not _EMAIL_RE.fullmatch(email) or len(email) > 320:
            raise ProtocolError("invalid_field", "'email' must be an email address")
        if not isinstance(password, str) or not 8 <= len(password) <= 200:
            raise ProtocolError("invalid_field", "'password' must be 8..200 characters")
        if not isinstance(label, str) or not 1 <= len(label) <= 100:
            raise ProtocolError("invalid_field", "'label' must be 1..100 characters")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= 100:
            raise ProtocolError("invalid_field", "'capacity' must be an integer from 1 to 100")
        if await self.store.handoff.find_agent(tenant_id, email) is not None:
            raise Conflict("agent_exists", f"an agent with email {email!r} exists")
        password_hash = await asyncio.to_thread(hash_password, password)
        return await self.store.handoff.create_agent(
            tenant_id,
            name=name.strip(),
            email=email,
            label=label,
            password_hash=password_hash,
            capacity=capacity,
        )

    # -- knowledge sources -----------------------------------------------------------------

    async def list_agents(self, tenant_id: str) -> list[HumanAgent]:
        tenant = await self.tenant(tenant_id)
        return await self.store.handoff.list_agents(tenant.id)

    async def add_source(self, tenant_id: str, bot_id: str, body: dict[str, Any]) -> Source:
        bot = await self.bot(tenant_id, bot_id)
        content = body.get("content")
        if not isinstance(content, str):
            raise ProtocolError("missing_field", "'content' (a string) is required")
        kind = body.get("kind", "text")
        title = body.get("title")
        url = body.get("url", "")
        if title is not None and (not isinstance(title, str) or len(title) > 300):
            raise ProtocolError(
                "invalid_field", "'title' must be a string of at most 300 characters"
            )
        if not isinstance(url, str) or len(url) > 2000:
            raise ProtocolError(
                "invalid_field", "'url' must be a string of at most 2000 characters"
            )
        return await add_source(
            self.store.knowledge,
            tenant_id=tenant_id,
            bot_uuid=bot.uuid,
            content=content,
            kind=kind,
            title=title,
            url=url,
        )

    async def list_sources(self, tenant_id: str, bot_id: str) -> list[Source]:
        bot = await self.bot(tenant_id, bot_id)
        return await self.store.knowledge.list_sources(bot.uuid)

    async def delete_source(self, tenant_id: str, bot_id: str, source_id: str) -> None:
        bot = await self.bot(tenant_id, bot_id)
        if not await self.store.knowledge.delete_source(bot.uuid, source_id):
            raise NotFound("source_not_found", "no such source")


def _valid_url(url: str) -> bool:
    if len(url) > 2000 or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
