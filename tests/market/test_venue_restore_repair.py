"""Restore finishes what an older venue started: orders it accepted (escrow locked, row
open) but did not get to match before a crash are matched in time priority, what an
IOC leaves is cancelled, exactly once, even if the restore itself is killed."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from market.clock import ManualClock
from market.errors import MarketError
from market.ledger import escrow_credits, escrow_funds
from market.venue.audit import audit_venue_store
from market.venue.handling import OrderRequest, Venue, t_orders, t_trades
from market.venue.orders import Side, TimeInForce
from market.venue.store import order_row
from tests.market.crash_workload import START, TIER, killed_child, open_venue, prepare


def _accept_without_matching(venue: Venue, requests: Sequence[OrderRequest]) -> list[str]:
    """Commit orders' escrow locks and open rows in one transaction and match nothing:
    what an older venue's first transaction left when it was killed before its second."""
    now = venue._clock()
    results: list[object] = [None] * len(requests)
    funded = venue._fund(requests, now, results, auction=False)
    assert results == [None] * len(requests)
    locks = venue._lock_entries([(requests[i], order_id, a) for i, order_id, a in funded])
    rows = [order_row(venue._new_order(o, requests[i], now, False), False, a) for i, o, a in funded]
    venue._post(locks, venue._order_writes(rows), "place")
    return [order_id for _, order_id, _ in funded]


LEGACY_REQUESTS = {
    "b1": OrderRequest("vm0", Side.BUY, 102, 3_000),
    "i1": OrderRequest("vm3", Side.BUY, 104, 2_500, TimeInForce.IOC),
    "i2": OrderRequest("vm4", Side.SELL, 200, 1_000, TimeInForce.IOC),
}


def _store_with_asks(url: str, *, match_the_rest: bool) -> dict[str, str]:
    """A store with two resting asks, then a crossing bid and two IOCs: matched as the
    venue does, or accepted and never matched, as an older venue left them."""
    prepare(url)
    clock = ManualClock(START)
    venue = open_venue(url, clock)
    ids = {
        "a1": venue.place("vm1", Side.SELL, 101, 2_000).order.order_id,
        "a2": venue.place("vm2", Side.SELL, 103, 2_000).order.order_id,
    }
    clock.advance(timedelta(seconds=1))
    requests = list(LEGACY_REQUESTS.values())
    if match_the_rest:
        placed = [p.order.order_id for p in venue.place_many(requests)]  # type: ignore[union-attr]
    else:
        placed = _accept_without_matching(venue, requests)
    ids.update(zip(LEGACY_REQUESTS, placed, strict=True))
    venue.ledger.close()
    return ids


def _legacy_store(url: str) -> dict[str, str]:
    ids = _store_with_asks(url, match_the_rest=False)
    engine = sa.create_engine(url)
    assert not audit_venue_store(engine).ok
    engine.dispose()
    return ids


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The outcome of the same orders placed by a venue that never crashed."""
    url = f"sqlite:///{tmp_path_factory.mktemp('uncrashed') / 'venue.db'}"
    return _outcome(url, _store_with_asks(url, match_the_rest=True))


Outcome = tuple[dict[str, tuple[str, int, int]], list[tuple[str, str, int, int]]]


def _outcome(url: str, ids: dict[str, str]) -> Outcome:
    """Orders' (state, filled, escrow) and trades, by label, as stored."""
    labels = {order_id: label for label, order_id in ids.items()}
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        orders = {
            labels[r.order_id]: (r.state, r.filled, r.escrow)
            for r in conn.execute(sa.select(t_orders))
        }
        trades = sorted(
            (labels[r.buy_order_id], labels[r.sell_order_id], r.price, r.quantity)
            for r in conn.execute(sa.select(t_trades))
        )
    audit = audit_venue_store(engine)
    engine.dispose()
    assert audit.problems() == []
    return orders, trades


def _check_repaired(url: str, ids: dict[str, str], uncrashed: Outcome) -> None:
    orders, trades = _outcome(url, ids)
    assert (orders, trades) == uncrashed
    # the bid arrived after both asks: it takes a1 whole at a1's price and rests the rest
    # at 102 (below a2); then the IOC takes a2 at 103 and is cancelled for the rest
    assert trades == [("b1", "a1", 101, 2_000), ("i1", "a2", 103, 2_000)]
    assert orders["b1"][:2] == ("partially_filled", 2_000)
    assert orders["i1"] == ("cancelled", 2_000, 0)
    assert orders["i2"] == ("cancelled", 0, 0)


