"""Signed context envelopes (realtime.envelopes): the exact format of contracts.md §2, the
verification order, and that no change to a token gets through."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from realtime import envelopes
from realtime.envelopes import (
    Envelope,
    EnvelopeChannel,
    EnvelopeError,
    EnvelopeExpired,
    EnvelopeInvalid,
    EnvelopeMalformed,
    EnvelopeTampered,
    EnvelopeVersion,
    mint,
    mint_request,
    unverified_tenant,
    verify,
)
from realtime.errors import Forbidden, ProtocolError

SECRET = "tenant-signing-secret"
NOW = 1_700_000_000


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(body_json: str, secret: str = SECRET) -> str:
    """A token built by hand, independently of the module: what the Laravel package does."""
    encoded = b64url(body_json.encode())
    mac = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{b64url(mac)}"


def signed(body: dict[str, Any], secret: str = SECRET) -> str:
    return sign(json.dumps(body, separators=(",", ":")), secret)


def good_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "u": "42",
        "r": "orders.show",
        "c": "shop",
        "e": NOW + 900,
        "p": {"order_id": 7},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


# -- the format ---------------------------------------------------------------------------


def test_mint_is_exactly_the_documented_encoding() -> None:
    token = mint(
        SECRET,
        user="42",
        route="orders.show",
        channel="shop",
        context={"order_id": 7, "path": "/orders/7", "name": "Zoë"},
        now=NOW,
        g="Hi there",
        pr="Be brief.",
        t=["lookup_order"],
    )
    # Written by hand: compact, keys in the package's order, "/" as is, non-ASCII escaped.
    body = (
        '{"v":1,"u":"42","r":"orders.show","c":"shop","e":1700000900,'
        '"p":{"order_id":7,"path":"/orders/7","name":"Zo\\u00eb"},'
        '"g":"Hi there","pr":"Be brief.","t":["lookup_order"]}'
    )
    assert token == sign(body)
    assert "=" not in token and token.count(".") == 1


def test_tenant_key_k_is_minted_last_and_left_out_for_default() -> None:
    kwargs: dict[str, Any] = {"user": None, "route": "r", "channel": "c", "context": {}, "now": 0}
    acme = mint(SECRET, tenant="acme", **kwargs)
    assert acme == sign('{"v":1,"u":null,"r":"r","c":"c","e":900,"p":{},"k":"acme"}')
    assert mint(SECRET, tenant="default", **kwargs) == mint(SECRET, **kwargs)
    assert mint(SECRET, **kwargs) == sign('{"v":1,"u":null,"r":"r","c":"c","e":900,"p":{}}')


def test_round_trip_keeps_every_field() -> None:
    token = mint(
        SECRET,
        user="u-1",
        route="checkout",
        channel="shop",
        context={"cart": [1, 2], "total": 9.5},
        ttl=60,
        now=NOW,
        tenant="acme",
        g="Hello",
        pr="Prompt",
        s="Summary",
        t=["a", "b"],
        x=["dom"],
        xt=250,
        xc=4096,
    )
    envelope = verify(token, SECRET, now=NOW + 60, channel="shop")
    assert envelope == Envelope(
        user="u-1",
        route="checkout",
        channel="shop",
        expires=NOW + 60,
        context={"cart": [1, 2], "total": 9.5},
        version=1,
        greeting="Hello",
        prompt="Prompt",
        summary="Summary",
        tools=("a", "b"),
        extractors=("dom",),
        extractor_timeout_ms=250,
        extractor_size_cap=4096,
        tenant="acme",
    )
    assert envelope.to_body() == json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


def test_a_token_of_the_laravel_package_verifies() -> None:
    # PHP's json_encode writes an empty context as [], and escapes non-ASCII.
    token = sign(
        '{"v":1,"u":null,"r":"home","c":"shop","e":1700000900,"p":[],"g":"Merhaba \\u00e7"}'
    )
    envelope = verify(token, SECRET, now=NOW)
    assert envelope.context == {} and envelope.user is None and envelope.greeting == "Merhaba ç"


def test_context_hash_is_sha256_of_the_canonical_context() -> None:
    one = verify(signed(good_body(p={"b": 1, "a": "é"})), SECRET, now=NOW)
    two = verify(signed(good_body(p={"a": "é", "b": 1})), SECRET, now=NOW)
    canonical = '{"a":"é","b":1}'.encode()
    assert one.context_hash == two.context_hash == hashlib.sha256(canonical).hexdigest()
    other = verify(signed(good_body(p={"a": "é", "b": 2})), SECRET, now=NOW)
    assert other.context_hash != one.context_hash


# -- each failure, its own error ----------------------------------------------------------


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "..", "a.b.c.d", "x" * 40000])
def test_malformed(token: str) -> None:
    with pytest.raises(EnvelopeMalformed) as caught:
        verify(token, SECRET, now=NOW)
    assert caught.value.code == "envelope_malformed"


@pytest.mark.parametrize("body", ["not base64!", "bm90IGpzb24", "WzFd", "", "eyJ2Ijox"])
def test_a_signed_body_that_is_not_a_json_object_is_malformed(body: str) -> None:
    # bm90IGpzb24 = "not json"; WzFd = "[1]"; eyJ2Ijox = '{"v":1' (cut short)
    mac = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
    with pytest.raises(EnvelopeMalformed):
        verify(f"{body}.{b64url(mac)}", SECRET, now=NOW)


def test_tampered() -> None:
    token = signed(good_body())
    body, signature = token.split(".")
    changed = signed(good_body(u="43")).split(".")[0]
    for bad in (
        f"{changed}.{signature}",  # another body under the same signature
        f"{body}.{signature[:-1]}",  # a signature cut short
        f"{body}.{signature}=",  # padded: not the canonical encoding
        f"{body}.",
        f"{body}.{b64url(b'x' * 32)}",
    ):
        with pytest.raises(EnvelopeTampered) as caught:
            verify(bad, SECRET, now=NOW)
        assert caught.value.code == "envelope_tampered"


def test_another_tenants_secret_does_not_verify() -> None:
    token = mint(SECRET, user="42", route="r", channel="shop", context={}, tenant="acme")
    assert unverified_tenant(token) == "acme"  # which secret to try, and nothing more
    with pytest.raises(EnvelopeTampered):
        verify(token, "the-secret-of-tenant-default")
    with pytest.raises(EnvelopeTampered):
        verify(token, SECRET.encode() + b"x")
    assert verify(token, SECRET.encode()).tenant == "acme"  # bytes or str: the same key


@pytest.mark.parametrize(
    "changes",
    [
        {"v": ...},
        {"u": ...},
        {"r": ...},
        {"c": ...},
        {"e": ...},
        {"p": ...},
        {"v": "1"},
        {"v": True},
        {"v": 1.0},
        {"u": 42},
        {"u": ["42"]},
        {"r": None},
        {"r": 1},
        {"c": None},
        {"c": ["shop"]},
        {"e": "1700000900"},
        {"e": 1700000900.5},
        {"e": None},
        {"e": False},
        {"p": "ctx"},
        {"p": [1]},
        {"p": None},
        {"g": 1},
        {"pr": {}},
        {"s": False},
        {"t": "lookup_order"},
        {"t": [1]},
        {"x": {"a": 1}},
        {"xt": "250"},
        {"xt": -1},
        {"xc": 1.5},
        {"xc": True},
        {"k": 7},
    ],
)
def test_invalid_types(changes: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeInvalid) as caught:
        verify(signed(good_body(**changes)), SECRET, now=NOW)
    assert caught.value.code == "envelope_invalid"


def test_null_optional_keys_and_unknown_keys_are_accepted() -> None:
    body = good_body(g=None, pr=None, s=None, t=None, x=None, xt=None, xc=None, k=None, z=[1])
    envelope = verify(signed(body), SECRET, now=NOW)
    assert envelope.tools is None and envelope.tenant is None and envelope.greeting is None


@pytest.mark.parametrize("version", [0, 2, -1, 10**6])
def test_wrong_version(version: int) -> None:
    with pytest.raises(EnvelopeVersion) as caught:
        verify(signed(good_body(v=version)), SECRET, now=NOW)
    assert caught.value.code == "envelope_version"


def test_expired() -> None:
    token = signed(good_body(e=NOW))
    assert verify(token, SECRET, now=NOW).expires == NOW  # e >= now is still valid
    with pytest.raises(EnvelopeExpired) as caught:
        verify(token, SECRET, now=NOW + 1)
    assert caught.value.code == "envelope_expired"
    with pytest.raises(EnvelopeExpired):
        verify(mint(SECRET, user="1", route="r", channel="c", context={}, ttl=1, now=0), SECRET)


def test_wrong_channel() -> None:
    token = signed(good_body())
    assert verify(token, SECRET, now=NOW, channel="shop").channel == "shop"
    with pytest.raises(EnvelopeChannel) as caught:
        verify(token, SECRET, now=NOW, channel="support")
    assert caught.value.code == "envelope_channel"


def test_the_documented_order() -> None:
    # parts before signature; signature before body; types before version; version before
    # expiry; expiry before channel.
    with pytest.raises(EnvelopeMalformed):
        verify("a.b.c", SECRET, now=NOW)
    with pytest.raises(EnvelopeTampered):
        verify(signed({"v": "x"}, "another-secret"), SECRET, now=NOW)
    with pytest.raises(EnvelopeInvalid):
        verify(signed(good_body(v=2, e="soon")), SECRET, now=NOW)
    with pytest.raises(EnvelopeVersion):
        verify(signed(good_body(v=2, e=0)), SECRET, now=NOW, channel="x")
    with pytest.raises(EnvelopeExpired):
        verify(signed(good_body(e=0)), SECRET, now=NOW, channel="x")


def test_every_failure_is_a_403_with_a_distinct_code() -> None:
    kinds = [
        EnvelopeMalformed,
        EnvelopeTampered,
        EnvelopeInvalid,
        EnvelopeVersion,
        EnvelopeExpired,
        EnvelopeChannel,
    ]
    codes = {kind.code for kind in kinds}
    assert len(codes) == len(kinds) and all(code.startswith("envelope_") for code in codes)
    for kind in kinds:
        error = kind("why")
        assert isinstance(error, EnvelopeError) and isinstance(error, Forbidden)
        assert error.status == 403 and error.to_dict() == {"code": kind.code, "message": "why"}


# -- no change gets through ---------------------------------------------------------------

texts = st.text(max_size=40)
contexts = st.dictionaries(
    st.text(max_size=10),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), texts),
    max_size=5,
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    return mint(
        SECRET,
        user=draw(st.one_of(st.none(), texts)),
        route=draw(texts),
        channel=draw(texts),
        context=draw(contexts),
        ttl=draw(st.integers(1, 10**6)),
        now=NOW,
        tenant=draw(st.one_of(st.none(), st.text(min_size=1, max_size=10))),
        pr=draw(st.one_of(st.none(), texts)),
        t=draw(st.one_of(st.none(), st.lists(texts, max_size=3))),
    )


@given(tokens(), st.sampled_from(["replace", "insert", "delete"]), st.data())
def test_any_single_character_change_is_rejected(
    token: str, edit: str, data: st.DataObject
) -> None:
    assert verify(token, SECRET, now=NOW)  # the original is good
    at = data.draw(st.integers(0, len(token) - (0 if edit == "insert" else 1)))
    char = data.draw(st.characters(exclude_categories=()) | st.sampled_from("._-=+/A0a \x00"))
    if edit == "replace":
        assume(token[at] != char)
        changed = token[:at] + char + token[at + 1 :]
    elif edit == "insert":
        changed = token[:at] + char + token[at:]
    else:
        changed = token[:at] + token[at + 1 :]
    with pytest.raises(EnvelopeError):  # and nothing but the typed errors
        verify(changed, SECRET, now=NOW)


@given(tokens(), st.data())
def test_any_single_byte_change_is_rejected(token: str, data: st.DataObject) -> None:
    raw = bytearray(token.encode())
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    raw[at] = byte
    with pytest.raises(EnvelopeError):
        verify(raw.decode("utf-8", "surrogateescape"), SECRET, now=NOW)


@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,50}"))
def test_arbitrary_text_is_refused_with_a_typed_error(text: str) -> None:
    with pytest.raises(EnvelopeError):
        verify(text, SECRET, now=NOW)
    assert unverified_tenant(text) is None or isinstance(unverified_tenant(text), str)


def test_unverified_tenant_never_raises() -> None:
    assert unverified_tenant(None) is None
    assert unverified_tenant("") is None
    assert unverified_tenant("!!!.x") is None
    assert unverified_tenant(signed(good_body(k=""))) is None
    assert unverified_tenant(signed(good_body(k=["acme"]))) is None
    assert unverified_tenant(signed(good_body(k="acme")) + ".x") == "acme"  # read, not trusted


# -- minting: what it refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"ttl": True},
        {"user": 42},
        {"context": [1]},
        {"context": {"x": float("nan")}},
        {"context": {"x": "\ud800"}},
        {"t": "a"},
        {"xt": -5},
        {"k": "acme"},  # the tenant argument, not a key
        {"zz": 1},
        {"context": {"big": "x" * 40000}},
    ],
)
def test_mint_refuses_what_the_format_cannot_carry(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"user": "1", "route": "r", "channel": "c", "context": {}}
    args.update(kwargs)
    with pytest.raises(ValueError):
        mint(SECRET, **args)


def test_mint_request_checks_the_admin_body() -> None:
    request = mint_request({"channel": "shop", "user": "42", "context": {"a": 1}, "pr": "x"})
    assert (request.user, request.route, request.ttl) == ("42", "", envelopes.DEFAULT_TTL)
    minted = request.mint(SECRET, tenant="default", now=NOW)
    assert minted["expires_at"] == "2023-11-14T22:28:20.000Z"  # NOW + 900
    envelope = verify(minted["signed_context"], SECRET, now=NOW)
    assert envelope.prompt == "x" and envelope.tenant is None
    assert mint_request({"channel": "shop"}).user is None  # a guest
    for body in (
        {},
        {"channel": 1},
        {"channel": "shop", "user": ""},
        {"channel": "shop", "user": "u" * 257},
        {"channel": "shop", "user": 42},
        {"channel": "shop", "route": 5},
        {"channel": "shop", "context": [1]},
        {"channel": "shop", "ttl": 0},
        {"channel": "shop", "ttl": 86401},
        {"channel": "shop", "ttl": "60"},
        {"channel": "shop", "t": "a"},
        {"channel": "shop", "xc": -1},
        {"channel": "shop", "k": "acme"},
        {"channel": "shop", "secret": "x"},
    ):
        with pytest.raises(ProtocolError) as caught:
            mint_request(body)
        assert caught.value.status == 400, body
    with pytest.raises(ProtocolError):
        mint_request({"channel": "shop", "context": {"x": "y" * 40000}}).mint(SECRET, tenant=None)
