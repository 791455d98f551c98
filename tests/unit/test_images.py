"""Attached images: base64 decoded, bounded, and typed from their bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.errors import ProtocolError
from realtime.images import MAX_IMAGE_BYTES, MEDIA_TYPES, decode_image, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "kind"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]
)
def test_each_accepted_type_is_known_by_its_bytes(data: bytes, kind: str) -> None:
    assert sniff(data) == kind
    image = decode_image(b64(data), kind)
    assert (image.data, image.media_type) == (data, kind)
    assert decode_image(b64(data)).media_type == kind  # no declared type: the bytes say
    assert image.data_url().startswith(f"data:{kind};base64,")


def code_of(text: object, declared: object = None, **kwargs: int) -> str:
    with pytest.raises(ProtocolError) as refused:
        decode_image(text, declared, **kwargs)
    assert refused.value.status == 400
    return refused.value.code


def test_each_refusal_has_its_own_code() -> None:
    assert code_of("") == "image_invalid"
    assert code_of(12) == "image_invalid"
    assert code_of("not base64!") == "image_invalid"
    assert code_of(b64(PNG), "image/gif") == "image_type"
    assert code_of(b64(b"GIF89a" + b"\x00" * 20)) == "image_type"  # a GIF, by its bytes
    assert code_of(b64(b"<svg onload=alert(1)>"), "image/png") == "image_type"
    assert code_of(b64(PNG), "image/jpeg") == "image_type_mismatch"  # the claim is a lie


def test_the_size_is_of_the_decoded_bytes_and_checked_before_decoding() -> None:
    at_limit = PNG + b"\x00" * (1000 - len(PNG))
    assert len(decode_image(b64(at_limit), max_bytes=1000).data) == 1000
    assert code_of(b64(at_limit + b"\x00"), max_bytes=1000) == "image_too_large"
    # far over: refused from the text's length (no 40 MB decoded)
    assert code_of("A" * (MAX_IMAGE_BYTES * 8)) == "image_too_large"


@given(st.binary(max_size=64), st.sampled_from([None, *MEDIA_TYPES]))
def test_any_bytes_are_accepted_only_as_what_they_are(data: bytes, declared: str | None) -> None:
    try:
        image = decode_image(b64(data), declared)
    except ProtocolError as exc:
        assert exc.code in ("image_invalid", "image_type", "image_type_mismatch")
        return
    assert image.media_type == sniff(data) and image.data == data
    assert declared in (None, image.media_type)
