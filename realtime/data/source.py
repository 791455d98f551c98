"""Data sources: a bot's SQL database, introspected once, queried through checked statements.

A bot's ``data_source`` setting is ``{"url": <SQLAlchemy URL>, "tables": {name: actions}}``,
with an optional ``"schema"``: the database schema the tables are in (PostgreSQL; without it,
the connection's default). Every statement then names the schema.
:class:`DataSources` keeps one async engine per URL and one introspected schema per
(URL, permissions). :meth:`DataSource.run` executes a :class:`~realtime.data.query.Query` and
returns an observation for the model; database errors become observations too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from realtime.data.query import Query, build
from realtime.data.schema import DataSchema, introspect, parse_permissions
from realtime.errors import ProtocolError
from realtime.store import async_url

log = logging.getLogger("realtime.data")

OBSERVATION_CHARS = 6000
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class Outcome:
    observation: str
    ok: bool = True


def validate_data_source(value: Any) -> dict[str, Any] | None:
    """Check a bot's ``data_source`` setting (URL and permissions); None clears it."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ProtocolError("invalid_field", "data_source must be an object or null")
    url = value.get("url")
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise ProtocolError("invalid_field", "data_source.url must be a database URL")
    try:
        sa.engine.make_url(async_url(url))
    except sa.exc.ArgumentError:
        raise ProtocolError(
            "invalid_field", "data_source.url is not a valid database URL"
        ) from None
    parse_permissions(value.get("tables"))
    schema = value.get("schema")
    if schema is None:
        return {"url": url, "tables": value["tables"]}
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ProtocolError(
            "invalid_field",
            "data_source.schema must be a schema name (letters, digits and _, at most 63)",
        )
    return {"url": url, "schema": schema, "tables": value["tables"]}


class DataSource:
    def __init__(self, engine: AsyncEngine, schema: DataSchema) -> None:
        self.engine = engine
        self.schema = schema

    def check(self, tool: str, params: Any) -> Query:
        """Validate a call without running it (raises ToolArgumentError)."""
        return build(tool, self.schema, params)

    async def run(self, tool: str, params: Any) -> Outcome:
        query = build(tool, self.schema, params)
        try:
            # Shielded: a cancelled run finishes its query (the driver strands connections
            # cancelled mid-query); a write, once started, completes or fails as a whole.
            with anyio.CancelScope(shield=True):
                if tool in ("create_record", "update_record", "delete_record"):
                    async with self.engine.begin() as conn:
                        outcome = await _write(conn, query)
                else:
                    async with self.engine.connect() as conn:
                        outcome = await _read(conn, query)
            return outcome
        except SQLAlchemyError as exc:
            message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            log.info("data tool %s failed: %s", tool, message)
            return Outcome(f"error: the database refused this: {message[:300]}", ok=False)


async def _read(conn: Any, query: Query) -> Outcome:
    result = await conn.execute(query.statement)
    if query.tool == "count_records":
        return Outcome(f"Count: {result.scalar_one()}")
    rows = [row._asdict() for row in result]
    if query.tool == "aggregate":
        return Outcome("Results: " + _json(rows))
    shown = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
    if len(rows) == query.limit and query.tool == "search_records":
        shown += f" (the first {query.limit}; narrow the filters or page with offset)"
    return Outcome(f"{query.table.name}: {shown}: " + _json(rows))


async def _write(conn: Any, query: Query) -> Outcome:
    table = query.table
    result = await conn.execute(query.statement)
    if query.tool == "create_record":
        key = result.inserted_primary_key
        record_id = key[0] if key else None
        row = None
        if record_id is not None and table.primary_key is not None:
            found = await conn.execute(
                sa.select(table.table).where(table.table.c[table.primary_key] == record_id)
            )
            row = found.first()
        body = _json(row._asdict()) if row is not None else _json(query.data)
        return Outcome(f"Created {table.name} #{record_id}: {body}")
    if result.rowcount == 0:
        return Outcome(f"error: there is no {table.name} row with id {query.record_id}", ok=False)
    if query.tool == "update_record":
        return Outcome(f"Updated {table.name} #{query.record_id}: {_json(query.data)}")
    return Outcome(f"Deleted {table.name} #{query.record_id}")


def _json(value: Any) -> str:
    text = orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
    if len(text) > OBSERVATION_CHARS:
        text = text[:OBSERVATION_CHARS] + "… (truncated)"
    return text


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError


class DataSources:
    """One engine per database URL, one schema per (URL, permissions), shared by all runs."""

    def __init__(self) -> None:
        self._engines: dict[str, AsyncEngine] = {}
        self._sources: dict[bytes, DataSource] = {}
        self._lock = asyncio.Lock()

    async def get(self, config: Mapping[str, Any]) -> DataSource:
        cache_key = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
        source = self._sources.get(cache_key)
        if source is not None:
            return source
        async with self._lock:
            source = self._sources.get(cache_key)
            if source is None:
                url = async_url(config["url"])
                engine = self._engines.get(url)
                if engine is None:
                    engine = self._engines[url] = create_async_engine(url)
                    if engine.dialect.name == "sqlite":
                        sa.event.listen(engine.sync_engine, "connect", _sqlite_foreign_keys)
                permissions = parse_permissions(config["tables"])
                async with engine.connect() as conn:
                    schema = await conn.run_sync(introspect, permissions, config.get("schema"))
                source = self._sources[cache_key] = DataSource(engine, schema)
        return source

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
        self._engines.clear()
        self._sources.clear()


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