def test_restore_matches_orders_an_older_venue_never_matched(
    sqlite_url: str, uncrashed: Outcome
) -> None:
    ids = _legacy_store(sqlite_url)
    venue = open_venue(sqlite_url, ManualClock(START + timedelta(seconds=5)))
    book = venue.book(TIER)
    assert (book.best_bid(), book.best_ask()) == (102, None)
    assert [o.order_id for o in book.open_orders()] == [ids["b1"]]
    assert venue.ledger.balance(escrow_credits("vm4")) == 0
    assert venue.ledger.balance(escrow_funds("vm3")) == 0
    venue.ledger.close()
    _check_repaired(sqlite_url, ids, uncrashed)
    # exactly once: a second restart finds nothing more to do
    before = _outcome(sqlite_url, ids)
    again = open_venue(sqlite_url, ManualClock(START + timedelta(seconds=9)))
    assert [o.order_id for o in again.book(TIER).open_orders()] == [ids["b1"]]
    again.ledger.close()
    assert _outcome(sqlite_url, ids) == before


@pytest.mark.parametrize("moment", ["before_commit", "after_commit"])
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_restore_killed_at_its_commit_finishes_exactly_once(
    moment: str,
    store: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    uncrashed: Outcome,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'venue.db'}"
        if store == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    ids = _legacy_store(url)

    def work(ack: Callable[[str], None]) -> None:
        open_venue(url, ManualClock(START + timedelta(seconds=5)))
        ack("restored")

    code, lines = killed_child(work, f"venue.restore.{moment}", 1)
    assert code == -signal.SIGKILL
    assert lines == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        trades = conn.execute(sa.select(sa.func.count()).select_from(t_trades)).scalar()
    engine.dispose()
    assert trades == (0 if moment == "before_commit" else 2)
    venue = open_venue(url, ManualClock(START + timedelta(seconds=6)))
    venue.ledger.close()
    _check_repaired(url, ids, uncrashed)


def test_restore_still_refuses_a_corrupt_store_naming_it(sqlite_url: str) -> None:
    prepare(sqlite_url)
    venue = open_venue(sqlite_url, ManualClock(START))
    order_id = venue.place("vm1", Side.SELL, 101, 2_000).order.order_id
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.execute(sa.update(t_orders).where(t_orders.c.order_id == order_id).values(escrow=1))
    venue.ledger.close()
    with pytest.raises(MarketError, match=r"escrow accounts differ .*escrow:instance:vm1:credits"):
        open_venue(sqlite_url, ManualClock(START))


def test_a_restored_venue_remembers_the_tiers_latest_trade_prices(sqlite_url: str) -> None:
    # the agents price from the latest trades: a restart must not make them forget
    prepare(sqlite_url)
    clock = ManualClock(START)
    venue = open_venue(sqlite_url, clock)
    venue.place("vm1", Side.SELL, 101, 2_000)
    venue.place("vm2", Side.SELL, 103, 2_000)
    clock.advance(timedelta(seconds=1))
    venue.place("vm0", Side.BUY, 104, 3_000)
    before = [t.price for t in venue.market_data.last_trades(TIER, 20)]
    assert before == [103, 101]
    restarted = open_venue(sqlite_url, clock)  # restored
    assert [t.price for t in restarted.market_data.last_trades(TIER, 20)] == before


def _auction(venue: Venue, label: str, bid: int, ask: int) -> int | None:
    venue.submit_to_auction(
        [OrderRequest("vm0", Side.BUY, bid, 1_000), OrderRequest("vm1", Side.SELL, ask, 1_000)]
    )
    return venue.run_auction(TIER, auction_id=f"{TIER}-{label}").clearing_price


def test_an_auction_after_a_restart_clears_where_it_would_have_without_one(
    sqlite_url: str, tmp_path: Path
) -> None:
    # a call auction breaks a tie between clearing prices towards the last one
    prepare(sqlite_url)
    clock = ManualClock(START)
    venue = open_venue(sqlite_url, clock)
    assert _auction(venue, "first", bid=120, ask=100) == 100
    copy = tmp_path / "copy.db"
    with (
        sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as source,
        sqlite3.connect(copy) as target,
    ):
        source.backup(target)
    clock.advance(timedelta(hours=1))
    unbroken = _auction(venue, "second", bid=130, ask=90)
    restarted = open_venue(f"sqlite:///{copy}", clock)
    assert _auction(restarted, "second", bid=130, ask=90) == unbroken == 100
