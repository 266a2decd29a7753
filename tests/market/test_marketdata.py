"""Market data: depth, last trades, bars with exact VWAP, auction results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from market.venue.book import BookConfig, OrderBook
from market.venue.marketdata import Level, MarketData, depth
from market.venue.orders import Side, Trade

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


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["gold", "silver"]),
            st.integers(0, 180),
            st.integers(1, 500),
            st.integers(1, 5_000),
        ),
        max_size=40,
    ),
    st.lists(st.integers(1, 10), max_size=10),
)
def test_bars_match_a_trade_by_trade_reference_however_trades_arrive(
    rows: list[tuple[str, int, int, int]], chunks: list[int]
) -> None:
    rows = sorted(rows, key=lambda r: r[1])
    trades = [
        Trade(f"t{n}", tier, price, qty, "b", "s", "x", "y", 0, 0, T0 + timedelta(minutes=m))
        for n, (tier, m, price, qty) in enumerate(rows)
    ]
    data = MarketData(interval=timedelta(hours=1), keep_trades=5)
    start = 0
    for size in [*chunks, len(trades)]:
        data.record_trades(iter(trades[start : start + size]))
        start += size
    for tier in ("gold", "silver"):
        expected: dict[datetime, list[int]] = {}
        for t in trades:
            if t.tier != tier:
                continue
            start_of_bar = T0 + timedelta(hours=(t.at - T0) // timedelta(hours=1))
            bar = expected.setdefault(start_of_bar, [t.price, t.price, t.price, 0, 0, 0, 0])
            bar[1], bar[2], bar[3] = max(bar[1], t.price), min(bar[2], t.price), t.price
            bar[4] += t.quantity
            bar[5] += 1
            bar[6] += t.price * t.quantity
        got = {b.start: [b.open, b.high, b.low, b.close, b.volume, b.trades, b.price_volume]
               for b in data.bars(tier)}  # fmt: skip
        assert got == expected
        own = [t for t in trades if t.tier == tier]
        assert data.last_trades(tier, 10) == own[::-1][:5]
