"""Tenants' API keys and webhook endpoints, as the admin API manages them (``Store.tenancy``).

Nothing here returns a secret: a key's raw value exists only in the answer that created it
(only its hash is stored), and a webhook's secret, kept to sign deliveries, is never read
back out through :class:`Webhook`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, or_, select, update

from realtime.store.records import ApiKey, Tenant, iso, utcnow
from realtime.store.schema import api_keys, tenants, webhooks
from realtime.types import new_id

if TYPE_CHECKING:
    from realtime.store.store import Store

# A key's last use is written at most this often: a busy key must not cost a write a request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    tenant_id: str
    url: str
    events: list[str]
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "url": self.url,
            "events": list(self.events),
            "created_at": iso(self.created_at),
        }


_WEBHOOK_COLUMNS = [webhooks.c[n] for n in ("id", "tenant_id", "url", "events", "created_at")]
_KEY_COLUMNS = [c for c in api_keys.c if c.name != "key_hash"]


class TenancyStore:
    def __init__(self, store: Store) -> None:
        self.read = store.read
        self.write = store.write

    async def list_tenants(self) -> list[Tenant]:
        async with self.read() as conn:
            rows = await conn.execute(select(tenants).order_by(tenants.c.created_at, tenants.c.id))
            return [Tenant(**row._mapping) for row in rows]

    # -- API keys ----------------------------------------------------------------------------

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        """The tenant's keys, revoked ones included (with their ``revoked_at``), oldest first."""
        async with self.read() as conn:
            rows = await conn.execute(
                select(*_KEY_COLUMNS)
                .where(api_keys.c.tenant_id == tenant_id)
                .order_by(api_keys.c.created_at, api_keys.c.id)
            )
            return [ApiKey(**row._mapping) for row in rows]

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKey | None:
        """Revoke the tenant's key (once; revoking again changes nothing). None: no such key."""
        async with self.write() as conn:
            await conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == key_id,
                    api_keys.c.tenant_id == tenant_id,
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            row = (
                await conn.execute(
                    select(*_KEY_COLUMNS).where(
                        api_keys.c.id == key_id, api_keys.c.tenant_id == tenant_id
                    )
                )
            ).first()
        return ApiKey(**row._mapping) if row else None

    async def touch_key(self, key: ApiKey, now: datetime | None = None) -> None:
        """Record that ``key`` was used, unless that was recorded less than a minute ago."""
        now = now or utcnow()
        if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
            return
        async with self.write() as conn:
            await conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == key.id,
                    or_(
                        api_keys.c.last_used_at.is_(None),
                        api_keys.c.last_used_at < now - LAST_USED_RESOLUTION,
                    ),
                )
                .values(last_used_at=now)
            )

    # -- webhooks ----------------------------------------------------------------------------

    async def add_webhook(
        self, tenant_id: str, url: str, events: list[str], secret: str
    ) -> Webhook:
        hook = Webhook(new_id(), tenant_id, url, events, utcnow())
        async with self.write() as conn:
            await conn.execute(
                insert(webhooks).values(
                    id=hook.id,
                    tenant_id=tenant_id,
                    url=url,
                    events=events,
                    secret=secret,
                    created_at=hook.created_at,
                )
            )
        return hook

    async def list_webhooks(self, tenant_id: str) -> list[Webhook]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(*_WEBHOOK_COLUMNS)
                .where(webhooks.c.tenant_id == tenant_id)
                .order_by(webhooks.c.created_at, webhooks.c.id)
            )
            return [Webhook(**row._mapping) for row in rows]

    async def count_webhooks(self, tenant_id: str) -> int:
        async with self.read() as conn:
            query = select(func.count()).select_from(webhooks)
            return int(
                (await conn.execute(query.where(webhooks.c.tenant_id == tenant_id))).scalar_one()
            )

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        async with self.write() as conn:
            result = await conn.execute(
                delete(webhooks).where(
                    webhooks.c.id == webhook_id, webhooks.c.tenant_id == tenant_id
                )
            )
            return bool(result.rowcount)
