"""Per-order escrow shares survive a restart: the venue rebuilds them from the orders'
rows, refuses a store whose escrow accounts disagree with them, and adopts the
per-order escrow accounts of orders written before escrow was held per instance."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from market.clock import ManualClock
from market.errors import MarketError
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    SqlStore,
    Transfer,
    credits_asset,
    escrow_account,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
)
from market.migrations import upgrade
from market.venue import tables as schema
from market.venue.book import BookConfig
from market.venue.handling import OrderRequest, Venue, t_orders
from market.venue.orders import OrderState, Side
from tests.market.support import deposit

TIERS = [BookConfig(tier="gold", tick_size=5, fee_bps=25)]


def _fund(ledger: Ledger, names: list[str]) -> None:
    deposit(ledger, names, funds=1_000_000, credits=90_000)


def _venue(url: str, clock: ManualClock) -> Venue:
    store = SqlStore(url, durable=False)
    return Venue(Ledger(store, clock), clock, TIERS, engine=store.engine)


def test_shares_of_continuous_and_auction_orders_survive_a_restart(
    sqlite_url: str, clock: ManualClock
) -> None:
    upgrade(sqlite_url)
    venue = _venue(sqlite_url, clock)
    for name in ("vm0", "vm1", "vm2"):
        venue.register_instance(name, "gold")
    _fund(venue.ledger, ["vm0", "vm1", "vm2"])
    a = venue.place("vm0", Side.BUY, 100, 3_000)
    b = venue.place("vm0", Side.BUY, 90, 2_000)
    venue.place("vm1", Side.SELL, 100, 1_000)  # fills a third of a
    (c,) = venue.submit_to_auction([OrderRequest("vm2", Side.SELL, 80, 4_000)])
    shares = {o: venue.escrow_left(o) for o in (a.order.order_id, b.order.order_id, c.order_id)}
    assert venue.ledger.balance(escrow_funds("vm0")) == (
        shares[a.order.order_id] + shares[b.order.order_id]
    )
    venue.ledger.close()

    again = _venue(sqlite_url, clock)
    assert again.restore() == 3
    assert {o: again.escrow_left(o) for o in shares} == shares
    again.cancel(a.order.order_id)
    assert again.ledger.balance(escrow_funds("vm0")) == shares[b.order.order_id]
    again.run_auction("gold")
    assert again.ledger.balance(escrow_credits("vm2")) == 0
    assert again.ledger.verify().ok
    again.ledger.close()


def test_restore_refuses_escrow_that_disagrees_with_the_rows(
    sqlite_url: str, clock: ManualClock
) -> None:
    upgrade(sqlite_url)
    venue = _venue(sqlite_url, clock)
    venue.register_instance("vm0", "gold")
    _fund(venue.ledger, ["vm0"])
    placed = venue.place("vm0", Side.BUY, 100, 3_000)
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.execute(
            sa.update(t_orders)
            .where(t_orders.c.order_id == placed.order.order_id)
            .values(escrow=t_orders.c.escrow - 1)
        )
    venue.ledger.close()
    again = _venue(sqlite_url, clock)
    with pytest.raises(MarketError, match=r"escrow accounts differ .*escrow:instance:vm0:funds"):
        again.restore()
    assert again.book("gold").best_bid() is None
    again.ledger.close()


def test_revision_0005_builds_the_tables_without_later_columns(sqlite_url: str) -> None:
    upgrade(sqlite_url, "0005_market")
    engine = sa.create_engine(sqlite_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("market_orders")}
    assert columns == {c.name for c in t_orders.columns} - {"escrow"}
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("market_trades")}
    assert indexes == {"ix_market_trades_tier"}
    engine.dispose()
    upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    for table in schema.TABLES:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_orders_with_per_order_escrow_are_adopted_on_restore(
    sqlite_url: str, clock: ManualClock
) -> None:
    # a store written before revision 0006: the order's escrow in an account of its own
    upgrade(sqlite_url, "0005_market")
    ledger = Ledger(SqlStore(sqlite_url, durable=False), clock)
    ledger.open_accounts(
        [
            (instance_funds("vm0"), FUNDS, AccountKind.INSTANCE),
            (instance_credits("vm0"), credits_asset("gold"), AccountKind.INSTANCE),
            (escrow_account("old-1"), FUNDS, AccountKind.ESCROW),
            (escrow_account("old-2"), FUNDS, AccountKind.ESCROW),
        ]
    )
    _fund(ledger, ["vm0"])
    ledger.post(
        EntryRequest(
            (
                Transfer(instance_funds("vm0"), escrow_account("old-1"), 301),
                Transfer(instance_funds("vm0"), escrow_account("old-2"), 181),
            ),
            reason="market.escrow.lock",
            actor="cem",
        )
    )
    old_columns = [c.name for c in t_orders.columns if c.name != "escrow"]
    with ledger.store.engine.begin() as conn:  # type: ignore[attr-defined]
        for order_id, price, priority in (("old-1", 100, 1), ("old-2", 60, 2)):
            row = ["vm0", "buy", price, 3_000, 0, "gtc", None, 0, "open", False, priority]
            conn.execute(
                sa.insert(sa.table("market_orders", *[sa.column(c) for c in old_columns])),
                dict(zip(old_columns, [order_id, "gold", *row], strict=True)),
            )
    ledger.close()
    upgrade(sqlite_url)

    venue = _venue(sqlite_url, clock)
    assert venue.restore() == 2
    assert (venue.escrow_left("old-1"), venue.escrow_left("old-2")) == (301, 181)
    balances = venue.ledger.balances()
    assert balances[escrow_account("old-1")] == balances[escrow_account("old-2")] == 0
    assert balances[escrow_funds("vm0")] == 482
    (adopt,) = venue.ledger.entries(reason="market.escrow.adopt")
    assert adopt.metadata["orders"] == 2
    with venue._engine.connect() as conn:  # type: ignore[union-attr]
        stored = dict(conn.execute(sa.select(t_orders.c.order_id, t_orders.c.escrow)).all())
    assert stored == {"old-1": 301, "old-2": 181}
    events = venue.cancel("old-1")
    assert events[-1].state is OrderState.CANCELLED
    assert venue.ledger.balance(instance_funds("vm0")) == 1_000_000 - 181
    assert venue.ledger.verify().ok
    venue.ledger.close()

    # a second restart finds nothing left to adopt
    again = _venue(sqlite_url, clock)
    assert again.restore() == 1
    assert again.escrow_left("old-2") == 181
    assert len(again.ledger.entries(reason="market.escrow.adopt")) == 1
    again.ledger.close()
