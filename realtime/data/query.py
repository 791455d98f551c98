"""Tool arguments → parameterised SQLAlchemy statements, checked against the schema (pure).

Nothing the model writes becomes SQL text: table and column names are looked up in the
introspected :class:`DataSchema` (only allowed tables, only their columns), values are bound
parameters coerced to the column's type, and every limit is bounded. Anything that does not
fit raises :class:`ToolArgumentError` with a message for the model.

Filters: ``{"column": value}`` (equality; ``null`` means IS NULL) or
``{"column": {"op": value}}`` with ``op`` one of ``eq ne gt gte lt lte contains
starts_with in is_null``.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from realtime.data.schema import ColumnInfo, DataSchema, TableInfo
from realtime.errors import ToolArgumentError

MAX_ROWS = 100
DEFAULT_ROWS = 20
MAX_IN = 100
MAX_STRING = 10_000
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "starts_with", "in", "is_null")
FUNCTIONS = ("count", "sum", "avg", "min", "max")


@dataclass(frozen=True, slots=True)
class Query:
    """A statement for one tool call and what to say about its result."""

    tool: str
    table: TableInfo
    statement: sa.Executable
    limit: int = 0
    record_id: Any = None
    data: dict[str, Any] | None = None


def build(tool: str, schema: DataSchema, params: Any) -> Query:
    """The statement for ``tool`` with ``params``; ToolArgumentError when they do not fit."""
    if not isinstance(params, Mapping):
        raise ToolArgumentError("the arguments must be a JSON object")
    builder = BUILDERS.get(tool)
    if builder is None:
        raise ToolArgumentError(f"there is no data tool {tool!r}")
    return builder(schema, params)


def _search(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "read")
    columns = p.get("columns")
    if columns is None:
        selected = list(table.table.columns)
    else:
        if not isinstance(columns, list) or not columns or len(columns) > 50:
            raise ToolArgumentError("'columns' must be a non-empty list of column names")
        selected = [table.table.c[table.column(c).name] for c in columns]
    limit = _int(p.get("limit"), "limit", DEFAULT_ROWS, 1, MAX_ROWS)
    offset = _int(p.get("offset"), "offset", 0, 0, 100_000)
    statement = sa.select(*selected).where(*_where(table, p.get("filters")))
    statement = statement.order_by(*_order(table, p.get("order_by"))).limit(limit).offset(offset)
    return Query("search_records", table, statement, limit=limit)


def _sample(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "read")
    limit = _int(p.get("limit"), "limit", 5, 1, 20)
    statement = sa.select(table.table).order_by(*_order(table, None)).limit(limit)
    return Query("get_sample_data", table, statement, limit=limit)


def _count(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "read")
    statement = (
        sa.select(sa.func.count()).select_from(table.table).where(*_where(table, p.get("filters")))
    )
    return Query("count_records", table, statement)


def _aggregate(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "read")
    function = p.get("function", "count")
    if function not in FUNCTIONS:
        raise ToolArgumentError(f"'function' must be one of {', '.join(FUNCTIONS)}")
    column_name = p.get("column")
    if column_name is None:
        if function != "count":
            raise ToolArgumentError(f"'column' is required for {function}")
        value: sa.ColumnElement[Any] = sa.func.count()
    else:
        column = table.column(column_name)
        if function in ("sum", "avg") and column.type not in ("integer", "decimal", "float"):
            raise ToolArgumentError(
                f"{function} needs a numeric column; {column.name} is {column.type}"
            )
        value = getattr(sa.func, function)(table.table.c[column.name])
    group_by = p.get("group_by")
    if group_by is None:
        groups: list[str] = []
    elif isinstance(group_by, str):
        groups = [group_by]
    elif isinstance(group_by, list) and 0 < len(group_by) <= 3:
        groups = group_by
    else:
        raise ToolArgumentError("'group_by' must be a column name or a list of up to 3")
    group_columns = [table.table.c[table.column(g).name] for g in groups]
    limit = _int(p.get("limit"), "limit", DEFAULT_ROWS, 1, MAX_ROWS)
    labelled = value.label(function if column_name is None else f"{function}_{column_name}")
    statement = (
        sa.select(*group_columns, labelled)
        .select_from(table.table)
        .where(*_where(table, p.get("filters")))
    )
    if group_columns:
        statement = statement.group_by(*group_columns).order_by(labelled.desc()).limit(limit)
    return Query("aggregate", table, statement, limit=limit)


def _create(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "create")
    data = _data(table, p.get("data"))
    missing = [
        c.name
        for c in table.columns.values()
        if not c.nullable and not c.has_default and c.name not in data
    ]
    if missing:
        raise ToolArgumentError(f"'data' is missing required columns: {', '.join(missing)}")
    statement = sa.insert(table.table).values(**data)
    return Query("create_record", table, statement, data=data)


def _update(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "update")
    key = _key(table)
    record_id = _value(table.columns[key.name], p.get("id"), "id")
    data = _data(table, p.get("data"))
    if key.name in data:
        raise ToolArgumentError(f"the key column {key.name!r} cannot be changed")
    statement = sa.update(table.table).where(key == record_id).values(**data)
    return Query("update_record", table, statement, record_id=record_id, data=data)


def _delete(schema: DataSchema, p: Mapping[str, Any]) -> Query:
    table = schema.table(p.get("table"), "delete")
    key = _key(table)
    record_id = _value(table.columns[key.name], p.get("id"), "id")
    statement = sa.delete(table.table).where(key == record_id)
    return Query("delete_record", table, statement, record_id=record_id)


BUILDERS = {
    "search_records": _search,
    "get_sample_data": _sample,
    "count_records": _count,
    "aggregate": _aggregate,
    "create_record": _create,
    "update_record": _update,
    "delete_record": _delete,
}


def _key(table: TableInfo) -> sa.Column[Any]:
    if table.primary_key is None:
        raise ToolArgumentError(f"table {table.name!r} has no single-column key to address rows")
    return table.table.c[table.primary_key]


def _data(table: TableInfo, data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping) or not data:
        raise ToolArgumentError("'data' must be a non-empty object of column: value")
    return {table.column(k).name: _value(table.columns[k], v, k) for k, v in data.items()}


def _where(table: TableInfo, filters: Any) -> list[sa.ColumnElement[bool]]:
    if filters is None:
        return []
    if not isinstance(filters, Mapping):
        raise ToolArgumentError("'filters' must be an object of column: value or {op: value}")
    if len(filters) > 20:
        raise ToolArgumentError("at most 20 filters")
    clauses: list[sa.ColumnElement[bool]] = []
    for name, condition in filters.items():
        info = table.column(name)
        column = table.table.c[info.name]
        if isinstance(condition, Mapping):
            if not condition:
                raise ToolArgumentError(f"the filter on {name!r} is empty")
            for op, operand in condition.items():
                clauses.append(_condition(info, column, op, operand))
        else:
            clauses.append(_condition(info, column, "eq", condition))
    return clauses


def _condition(
    info: ColumnInfo, column: sa.Column[Any], op: Any, operand: Any
) -> sa.ColumnElement[bool]:
    if op not in OPERATORS:
        raise ToolArgumentError(f"unknown filter operator {op!r} (use {', '.join(OPERATORS)})")
    if op == "is_null":
        if not isinstance(operand, bool):
            raise ToolArgumentError("is_null takes true or false")
        return column.is_(None) if operand else column.is_not(None)
    if op == "in":
        if not isinstance(operand, list) or not 0 < len(operand) <= MAX_IN:
            raise ToolArgumentError(f"'in' takes a list of 1 to {MAX_IN} values")
        return column.in_([_value(info, v, info.name, allow_null=False) for v in operand])
    if op in ("contains", "starts_with"):
        if not isinstance(operand, str) or len(operand) > 500:
            raise ToolArgumentError(f"{op} takes a string")
        escaped = operand.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%" if op == "contains" else f"{escaped}%"
        return sa.cast(column, sa.String).ilike(pattern, escape="\\")
    if operand is None:
        if op == "eq":
            return column.is_(None)
        if op == "ne":
            return column.is_not(None)
        raise ToolArgumentError(f"{op} cannot compare with null")
    value = _value(info, operand, info.name, allow_null=False)
    comparisons = {
        "eq": column.__eq__,
        "ne": column.__ne__,
        "gt": column.__gt__,
        "gte": column.__ge__,
        "lt": column.__lt__,
        "lte": column.__le__,
    }
    return comparisons[op](value)


def _order(table: TableInfo, order_by: Any) -> list[sa.UnaryExpression[Any] | sa.Column[Any]]:
    if order_by is None:
        if table.primary_key is not None:
            return [table.table.c[table.primary_key]]
        return []
    if not isinstance(order_by, str) or not order_by:
        raise ToolArgumentError("'order_by' must be a column name, '-column' for descending")
    descending = order_by.startswith("-")
    column = table.table.c[table.column(order_by.lstrip("-")).name]
    return [column.desc() if descending else column.asc()]


def _int(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ToolArgumentError(f"'{name}' must be an integer from {lo} to {hi}")
    return value


def _value(column: ColumnInfo, value: Any, name: str, *, allow_null: bool = True) -> Any:
    """Coerce a JSON value to the column's type, or explain why it does not fit."""
    if value is None:
        if allow_null and column.nullable:
            return None
        raise ToolArgumentError(f"{name!r} cannot be null")
    kind = column.type
    try:
        if kind == "integer":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            number = int(value) if isinstance(value, int | float) else int(str(value).strip())
            if not -(2**63) <= number < 2**63:
                raise ValueError
            return number
        if kind in ("decimal", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            parsed = decimal.Decimal(str(value).strip())
            if not parsed.is_finite():
                raise ValueError
            return parsed if kind == "decimal" else float(parsed)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if value in (0, 1):
                return bool(value)
            raise ValueError
        if kind == "datetime":
            if not isinstance(value, str):
                raise ValueError
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
        if kind == "date":
            if not isinstance(value, str):
                raise ValueError
            return dt.date.fromisoformat(value[:10])
        if kind == "json":
            return value
    except (ValueError, ArithmeticError, TypeError):
        raise ToolArgumentError(f"{name!r} must be a valid {kind}") from None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ToolArgumentError(f"{name!r} must be a string")
    text = str(value)
    limit = column.max_length or MAX_STRING
    if len(text) > limit:
        raise ToolArgumentError(f"{name!r} is longer than {limit} characters")
    return text
