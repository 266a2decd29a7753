"""Market data: depth, last trades, bars with exact VWAP, auction results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from market.book import BookConfig, OrderBook
from market.marketdata import Level, MarketData, depth
from market.orders import Side, Trade

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _trade(n: int, price: int, quantity: int, at: datetime) -> Trade:
    return Trade(f"t{n}", "gold", price, quantity, "b", "s", "x", "y", 0, 0, at, Side.BUY)


def test_bars_hold_open_high_low_close_volume_and_exact_vwap() -> None:
    data = MarketData(interval=timedelta(hours=1))
    data.record_trades(
        [
            _trade(1, 100, 1_000, T0 + timedelta(minutes=1)),
            _trade(2, 130, 2_000, T0 + timedelta(minutes=20)),
            _trade(3, 90, 1_000, T0 + timedelta(minutes=59)),
            _trade(4, 120, 3_000, T0 + timedelta(hours=1, minutes=5)),
        ]
    )
    first, second = data.bars("gold")
    assert (first.start, first.open, first.high, first.low, first.close) == (T0, 100, 130, 90, 90)
    assert (first.volume, first.trades) == (4_000, 3)
    assert first.vwap == Fraction(100 * 1_000 + 130 * 2_000 + 90 * 1_000, 4_000)
    assert (second.start, second.open, second.close, second.volume) == (
        T0 + timedelta(hours=1),
        120,
        120,
        3_000,
    )
    assert data.vwap("gold") == Fraction(450_000 + 360_000, 7_000)
    assert data.vwap("gold", since=T0 + timedelta(hours=1)) == 120
    assert data.volume("gold", until=T0 + timedelta(hours=1)) == 4_000
    assert data.vwap("silver") is None
    assert [t.trade_id for t in data.last_trades("gold", 2)] == ["t4", "t3"]


def test_depth_aggregates_each_price_level_best_first() -> None:
    book = OrderBook(BookConfig(tier="gold"), lambda: T0)
    book.submit("b1", "x", Side.BUY, 100, 1_000)
    book.submit("b2", "y", Side.BUY, 100, 500)
    book.submit("b3", "x", Side.BUY, 90, 700)
    book.submit("a1", "z", Side.SELL, 110, 300)
    snapshot = depth(book)
    assert snapshot.bids == (Level(100, 1_500, 2), Level(90, 700, 1))
    assert snapshot.asks == (Level(110, 300, 1),)
    assert depth(book, levels=1).bids == (Level(100, 1_500, 2),)
