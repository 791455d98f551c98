"""The demo shop database the `demo` bot's data tools work on.

A small, deterministic shop: categories, products, customers and orders (a few hundred rows),
created at first start. The demo bot may read all of it, manage products, and update orders.

Where it lives follows the server's database (:func:`demo_shop_url`): beside a SQLite store,
its own SQLite file ``demo_shop.db``; with a PostgreSQL store, the schema ``demo_shop`` of the
same database, so that every node of a multi-node deployment works on the same shop (a data
source must be shared). The bot's data source names that schema (``"schema": "demo_shop"``).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from realtime.store import async_url

SCHEMA = "demo_shop"  # on PostgreSQL

metadata = sa.MetaData()

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("description", sa.Text),
)
products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("stock", sa.Integer, nullable=False, server_default="0"),
    sa.Column("category_id", sa.Integer, sa.ForeignKey("categories.id")),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(255), nullable=False, unique=True),
    sa.Column("city", sa.String(100)),
    sa.Column("country", sa.String(100)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("total", sa.Numeric(10, 2), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("ordered_at", sa.DateTime, nullable=False),
)

PERMISSIONS = {
    "categories": {"label": "Categories", "actions": ["read"]},
    "products": {"label": "Products", "actions": ["read", "create", "update", "delete"]},
    "customers": {"label": "Customers", "actions": ["read"]},
    "orders": {"label": "Orders", "actions": ["read", "update"]},
}

_CATEGORIES = {
    "Jackets": ["Rain Jacket", "Down Jacket", "Softshell Jacket", "Denim Jacket", "Fleece"],
    "Shoes": ["Trail Runner", "City Sneaker", "Hiking Boot", "Sandal", "Loafer"],
    "Bags": ["Daypack", "Tote", "Messenger Bag", "Duffel", "Hip Pack"],
    "Shirts": ["Oxford Shirt", "Linen Shirt", "Flannel Shirt", "T-Shirt", "Polo"],
    "Trousers": ["Chinos", "Cargo Pants", "Jeans", "Shorts", "Joggers"],
    "Accessories": ["Beanie", "Scarf", "Gloves", "Belt", "Sunglasses"],
    "Home": ["Blanket", "Mug", "Candle", "Cushion", "Lamp"],
    "Outdoor": ["Tent", "Sleeping Bag", "Headlamp", "Water Bottle", "Camp Chair"],
}
_COLOURS = ["Black", "Navy", "Olive", "Sand"]
_FIRST = ["Ada", "Ben", "Chloe", "Dario", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas"]
_LAST = ["Meyer", "Okafor", "Rossi", "Novak", "Silva", "Kim", "Larsen", "Dubois"]
_CITIES = [
    ("Berlin", "Germany"),
    ("Lyon", "France"),
    ("Porto", "Portugal"),
    ("Utrecht", "Netherlands"),
    ("Krakow", "Poland"),
    ("Turin", "Italy"),
]
_STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "returned"]


def demo_shop_url(database_url: str) -> str | None:
    """Where the demo shop lives for a server database URL: beside a SQLite file, or in the
    same PostgreSQL database (in the schema :func:`demo_shop_schema` names); else None."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
        return f"sqlite:///{path.with_name('demo_shop.db')}"
    if sa.engine.make_url(async_url(database_url)).get_backend_name() == "postgresql":
        return database_url
    return None


def demo_shop_schema(url: str) -> str | None:
    """The schema of the demo shop at ``url``: ``demo_shop`` on PostgreSQL, else None."""
    return None if url.startswith("sqlite:") else SCHEMA


async def create_demo_shop(url: str) -> None:
    """Create and fill the demo shop at ``url`` unless it already has its tables.

    Idempotent, and safe when several processes start at once: on PostgreSQL the schema, the
    tables and their rows are created in one transaction under an advisory lock, so the
    others wait and then find the shop complete.
    """
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_create, demo_shop_schema(url))
    finally:
        await engine.dispose()


def _create(conn: sa.Connection, schema: str | None) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('realtime.demo_shop'))"))
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    if sa.inspect(conn).has_table("orders", schema=schema):
        return
    if schema is not None:
        conn = conn.execution_options(schema_translate_map={None: schema})
    metadata.create_all(conn)
    _fill(conn)
    if conn.dialect.name == "postgresql":
        # The rows were inserted with their ids: move each serial past them.
        for table in metadata.sorted_tables:
            name = f'"{schema}"."{table.name}"'
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                    f"(SELECT max(id) FROM {name}))"
                ),
                {"table": name},
            )


def _fill(conn: sa.Connection) -> None:
    rng = random.Random(2026)
    start = dt.datetime(2026, 1, 5, 9, 0)
    product_rows: list[dict[str, Any]] = []
    for cid, (category, names) in enumerate(_CATEGORIES.items(), 1):
        conn.execute(
            categories.insert().values(id=cid, name=category, description=f"All our {category}.")
        )
        for name in names:
            for colour in rng.sample(_COLOURS, 2):
                price = Decimal(rng.randrange(900, 25000)) / 100
                product_rows.append(
                    {
                        "id": len(product_rows) + 1,
                        "name": f"{colour} {name}",
                        "description": f"A {colour.lower()} {name.lower()} from our "
                        f"{category.lower()} range.",
                        "price": price,
                        "stock": rng.randrange(0, 120),
                        "category_id": cid,
                        "active": rng.random() > 0.1,
                    }
                )
    conn.execute(products.insert(), product_rows)
    customer_rows = []
    for i in range(1, 81):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country = rng.choice(_CITIES)
        customer_rows.append(
            {
                "id": i,
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}{i}@example.com",
                "city": city,
                "country": country,
                "created_at": start + dt.timedelta(days=rng.randrange(0, 200)),
            }
        )
    conn.execute(customers.insert(), customer_rows)
    order_rows = []
    for i in range(1, 301):
        product = rng.choice(product_rows)
        quantity = rng.randint(1, 4)
        order_rows.append(
            {
                "id": i,
                "customer_id": rng.randint(1, len(customer_rows)),
                "product_id": product["id"],
                "quantity": quantity,
                "total": product["price"] * quantity,
                "status": rng.choice(_STATUSES),
                "ordered_at": start
                + dt.timedelta(days=rng.randrange(0, 320), minutes=rng.randrange(0, 1440)),
            }
        )
    conn.execute(orders.insert(), order_rows)
