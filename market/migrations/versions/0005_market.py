"""The venue's tables: orders, trades, standing limits and auction results.

Revision ID: 0005_market
Revises: 0004_decisions
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_market"
down_revision = "0004_decisions"
branch_labels = None
depends_on = None

_TABLES = ("market_orders", "market_trades", "market_limits", "market_auctions")


def upgrade() -> None:
    # Stores opened by earlier venues created these tables themselves: keep them.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "market_orders" not in existing:
        op.create_table(
            "market_orders",
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
        )
    if "market_trades" not in existing:
        op.create_table(
            "market_trades",
            sa.Column("trade_id", sa.String(200), primary_key=True),
            sa.Column("tier", sa.String(64), nullable=False),
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
        op.create_index("ix_market_trades_tier", "market_trades", ["tier"])
    if "market_limits" not in existing:
        op.create_table(
            "market_limits",
            sa.Column("instance_id", sa.String(200), primary_key=True),
            sa.Column("max_bid", sa.BigInteger),
            sa.Column("min_ask", sa.BigInteger),
        )
    if "market_auctions" not in existing:
        op.create_table(
            "market_auctions",
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


def downgrade() -> None:
    op.drop_index("ix_market_trades_tier", table_name="market_trades")
    for table in reversed(_TABLES):
        op.drop_table(table)
