"""Unique constraints, as the error a caller reports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from realtime.errors import Conflict


@contextlib.contextmanager
def duplicate_is(code: str, message: str) -> Iterator[None]:
    """Turn a unique-constraint violation (two identical creations at once) into Conflict."""
    try:
        yield
    except IntegrityError:
        raise Conflict(code, message) from None


def insert_ignoring_duplicates(conn: AsyncConnection, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect: a row that a
    concurrent transaction inserted first is kept, and nothing fails."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
