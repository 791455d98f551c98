"""Unique constraints, as the error a caller reports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import IntegrityError

from realtime.errors import Conflict


@contextlib.contextmanager
def duplicate_is(code: str, message: str) -> Iterator[None]:
    """Turn a unique-constraint violation (two identical creations at once) into Conflict."""
    try:
        yield
    except IntegrityError:
        raise Conflict(code, message) from None
