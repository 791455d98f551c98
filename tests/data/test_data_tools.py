"""Data tools on the real demo shop (a SQLite file, and the ``demo_shop`` schema of a
PostgreSQL database): examples, and properties for anything a model might write: nothing
raises past the tool boundary, nothing touches a table outside the allowlist."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.agent.provider import ToolCallRequest
from realtime.agent.tools import DATA_TOOL_NAMES, ToolContext, default_registry
from realtime.data.demo_shop import PERMISSIONS, create_demo_shop, demo_shop_schema
from realtime.data.query import OPERATORS
from realtime.data.source import DataSource, DataSources
from realtime.knowledge.retrieval import Retriever
from tests.conftest import BACKENDS
from tests.databases import PostgresDatabases

ALLOWED = {"products": ["read", "update"], "categories": ["read"]}
FORBIDDEN = ("customers", "orders", "sqlite_master", "pg_catalog", "public")


class World:
    """A demo shop, a data source with restricted permissions, and a loop to drive them."""

    def __init__(self, url: str, tables: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.run(create_demo_shop(url))
        self.sources = DataSources()
        config: dict[str, Any] = {"url": url, "tables": tables}
        if demo_shop_schema(url) is not None:
            config["schema"] = demo_shop_schema(url)
        self.source: DataSource = self.run(self.sources.get(config))
        self.statements: list[str] = []
        sa.event.listen(self.source.engine.sync_engine, "before_cursor_execute", self._seen)
        self.registry = default_registry()
        self.ctx = ToolContext("bot", Retriever(None), [], self.source)  # type: ignore[arg-type]

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def call(self, tool: str, arguments: Any) -> tuple[Any, Any]:
        # what a model may write: stdlib json also writes huge integers, NaN and Infinity
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call = ToolCallRequest("call_1", tool, raw)
        return self.run(self.registry.execute(call, self.ctx, DATA_TOOL_NAMES))

    def count(self, table: str, **equal: Any) -> int:
        """Rows of a visible table with these column values, read past the tools."""
        t = self.source.schema.tables[table].table
        query = sa.select(sa.func.count()).select_from(t)
        query = query.where(*(t.c[k] == v for k, v in equal.items()))

        async def read() -> int:
            async with self.source.engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())

        return int(self.run(read()))

    def close(self) -> None:
        self.run(self.sources.close())
        self.loop.close()


@contextlib.contextmanager
def world(request: pytest.FixtureRequest, root: Path, tables: dict[str, Any]) -> Iterator[World]:
    """A demo shop on the module's backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'demo_shop.db'}"
        stack: contextlib.AbstractContextManager[str] = contextlib.nullcontext(url)
    else:
        databases: PostgresDatabases = request.getfixturevalue("postgres")
        stack = databases.database()
    with stack as url:
        shop = World(url, tables)
        try:
            yield shop
        finally:
            shop.close()


@pytest.fixture(scope="module", params=BACKENDS)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with world(request, tmp_path_factory.mktemp("shop"), PERMISSIONS) as w:
        yield w


@pytest.fixture(scope="module", params=BACKENDS)
def restricted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with world(request, tmp_path_factory.mktemp("restricted"), ALLOWED) as w:
        yield w


def test_schema_is_filtered_by_permissions(restricted: World) -> None:
    wire = restricted.source.schema.to_wire()
    assert [t["name"] for t in wire["tables"]] == ["products", "categories"]
    products = wire["tables"][0]
    assert products["label"] == "Products" and products["allowed_actions"] == ["read", "update"]
    assert {"name": "name", "type": "string", "nullable": False, "max_length": 255} in products[
        "columns"
    ]
    assert {"name": "price", "type": "decimal", "nullable": False} in products["columns"]
    # orders is not visible, so neither is products' hasMany relation to it
    assert products["relations"] == [
        {"name": "category", "type": "belongsTo", "related_table": "categories"}
    ]
    assert wire["tables"][1]["relations"] == [
        {"name": "products", "type": "hasMany", "related_table": "products"}
    ]


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("count_records", {"table": "products"}, "Count: 80"),
        ("count_records", {"table": "orders", "filters": {"status": "shipped"}}, r"Count: \d+"),
        (
            "count_records",
            {"table": "products", "filters": {"price": {"gte": 100, "lt": 200}}},
            r"Count: \d+",
        ),
        (
            "search_records",
            {
                "table": "customers",
                "filters": {"city": "Porto"},
                "limit": 2,
                "columns": ["name", "city"],
            },
            r'customers: 2 rows .*"city":"Porto"',
        ),
        (
            "search_records",
            {
                "table": "products",
                "filters": {"name": {"contains": "jacket"}},
                "order_by": "-price",
                "limit": 1,
            },
            r'"name":"\w+ \w+ Jacket"',
        ),
        (
            "aggregate",
            {"table": "orders", "function": "sum", "column": "total", "group_by": "status"},
            r'Results: \[\{"status":"\w+","sum_total":',
        ),
        ("aggregate", {"table": "products", "function": "count"}, r'Results: \[\{"count":80\}\]'),
        ("get_sample_data", {"table": "categories", "limit": 2}, r"categories: 2 rows: "),
        ("count_records", {"table": "nope"}, r"error: there is no table 'nope'"),
        (
            "count_records",
            {"table": "products", "filters": {"colour": "red"}},
            r"error: table 'products' has no column 'colour'",
        ),
        (
            "count_records",
            {"table": "products", "filters": {"price": {"approx": 3}}},
            r"error: unknown filter operator 'approx'",
        ),
        ("search_records", {"table": "products", "limit": 1000}, r"error: 'limit' must be"),
        (
            "aggregate",
            {"table": "customers", "function": "sum", "column": "email"},
            r"error: sum needs a numeric column",
        ),
        (
            "create_record",
            {"table": "customers", "data": {"name": "x"}},
            r"error: create is not allowed on table 'customers'",
        ),
        (
            "create_record",
            {"table": "products", "data": {"name": "x"}},
            r"error: 'data' is missing required columns: price",
        ),
        (
            "update_record",
            {"table": "products", "id": "abc", "data": {"stock": 1}},
            r"error: 'id' must be a valid integer",
        ),
        ("count_records", "{not json", r"error: the arguments are not valid JSON"),
        ("count_records", [1, 2], r"error: the arguments must be a JSON object"),
    ],
)
def test_examples(shop: World, tool: str, arguments: Any, expected: str) -> None:
    _, result = shop.call(tool, arguments)
    assert re.search(expected, result.observation), result.observation


