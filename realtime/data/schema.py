"""A bot's data source as the agent sees it: allowed tables, their columns and relations.

Built by introspecting the database (:func:`introspect`) and filtering by the bot's
permissions: a table appears only if it is in the allowlist, with the actions
(``read``, ``create``, ``update``, ``delete``) granted on it, and relations only between
visible tables. :meth:`DataSchema.to_wire` is what Botovis's ``GET /schema`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtime.errors import ProtocolError, ToolArgumentError

ACTIONS = ("read", "create", "update", "delete")


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type: str  # integer | decimal | float | string | text | boolean | date | datetime | json
    nullable: bool
    max_length: int | None
    primary_key: bool
    has_default: bool  # a server default or an autoincrementing key: may be omitted on create

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.max_length is not None:
            wire["max_length"] = self.max_length
        return wire


@dataclass(frozen=True, slots=True)
class Relation:
    name: str
    type: str  # belongsTo | hasMany
    related_table: str
    column: str  # the foreign key column (on this table for belongsTo, on the other for hasMany)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "related_table": self.related_table}


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    label: str
    actions: frozenset[str]
    columns: dict[str, ColumnInfo]
    relations: tuple[Relation, ...]
    table: sa.Table
    primary_key: str | None

    def column(self, name: Any) -> ColumnInfo:
        if not isinstance(name, str) or name not in self.columns:
            known = ", ".join(self.columns)
            raise ToolArgumentError(
                f"table {self.name!r} has no column {name!r} (columns: {known})"
            )
        return self.columns[name]

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "allowed_actions": sorted(self.actions, key=ACTIONS.index),
            "columns": [c.to_wire() for c in self.columns.values()],
            "relations": [r.to_wire() for r in self.relations],
        }


@dataclass(frozen=True, slots=True)
class DataSchema:
    tables: dict[str, TableInfo] = field(default_factory=dict)

    def table(self, name: Any, action: str) -> TableInfo:
        """The table if ``action`` is allowed on it; else a ToolArgumentError for the model."""
        info = self.tables.get(name) if isinstance(name, str) else None
        if info is None:
            known = ", ".join(self.tables) or "none"
            raise ToolArgumentError(f"there is no table {name!r} (tables: {known})")
        if action not in info.actions:
            raise ToolArgumentError(f"{action} is not allowed on table {name!r}")
        return info

    def allows(self, action: str) -> bool:
        return any(action in t.actions for t in self.tables.values())

    def to_wire(self) -> dict[str, Any]:
        return {"tables": [t.to_wire() for t in self.tables.values()]}

    def describe(self) -> str:
        """A compact description for the model's instructions."""
        lines = []
        for t in self.tables.values():
            cols = ", ".join(
                f"{c.name} {c.type}{'' if c.nullable else ' required'}"
                + (" key" if c.primary_key else "")
                for c in t.columns.values()
            )
            rels = "; ".join(f"{r.name} → {r.related_table}" for r in t.relations)
            actions = ", ".join(sorted(t.actions, key=ACTIONS.index))
            lines.append(
                f"- {t.name} ({t.label}; allowed: {actions}): {cols}"
                + (f"; {rels}" if rels else "")
            )
        return "\n".join(lines)


def parse_permissions(tables: Any) -> dict[str, tuple[str | None, frozenset[str]]]:
    """``{"products": ["read", "create"]}`` or ``{"products": {"label", "actions"}}``.

    Returns table → (label, actions); raises ProtocolError naming what is wrong.
    """
    if not isinstance(tables, Mapping) or not tables:
        raise ProtocolError("invalid_field", "data_source.tables must be a non-empty object")
    out: dict[str, tuple[str | None, frozenset[str]]] = {}
    for name, spec in tables.items():
        label = None
        actions = spec
        if isinstance(spec, Mapping):
            label = spec.get("label")
            actions = spec.get("actions", ["read"])
            if label is not None and (not isinstance(label, str) or len(label) > 100):
                raise ProtocolError("invalid_field", f"data_source.tables.{name}.label is invalid")
        if not isinstance(actions, list) or not all(a in ACTIONS for a in actions):
            raise ProtocolError(
                "invalid_field",
                f"data_source.tables.{name} must list actions among {', '.join(ACTIONS)}",
            )
        out[str(name)] = (label, frozenset(actions))
    return out


def introspect(
    conn: Connection,
    permissions: Mapping[str, tuple[str | None, frozenset[str]]],
    schema: str | None = None,
) -> DataSchema:
    """Reflect the allowed tables that exist (in ``schema``, or the default one); run inside
    ``AsyncConnection.run_sync``. Tables keep their plain names; statements name the schema."""
    existing = set(sa.inspect(conn).get_table_names(schema=schema))
    names = [n for n in permissions if n in existing and permissions[n][1]]
    metadata = sa.MetaData()
    metadata.reflect(bind=conn, only=names, schema=schema)
    tables: dict[str, TableInfo] = {}
    for name in names:
        table = metadata.tables[name if schema is None else f"{schema}.{name}"]
        label, actions = permissions[name]
        pk_columns = [c.name for c in table.primary_key.columns]
        columns = {c.name: _column(c, len(pk_columns) == 1) for c in table.columns}
        tables[name] = TableInfo(
            name=name,
            label=label or name.replace("_", " ").title(),
            actions=actions,
            columns=columns,
            relations=(),
            table=table,
            primary_key=pk_columns[0] if len(pk_columns) == 1 else None,
        )
    for name, info in tables.items():
        relations = []
        for fk in info.table.foreign_keys:
            target = fk.column.table.name
            if target in tables:
                relations.append(Relation(_singular(target), "belongsTo", target, fk.parent.name))
        for other in tables.values():
            for fk in other.table.foreign_keys:
                if fk.column.table.name == name and other.name != name:
                    relations.append(Relation(other.name, "hasMany", other.name, fk.parent.name))
        tables[name] = TableInfo(
            info.name,
            info.label,
            info.actions,
            info.columns,
            tuple(relations),
            info.table,
            info.primary_key,
        )
    return DataSchema(tables)


def _column(column: sa.Column[Any], single_pk: bool) -> ColumnInfo:
    kind = _kind(column.type)
    length = getattr(column.type, "length", None) if kind == "string" else None
    autoincrement = column.primary_key and single_pk and kind == "integer"
    return ColumnInfo(
        name=column.name,
        type=kind,
        nullable=bool(column.nullable) and not column.primary_key,
        max_length=length,
        primary_key=bool(column.primary_key),
        has_default=autoincrement or column.server_default is not None,
    )


def _kind(type_: sa.types.TypeEngine[Any]) -> str:
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Float):
        return "float"
    if isinstance(type_, sa.Numeric):
        return "decimal"
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.JSON):
        return "json"
    if isinstance(type_, sa.String) and getattr(type_, "length", None):
        return "string"
    return "text"


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name
