"""Market data: depth per price level, last trades, interval bars, VWAP, auction results.

Volumes are milli-credits and prices minor units per credit, as everywhere in the
market. VWAP is exact: a :class:`fractions.Fraction` of minor units per credit,
``sum(price * quantity) / sum(quantity)``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import groupby
from operator import attrgetter, mul

from market.venue.auction import AuctionResult
from market.venue.book import OrderBook
from market.venue.orders import Side, Trade

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_tier_and_time = attrgetter("tier", "at")


@dataclass(frozen=True, slots=True)
class Level:
    """One price level of a book: its price, open quantity and number of orders."""

    price: int
    quantity: int
    orders: int


@dataclass(frozen=True, slots=True)
class Depth:
    """Both sides of a book, best price first."""

    tier: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Bar:
    """Open, high, low, close, volume and VWAP of one tier over one interval."""

    tier: str
    start: datetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int
    price_volume: int

    @property
    def vwap(self) -> Fraction:
        """Return the volume-weighted average price of the interval, exactly."""
        return Fraction(self.price_volume, self.volume)


@dataclass(frozen=True, slots=True)
class AuctionSummary:
    """The public result of one call auction, with the interest it left unmatched."""

    auction_id: str
    tier: str
    at: datetime
    clearing_price: int | None
    buy_price: int | None
    sell_price: int | None
    volume: int
    demand: int
    supply: int
    unmatched_bid_quantity: int
    unmatched_ask_quantity: int


def depth(book: OrderBook, levels: int | None = 10) -> Depth:
    """Return the depth of ``book``: ``levels`` price levels per side, best first."""
    return Depth(
        book.tier,
        tuple(Level(*row) for row in book.depth(Side.BUY, levels)),
        tuple(Level(*row) for row in book.depth(Side.SELL, levels)),
    )


class MarketData:
    """Accumulate trades and auction results into the public market data of each tier.

    Parameters
    ----------
    interval
        The length of one bar (open/high/low/close/volume/VWAP); bars start at whole
        multiples of it since the Unix epoch, in UTC.
    keep_trades
        How many of the latest trades to keep per tier.
    """

    def __init__(self, interval: timedelta = timedelta(hours=1), keep_trades: int = 1000) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self._last: dict[str, deque[Trade]] = defaultdict(lambda: deque(maxlen=keep_trades))
        self._bars: dict[str, dict[datetime, list[int]]] = defaultdict(dict)
        self._auctions: dict[str, list[AuctionSummary]] = defaultdict(list)

    def bar_start(self, moment: datetime) -> datetime:
        """Return the start of the bar that holds ``moment``."""
        return moment - (moment - _EPOCH) % self.interval

    def record_trades(self, trades: Iterable[Trade]) -> None:
        """Add trades, in the order they happened."""
        # An auction's trades share one tier and one time: fold each such run at once.
        for (tier, at), run in groupby(trades, key=_tier_and_time):
            group = list(run)
            self._last[tier].extend(group)
            prices = [t.price for t in group]
            quantities = [t.quantity for t in group]
            high, low, close = max(prices), min(prices), prices[-1]
            volume, price_volume = sum(quantities), sum(map(mul, prices, quantities))
            bars = self._bars[tier]
            start = self.bar_start(at)
            bar = bars.get(start)
            if bar is None:
                # open, high, low, close, volume, trades, price * volume
                bars[start] = [prices[0], high, low, close, volume, len(group), price_volume]
            else:
                bar[1] = max(bar[1], high)
                bar[2] = min(bar[2], low)
                bar[3] = close
                bar[4] += volume
                bar[5] += len(group)
                bar[6] += price_volume

    def record_auction(self, result: AuctionResult) -> None:
        """Add a call auction's result and its trades."""
        self.record_trades(result.trades)
        self._auctions[result.tier].append(
            AuctionSummary(
                auction_id=result.auction_id,
                tier=result.tier,
                at=result.at,
                clearing_price=result.clearing_price,
                buy_price=result.buy_price,
                sell_price=result.sell_price,
                volume=result.volume,
                demand=result.demand,
                supply=result.supply,
                unmatched_bid_quantity=result.unmatched_bid_quantity,
                unmatched_ask_quantity=result.unmatched_ask_quantity,
            )
        )

    def last_trades(self, tier: str, n: int = 20) -> list[Trade]:
        """Return up to ``n`` of ``tier``'s latest trades, newest first."""
        kept = self._last.get(tier, deque())
        return [kept[-1 - i] for i in range(min(n, len(kept)))]

    def bars(
        self, tier: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[Bar]:
        """Return ``tier``'s bars whose start lies in ``[since, until)``, oldest first."""
        out = []
        for start, b in sorted(self._bars.get(tier, {}).items()):
            if (since is None or start >= since) and (until is None or start < until):
                out.append(Bar(tier, start, *b))
        return out

    def volume(
        self, tier: str, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """Return the milli-credits traded in ``tier``'s bars within ``[since, until)``."""
        return sum(b.volume for b in self.bars(tier, since, until))

    def vwap(
        self, tier: str, since: datetime | None = None, until: datetime | None = None
    ) -> Fraction | None:
        """Return ``tier``'s exact VWAP over the bars in ``[since, until)``, or ``None``."""
        bars = self.bars(tier, since, until)
        volume = sum(b.volume for b in bars)
        return Fraction(sum(b.price_volume for b in bars), volume) if volume else None

    def auction_results(self, tier: str) -> list[AuctionSummary]:
        """Return ``tier``'s auction results, oldest first."""
        return list(self._auctions.get(tier, []))
