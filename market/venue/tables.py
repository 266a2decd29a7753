"""The venue's tables (SQLAlchemy Core): orders, trades, standing limits, auction results.

The one definition of the ``market_*`` tables: the venue writes them, the service
reads them, and the migrations create them from these objects. A column added after
the tables first shipped is named in :data:`ADDED_LATER` with the revision that adds
it, so that revision ``0005_market`` still builds exactly its own schema.
"""

from __future__ import annotations

import sqlalchemy as sa

from market.schema import metadata

orders = sa.Table(
    "market_orders",
    metadata,
    sa.Column("order_id", sa.String(200), primary_key=True),
    sa.Column("tier", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("filled", sa.BigInteger, nullable=False),
    sa.Column("time_in_force", sa.String(8), nullable=False),
    sa.Column("expires_at_us", sa.BigInteger),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("auction", sa.Boolean, nullable=False),
    sa.Column("priority", sa.BigInteger, nullable=False),
    # the order's share of its owner's escrow account; NULL on rows written before
    # escrow was held per instance (their escrow is still in a per-order account)
    sa.Column("escrow", sa.BigInteger),
)
trades = sa.Table(
    "market_trades",
    metadata,
    sa.Column("trade_id", sa.String(200), primary_key=True),
    sa.Column("tier", sa.String(64), nullable=False, index=True),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("buy_order_id", sa.String(200), nullable=False),
    sa.Column("sell_order_id", sa.String(200), nullable=False),
    sa.Column("buyer", sa.String(200), nullable=False),
    sa.Column("seller", sa.String(200), nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("seller_value", sa.BigInteger),
    sa.Column("aggressor", sa.String(4)),
    sa.Column("at_us", sa.BigInteger, nullable=False),
)
limits = sa.Table(
    "market_limits",
    metadata,
    sa.Column("instance_id", sa.String(200), primary_key=True),
    sa.Column("max_bid", sa.BigInteger),
    sa.Column("min_ask", sa.BigInteger),
)
auctions = sa.Table(
    "market_auctions",
    metadata,
    sa.Column("auction_id", sa.String(200), primary_key=True),
    sa.Column("tier", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(12), nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    sa.Column("clearing_price", sa.BigInteger),
    sa.Column("buy_price", sa.BigInteger),
    sa.Column("sell_price", sa.BigInteger),
    sa.Column("volume", sa.BigInteger, nullable=False),
    sa.Column("demand", sa.BigInteger, nullable=False),
    sa.Column("supply", sa.BigInteger, nullable=False),
    sa.Column("unmatched_bid_quantity", sa.BigInteger, nullable=False),
    sa.Column("unmatched_ask_quantity", sa.BigInteger, nullable=False),
)

TABLES = (orders, trades, limits, auctions)
"""Every venue table, in creation order."""

ADDED_LATER: dict[str, dict[str, tuple[str, ...]]] = {
    "0006_order_escrow": {"market_orders": ("escrow",)},
}
"""Per revision after ``0005_market``, the columns it adds, per table."""


def column_definition(column: sa.Column[object]) -> sa.Column[object]:
    """Return a fresh, unbound copy of ``column`` for ``op.create_table``/``op.add_column``."""
    return sa.Column(
        column.name, column.type, primary_key=column.primary_key, nullable=column.nullable
    )


def columns_at_creation(table: sa.Table) -> list[sa.Column[object]]:
    """Return fresh copies of the columns ``table`` had when ``0005_market`` created it."""
    later = {c for added in ADDED_LATER.values() for c in added.get(table.name, ())}
    return [column_definition(c) for c in table.columns if c.name not in later]
