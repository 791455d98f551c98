"""Signed context envelopes: the ``signed_context`` token of the Laravel chatbot package.

A host application (its server side, which knows who is logged in) mints an envelope and
puts it in the page; the visitor's client presents it to us (``/ws`` ``hello``, later the
``/chatbot`` and ``/botovis`` dialects). We trust what it says because it is signed with
the tenant's signing secret. Pure functions, no I/O; the format is exactly the one of
``contracts.md`` §2 (``src/Envelopes/ContextEnvelope.php`` of ``aanfarhan/laravel-chatbot``)::

    token = b64url(body) "." b64url(HMAC-SHA256(key=secret, msg=b64url(body)))

``b64url`` is base64url without ``=`` padding; ``body`` is the compact JSON object (no
whitespace, non-ASCII escaped as ``\\uXXXX``, ``/`` not escaped: PHP's ``json_encode`` with
``JSON_UNESCAPED_SLASHES``) with the keys, in this order:

=====  =================================  ==========================================
key    meaning                            type
=====  =================================  ==========================================
``v``  version                            ``1``
``u``  user id (identity kind ``user``)   string, or ``null`` for a guest
``r``  route name (stored on messages)    string
``c``  channel: the bot's slug            string
``e``  expiry, unix seconds               integer (mint time + ``ttl``, 900 s default)
``p``  page context (reaches the model)   object (``[]``, PHP's empty map, reads as ``{}``)
``g``  greeting (optional)                string
``pr`` prompt (optional; reaches model)   string
``s``  summary (optional)                 string
``t``  tool allowlist (optional)          list of strings
``x``  client extractor allowlist (opt.)  list of strings
``xt`` extractor timeout in ms (opt.)     integer >= 0
``xc`` extractor size cap, bytes (opt.)   integer >= 0
``k``  tenant id (optional; ours)         string; absent: the ``default`` tenant
=====  =================================  ==========================================

An optional key that is ``null`` counts as absent; unknown keys are ignored (the token is
signed, so they come from the secret's holder). :func:`verify` checks, in the documented
order, each failure its own error (all ``403``, a :class:`~realtime.errors.Forbidden`):

1. exactly two ``.``-separated parts                        → :class:`EnvelopeMalformed`
2. the signature, compared in constant time                 → :class:`EnvelopeTampered`
3. the body: base64url of a JSON object                     → :class:`EnvelopeMalformed`;
   with the right type for every key above                  → :class:`EnvelopeInvalid`
4. ``v == 1``                                               → :class:`EnvelopeVersion`
5. ``e >= now``                                             → :class:`EnvelopeExpired`
6. ``c`` equals the expected channel, when one is given     → :class:`EnvelopeChannel`

The signature is checked before the body is even decoded, so a body we read was written by
the secret's holder; steps 3-4 only catch a buggy minter. The signature is compared as the
encoded string, so a non-canonical encoding of the right bytes is tampering too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from realtime.errors import Forbidden, ProtocolError

VERSION = 1
DEFAULT_TTL = 900  # seconds, as the Laravel package mints them
MAX_REQUEST_TTL = 86400  # what the admin API mints at most
DEFAULT_TENANT = "default"  # an envelope without ``k`` is the default tenant's (DECISIONS 4)
MAX_USER_CHARS = 256  # ``u`` becomes an identity (as long as a ``session_id`` may be)
MAX_TOKEN_CHARS = 32768  # longer is malformed before any work is done

OPTIONAL_STRINGS = ("g", "pr", "s", "k")
OPTIONAL_LISTS = ("t", "x")
OPTIONAL_INTS = ("xt", "xc")
OPTIONAL_KEYS = ("g", "pr", "s", "t", "x", "xt", "xc", "k")  # in the order they are minted

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


# -- errors -------------------------------------------------------------------------------


class EnvelopeError(Forbidden):
    """Why a ``signed_context`` was refused. Every subclass is a 403 with its own code."""

    code = "invalid_envelope"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(None, message)


class EnvelopeMalformed(EnvelopeError):
    """Not the shape of a token: not two parts, or a signed body that is not base64url JSON."""

    code = "envelope_malformed"


class EnvelopeTampered(EnvelopeError):
    """The signature does not match (or the tenant the token names has no secret)."""

    code = "envelope_tampered"


class EnvelopeInvalid(EnvelopeError):
    """A signed body whose keys are missing or have the wrong types."""

    code = "envelope_invalid"


class EnvelopeVersion(EnvelopeError):
    """``v`` is not 1 (the Laravel package's ``MismatchedEnvelopeException``)."""

    code = "envelope_version"


class EnvelopeExpired(EnvelopeError):
    code = "envelope_expired"


class EnvelopeChannel(EnvelopeError):
    """The token is for another channel (bot) than the one asked for."""

    code = "envelope_channel"


# -- the envelope -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A verified envelope. Attribute names are long; the wire keys are in brackets."""

    user: str | None  # [u] None: a guest
    route: str  # [r]
    channel: str  # [c] the bot's slug
    expires: int  # [e] unix seconds
    context: dict[str, Any] = field(default_factory=dict)  # [p]
    version: int = VERSION  # [v]
    greeting: str | None = None  # [g]
    prompt: str | None = None  # [pr]
    summary: str | None = None  # [s]
    tools: tuple[str, ...] | None = None  # [t] None: no allowlist (the bot's tools)
    extractors: tuple[str, ...] | None = None  # [x]
    extractor_timeout_ms: int | None = None  # [xt]
    extractor_size_cap: int | None = None  # [xc]
    tenant: str | None = None  # [k] None: the default tenant

    @property
    def context_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of ``p``: keys sorted, no whitespace
        (``separators=(",", ":")``), non-ASCII written as itself, UTF-8 encoded. Equal page
        contexts hash equally whatever their key order; stored on messages."""
        canonical = json.dumps(
            self.context, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()

    def to_body(self) -> dict[str, Any]:
        """The JSON body, keys in the order the Laravel package mints them (then ``k``)."""
        body: dict[str, Any] = {
            "v": self.version,
            "u": self.user,
            "r": self.route,
            "c": self.channel,
            "e": self.expires,
            "p": self.context,
        }
        optional: dict[str, Any] = {
            "g": self.greeting,
            "pr": self.prompt,
            "s": self.summary,
            "t": list(self.tools) if self.tools is not None else None,
            "x": list(self.extractors) if self.extractors is not None else None,
            "xt": self.extractor_timeout_ms,
            "xc": self.extractor_size_cap,
            "k": self.tenant,
        }
        body.update((key, value) for key, value in optional.items() if value is not None)
        return body


# -- minting ------------------------------------------------------------------------------


def mint(
    secret: str | bytes,
    *,
    user: str | None,
    route: str,
    channel: str,
    context: Mapping[str, Any],
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
    tenant: str | None = None,
    **optional: Any,
) -> str:
    """A signed token: ``e`` is ``now`` (default: the clock, in whole seconds) + ``ttl``.

    ``optional`` takes the wire keys ``g``, ``pr``, ``s``, ``t``, ``x``, ``xt``, ``xc``
    (``None`` leaves a key out; an empty list stays in); ``tenant`` is ``k``, left out for
    None and ``default`` (so a default tenant's token is byte for byte what the Laravel
    package mints). Raises ``ValueError`` (naming the wire key) for a value the format
    cannot carry, or when the token would be over :data:`MAX_TOKEN_CHARS`.
    """
    unknown = sorted(key for key in optional if key not in OPTIONAL_KEYS or key == "k")
    if unknown:  # (``k`` is the ``tenant`` argument)
        raise ValueError(f"unknown envelope key(s): {', '.join(unknown)}")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError("'ttl' must be a positive integer (seconds)")
    issued = int(time.time() if now is None else now)
    body: dict[str, Any] = {
        "v": VERSION,
        "u": user,
        "r": route,
        "c": channel,
        "e": issued + ttl,
        "p": dict(context) if isinstance(context, Mapping) else context,
    }
    for key in OPTIONAL_KEYS:
        value = (None if tenant == DEFAULT_TENANT else tenant) if key == "k" else optional.get(key)
        if value is not None:
            body[key] = list(value) if key in OPTIONAL_LISTS and _is_list(value) else value
    try:
        _envelope(body)
    except EnvelopeInvalid as exc:
        raise ValueError(exc.message) from None
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        orjson.loads(text)  # what verify will read: no lone surrogate, no NaN
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the envelope is not JSON: {exc}") from None
    encoded = _b64encode(text.encode("ascii"))
    token = f"{encoded}.{_signature(_key(secret), encoded)}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"the envelope is over {MAX_TOKEN_CHARS} characters: send less context")
    return token


@dataclass(frozen=True, slots=True)
class MintRequest:
    """What the admin API (``POST /admin/v1/tenants/{tenant}/envelopes``) and the CLI ask to
    mint, checked: see :func:`mint_request`."""

    user: str | None
    route: str
    channel: str
    context: dict[str, Any]
    ttl: int
    optional: dict[str, Any]  # wire keys g, pr, s, t, x, xt, xc that are set

    def mint(
        self, secret: str | bytes, *, tenant: str | None, now: float | None = None
    ) -> dict[str, Any]:
        """``{"signed_context", "expires_at"}``; ProtocolError when it cannot be minted."""
        issued = int(time.time() if now is None else now)
        try:
            token = mint(
                secret,
                user=self.user,
                route=self.route,
                channel=self.channel,
                context=self.context,
                ttl=self.ttl,
                now=issued,
                tenant=tenant,
                **self.optional,
            )
        except ValueError as exc:
            raise ProtocolError("invalid_field", str(exc)) from None
        expires = datetime.fromtimestamp(issued + self.ttl, UTC)
        return {"signed_context": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


REQUEST_FIELDS = ("user", "route", "channel", "context", "ttl", *OPTIONAL_KEYS[:-1])


def mint_request(body: Mapping[str, Any]) -> MintRequest:
    """Check a request to mint: ``channel`` (a bot id) is required; ``user`` (1..256
    characters; null or absent: a guest), ``route`` (default ``""``), ``context`` (an
    object, default ``{}``), ``ttl`` (1..86400 s, default 900) and the wire keys ``g``,
    ``pr``, ``s`` (strings), ``t``, ``x`` (lists of strings), ``xt``, ``xc`` (integers >= 0)
    are optional. Anything else, or a wrong type, is ProtocolError (400)."""
    unknown = sorted(str(key) for key in body if key not in REQUEST_FIELDS)
    if unknown:
        raise ProtocolError("invalid_field", f"unknown field(s): {', '.join(unknown)[:200]}")
    channel = body.get("channel")
    if channel is None:
        raise ProtocolError("missing_field", "'channel' (the bot's id) is required")
    if not isinstance(channel, str) or not 1 <= len(channel) <= 120:
        raise ProtocolError("invalid_field", "'channel' must be a bot id")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_CHARS):
        raise ProtocolError(
            "invalid_field", f"'user' must be 1..{MAX_USER_CHARS} characters, or null for a guest"
        )
    route = body.get("route")
    route = "" if route is None else route
    if not isinstance(route, str) or len(route) > 300:
        raise ProtocolError("invalid_field", "'route' must be a string of at most 300 characters")
    context = body.get("context")
    context = {} if context is None else context
    if not isinstance(context, dict):
        raise ProtocolError("invalid_field", "'context' must be a JSON object")
    ttl = body.get("ttl")
    ttl = DEFAULT_TTL if ttl is None else ttl
    if not _is_int(ttl) or not 1 <= ttl <= MAX_REQUEST_TTL:
        raise ProtocolError(
            "invalid_field", f"'ttl' must be an integer from 1 to {MAX_REQUEST_TTL}"
        )
    optional = {key: body[key] for key in OPTIONAL_KEYS[:-1] if body.get(key) is not None}
    probe = {"v": VERSION, "u": user, "r": route, "c": channel, "e": 0, "p": context, **optional}
    try:
        _envelope(probe)
    except EnvelopeInvalid as exc:
        raise ProtocolError("invalid_field", exc.message.replace("the envelope's ", "")) from None
    return MintRequest(user, route, channel, context, ttl, optional)


# -- verifying ----------------------------------------------------------------------------


def verify(
    token: str, secret: str | bytes, *, now: float | None = None, channel: str | None = None
) -> Envelope:
    """The envelope ``token`` carries, checked in the documented order (module docstring);
    raises a subclass of :class:`EnvelopeError` and nothing else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise EnvelopeMalformed("'signed_context' is not an envelope token")
    parts = token.split(".")
    if len(parts) != 2:
        raise EnvelopeMalformed("'signed_context' is not an envelope token")
    encoded, signature = parts
    expected = _signature(_key(secret), encoded).encode("ascii")
    if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
        raise EnvelopeTampered("the envelope's signature does not match")
    body = _decode_body(encoded)
    if body is None:
        raise EnvelopeMalformed("the envelope's body is not a base64url JSON object")
    envelope = _envelope(body)
    if envelope.version != VERSION:
        raise EnvelopeVersion(f"envelope version {envelope.version} is not supported")
    if envelope.expires < (int(time.time()) if now is None else now):
        raise EnvelopeExpired("the envelope has expired")
    if channel is not None and envelope.channel != channel:
        raise EnvelopeChannel("the envelope is for another channel")
    return envelope


def unverified_tenant(token: Any) -> str | None:
    """The tenant (``k``) a token names, read WITHOUT checking anything: only to choose
    whose secret to verify it with. None when it names none or cannot be read. Never raises.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return None
    encoded = token.split(".", 1)[0]
    body = _decode_body(encoded)
    tenant = body.get("k") if body is not None else None
    return tenant if isinstance(tenant, str) and tenant else None


# -- helpers ------------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _signature(key: bytes, encoded: str) -> str:
    mac = hmac.new(key, encoded.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return _b64encode(mac.digest())


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_body(encoded: str) -> dict[str, Any] | None:
    """The JSON object a base64url body holds, or None."""
    if not _B64URL_RE.fullmatch(encoded):
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        body = orjson.loads(raw)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        return None
    return body if isinstance(body, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _envelope(body: dict[str, Any]) -> Envelope:
    """Check the type of every known key; EnvelopeInvalid names the first wrong one."""

    def invalid(key: str, what: str) -> EnvelopeInvalid:
        return EnvelopeInvalid(f"the envelope's '{key}' must be {what}")

    for key in ("v", "u", "r", "c", "e", "p"):
        if key not in body:
            raise EnvelopeInvalid(f"the envelope has no '{key}'")
    if not _is_int(body["v"]):
        raise invalid("v", "an integer")
    user = body["u"]
    if user is not None and not isinstance(user, str):
        raise invalid("u", "a string or null")
    for key in ("r", "c"):
        if not isinstance(body[key], str):
            raise invalid(key, "a string")
    if not _is_int(body["e"]):
        raise invalid("e", "an integer (unix seconds)")
    context = body["p"]
    if context == []:  # PHP's json_encode writes an empty map as []
        context = {}
    if not isinstance(context, dict):
        raise invalid("p", "an object")
    for key in OPTIONAL_STRINGS:
        if body.get(key) is not None and not isinstance(body[key], str):
            raise invalid(key, "a string")
    for key in OPTIONAL_LISTS:
        value = body.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise invalid(key, "a list of strings")
    for key in OPTIONAL_INTS:
        value = body.get(key)
        if value is not None and (not _is_int(value) or value < 0):
            raise invalid(key, "a non-negative integer")
    tools, extractors = body.get("t"), body.get("x")
    return Envelope(
        user=user,
        route=body["r"],
        channel=body["c"],
        expires=body["e"],
        context=context,
        version=body["v"],
        greeting=body.get("g"),
        prompt=body.get("pr"),
        summary=body.get("s"),
        tools=tuple(tools) if tools is not None else None,
        extractors=tuple(extractors) if extractors is not None else None,
        extractor_timeout_ms=body.get("xt"),
        extractor_size_cap=body.get("xc"),
        tenant=body.get("k") or None,
    )
