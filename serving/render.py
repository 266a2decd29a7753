"""Domain records as response bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from market.clock import from_micros
from market.orders import Order
from market.orders import Trade as BookTrade
from market.tiers import Tier, format_rate
from market.venue import Placement
from serving.forecasts import ForecastSeries, ForecastSnapshot
from serving.schemas import (
    AuctionPublic,
    ForecastPoint,
    ForecastPublic,
    OrderPlaced,
    OrderPublic,
    OwnTradePublic,
    TierPublic,
    TradePublic,
)


def tier_public(tier: Tier) -> TierPublic:
    """Return a tier as its response body."""
    return TierPublic(
        name=tier.name,
        cpu_ghz=str(tier.hardware.cpu_ghz),
        memory_gib_per_vcpu=str(tier.hardware.memory_gib_per_vcpu),
        ssd=tier.hardware.ssd,
        network_gbps=str(tier.hardware.network_gbps),
        baseline_bps=tier.baseline_bps,
        exchange_rate_micro=tier.exchange_rate,
        exchange_rate=format_rate(tier.exchange_rate),
        pool_horizon_hours=tier.pool_horizon_hours,
    )


def order_public(order: Order, *, auction: bool) -> OrderPublic:
    """Return an order snapshot as its response body."""
    return OrderPublic(
        order_id=order.order_id,
        instance_id=order.owner,
        tier=order.tier,
        side=order.side.value,
        price=order.price,
        quantity=order.quantity,
        filled=order.filled,
        remaining=order.remaining,
        time_in_force=order.time_in_force.value,
        expires_at=order.expires_at,
        created_at=order.created_at,
        state=order.state.value,
        venue="auction" if auction else "continuous",
    )


def order_row_public(row: Any) -> OrderPublic:
    """Return a stored order row as its response body."""
    return OrderPublic(
        order_id=row.order_id,
        instance_id=row.owner,
        tier=row.tier,
        side=row.side,
        price=row.price,
        quantity=row.quantity,
        filled=row.filled,
        remaining=row.quantity - row.filled,
        time_in_force=row.time_in_force,
        expires_at=None if row.expires_at_us is None else from_micros(row.expires_at_us),
        created_at=from_micros(row.created_at_us),
        state=row.state,
        venue="auction" if row.auction else "continuous",
    )


def own_trade(trade: BookTrade, instance_id: str) -> OwnTradePublic:
    """Return a trade as one of its parties sees it."""
    buying = trade.buyer == instance_id
    return OwnTradePublic(
        trade_id=trade.trade_id,
        tier=trade.tier,
        side="buy" if buying else "sell",
        order_id=trade.buy_order_id if buying else trade.sell_order_id,
        price=trade.price,
        quantity=trade.quantity,
        value=trade.value,
        fee=trade.fee,
        at=trade.at,
    )


def own_trade_row(row: Any, instance_id: str) -> OwnTradePublic:
    """Return a stored trade row as one of its parties sees it."""
    buying = row.buyer == instance_id
    return OwnTradePublic(
        trade_id=row.trade_id,
        tier=row.tier,
        side="buy" if buying else "sell",
        order_id=row.buy_order_id if buying else row.sell_order_id,
        price=row.price,
        quantity=row.quantity,
        value=row.value,
        fee=row.fee,
        at=from_micros(row.at_us),
    )


def trade_row_public(row: Any) -> TradePublic:
    """Return a stored trade row for the public tape."""
    return TradePublic(
        trade_id=row.trade_id,
        tier=row.tier,
        price=row.price,
        quantity=row.quantity,
        value=row.value,
        fee=row.fee,
        aggressor=row.aggressor,
        at=from_micros(row.at_us),
    )


def auction_row_public(row: Any) -> AuctionPublic:
    """Return a stored auction result as its response body."""
    return AuctionPublic(
        auction_id=row.auction_id,
        tier=row.tier,
        mode=row.mode,
        at=from_micros(row.at_us),
        clearing_price=row.clearing_price,
        buy_price=row.buy_price,
        sell_price=row.sell_price,
        volume=row.volume,
        demand=row.demand,
        supply=row.supply,
        unmatched_bid_quantity=row.unmatched_bid_quantity,
        unmatched_ask_quantity=row.unmatched_ask_quantity,
    )


def render_placement(outcome: Placement | Order) -> str:
    """Return the JSON body of a placed order (or one waiting for an auction)."""
    if isinstance(outcome, Order):
        return OrderPlaced(order=order_public(outcome, auction=True), trades=[]).model_dump_json()
    return OrderPlaced(
        order=order_public(outcome.order, auction=False),
        trades=[own_trade(t, outcome.order.owner) for t in outcome.trades],
    ).model_dump_json()


def render_stored_placement(order_row: Any, trade_rows: Sequence[Any]) -> str:
    """Return the JSON body of a placed order from its stored row and trades as they are now."""
    return OrderPlaced(
        order=order_row_public(order_row),
        trades=[own_trade_row(t, order_row.owner) for t in trade_rows],
    ).model_dump_json()


def forecast_public(snapshot: ForecastSnapshot, series: ForecastSeries) -> ForecastPublic:
    """Return one forecast series as its response body."""
    return ForecastPublic(
        instance_id=series.instance_id,
        horizon=series.horizon,  # type: ignore[arg-type]
        model_name=snapshot.model_name,
        model_version=snapshot.model_version,
        generated_at=snapshot.generated_at,
        origin=snapshot.origin,
        points=[
            ForecastPoint(
                ds=ds,
                yhat=series.yhat[i],
                q50=series.quantiles["q50"][i],
                q90=series.quantiles["q90"][i],
                source=series.sources[i],
            )
            for i, ds in enumerate(series.ds)
        ],
    )