def test_writes_go_through_and_report(shop: World) -> None:
    _, created = shop.call(
        "create_record", {"table": "products", "data": {"name": "Probe", "price": "9.50"}}
    )
    assert created.ok and re.match(
        r'Created products #(\d+): \{"id":\1,"name":"Probe"', created.observation
    )
    record_id = int(created.observation.split("#")[1].split(":")[0])
    _, updated = shop.call(
        "update_record", {"table": "products", "id": record_id, "data": {"stock": 7}}
    )
    assert updated.observation == f'Updated products #{record_id}: {{"stock":7}}'
    _, missing = shop.call("delete_record", {"table": "products", "id": 99_999})
    assert missing.observation == "error: there is no products row with id 99999"
    _, bad_fk = shop.call(
        "update_record", {"table": "products", "id": record_id, "data": {"category_id": 999}}
    )
    assert bad_fk.observation.startswith("error: the database refused this")
    _, deleted = shop.call("delete_record", {"table": "products", "id": record_id})
    assert deleted.observation == f"Deleted products #{record_id}"
    assert shop.count("products", name="Probe") == 0


# -- properties ---------------------------------------------------------------------------

COLUMNS = [
    "id",
    "name",
    "price",
    "stock",
    "category_id",
    "active",
    "email",
    "status",
    "total",
    "description",
    "ordered_at",
    "created_at",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["2026-03-01", "2026-03-01T10:00:00Z", "1e309", "NaN"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.one_of(st.sampled_from(COLUMNS), st.text(max_size=12))
tables = st.one_of(
    st.sampled_from(["products", "categories", *FORBIDDEN, "products; DROP TABLE products"]),
    json_values,
)
filters = st.one_of(
    json_values,
    st.dictionaries(
        names,
        st.one_of(
            json_values,
            st.dictionaries(
                st.one_of(st.sampled_from(OPERATORS), st.text()), json_values, max_size=3
            ),
        ),
        max_size=4,
    ),
)
arguments = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"table": tables},
        optional={
            "filters": filters,
            "data": st.one_of(json_values, st.dictionaries(names, json_values, max_size=4)),
            "id": json_values,
            "columns": st.one_of(json_values, st.lists(names, max_size=4)),
            "order_by": st.one_of(json_values, names, names.map(lambda n: "-" + n)),
            "limit": json_values,
            "offset": json_values,
            "function": st.one_of(
                st.sampled_from(["count", "sum", "avg", "min", "max"]), json_values
            ),
            "column": st.one_of(names, json_values),
            "group_by": st.one_of(names, st.lists(names, max_size=4), json_values),
        },
    ),
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tool=st.sampled_from(DATA_TOOL_NAMES), args=arguments)
def test_nothing_a_model_writes_escapes_the_tool_or_the_allowlist(
    restricted: World, tool: str, args: Any
) -> None:
    restricted.statements.clear()
    params, result = restricted.call(tool, args)  # raises only if a tool boundary leaks
    assert isinstance(result.observation, str) and result.observation
    for statement in restricted.statements:
        identifiers = set(re.findall(r'"?\b([a-z_]+)\b"?', statement.lower()))
        touched = identifiers & set(FORBIDDEN)
        assert not touched, (statement, args)
    if tool in ("create_record", "delete_record"):
        assert not result.ok  # neither is allowed anywhere in this allowlist
    assert restricted.count("categories") == 8
