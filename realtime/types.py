"""Small value types shared by every layer: ids and identities."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal, NewType

TenantId = NewType("TenantId", str)
BotUuid = NewType("BotUuid", str)
ConversationId = NewType("ConversationId", str)
MessageId = NewType("MessageId", str)
RunId = NewType("RunId", str)

IdentityKind = Literal["session", "user", "visitor", "key"]
Role = Literal["user", "assistant", "agent", "system"]

SLUG_RE = re.compile(r"^[A-Za-z0-9_-]{3,50}$")


def new_id() -> str:
    """A fresh random UUID as a string: every public id is one."""
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


@dataclass(frozen=True, slots=True)
class Identity:
    """Who speaks for a visitor (DECISIONS 2): one owner of a conversation.

    ``kind`` is ``session`` (anonymous id chosen by the client), ``user`` (an id vouched
    for by an API key or a signed envelope), ``visitor`` (BotPlot) or ``key`` (an API-key
    client acting for itself).
    """

    tenant: str
    kind: IdentityKind
    value: str

    @property
    def key(self) -> str:
        """A stable string form, used for ownership columns and idempotency keys."""
        return f"{self.kind}:{self.value}"
