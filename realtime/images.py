"""Images that visitors attach: decoded, bounded and typed from their bytes (pure).

A client's declared type is a claim; the bytes decide. Only JPEG, PNG and WebP are accepted,
at most :data:`MAX_IMAGE_BYTES` decoded, and the base64 text is measured before it is
decoded, so an oversized upload costs no memory beyond its own text. Every refusal is a
:class:`~realtime.errors.ProtocolError` (400) with its own code.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from realtime.errors import ProtocolError

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")


@dataclass(frozen=True, slots=True)
class Image:
    data: bytes
    media_type: str

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"


def sniff(data: bytes) -> str | None:
    """The media type the bytes are, among :data:`MEDIA_TYPES`, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_image(
    text: object, declared: object = None, *, max_bytes: int = MAX_IMAGE_BYTES
) -> Image:
    """Base64 ``text`` (no ``data:`` prefix) as an :class:`Image`.

    ``declared``, when given, must be one of :data:`MEDIA_TYPES` and what the bytes are.
    Codes: ``image_invalid`` (not a base64 string, or empty), ``image_too_large``,
    ``image_type`` (a type that is not accepted, or bytes that are no accepted image),
    ``image_type_mismatch`` (the declared type is not what the bytes are).
    """
    if not isinstance(text, str) or not text:
        raise ProtocolError("image_invalid", "the image must be a non-empty base64 string")
    if declared is not None and declared not in MEDIA_TYPES:
        raise ProtocolError("image_type", f"the image type must be one of {', '.join(MEDIA_TYPES)}")
    compact = "".join(text.split()) if any(c.isspace() for c in text[:200]) else text
    if len(compact) > (max_bytes + 2) // 3 * 4:
        raise ProtocolError("image_too_large", f"images are limited to {max_bytes} bytes")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("image_invalid", "the image is not valid base64") from None
    if not data:
        raise ProtocolError("image_invalid", "the image is empty")
    if len(data) > max_bytes:
        raise ProtocolError("image_too_large", f"images are limited to {max_bytes} bytes")
    kind = sniff(data)
    if kind is None:
        raise ProtocolError("image_type", "the bytes are not a JPEG, PNG or WebP image")
    if declared is not None and declared != kind:
        raise ProtocolError(
            "image_type_mismatch", f"the image was declared {declared} but is {kind}"
        )
    return Image(data, kind)
