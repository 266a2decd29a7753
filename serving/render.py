"""Domain records as response bodies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from market.cem.exchange import RateChange
from market.cem.tiers import Tier, format_rate
from market.clock import from_micros
from market.venue.handling import Placement
from market.venue.orders import Order
from market.venue.orders import Trade as BookTrade
from serving.forecasts import ForecastSeries, ForecastSnapshot
from serving.schemas import (
    AuctionPublic,
    ForecastPoint,
    ForecastPublic,
    OrderPlaced,
    OrderPublic,
    OwnTradePublic,
    RateChangePublic,
    TierPublic,
    TradePublic,
)

Public = TypeVar("Public", bound=BaseModel)


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


def from_fields(model: type[Public], source: Any, **values: Any) -> Public:
    """Return ``model`` with each field read from ``source``'s attribute of the same name,
    except those given in ``values``."""
    copied = {name: getattr(source, name) for name in model.model_fields if name not in values}
    return model(**copied, **values)


def order_public(order: Order, *, auction: bool) -> OrderPublic:
    """Return an order snapshot as its response body."""
    return from_fields(
        OrderPublic,
        order,
        instance_id=order.owner,
        side=order.side.value,
        time_in_force=order.time_in_force.value,
        state=order.state.value,
        venue="auction" if auction else "continuous",
    )


def order_row_public(row: Any) -> OrderPublic:
    """Return a stored order row as its response body."""
    return from_fields(
        OrderPublic,
        row,
        instance_id=row.owner,
        remaining=row.quantity - row.filled,
        expires_at=None if row.expires_at_us is None else from_micros(row.expires_at_us),
        created_at=from_micros(row.created_at_us),
        venue="auction" if row.auction else "continuous",
    )


def own_trade(
    trade: BookTrade | Any, instance_id: str, *, at: datetime | None = None
) -> OwnTradePublic:
    """Return a trade (or a stored trade row, with its time) as one of its parties sees it."""
    buying = trade.buyer == instance_id
    return from_fields(
        OwnTradePublic,
        trade,
        side="buy" if buying else "sell",
        order_id=trade.buy_order_id if buying else trade.sell_order_id,
        at=trade.at if at is None else at,
    )


def own_trade_row(row: Any, instance_id: str) -> OwnTradePublic:
    """Return a stored trade row as one of its parties sees it."""
    return own_trade(row, instance_id, at=from_micros(row.at_us))


def trade_row_public(row: Any) -> TradePublic:
    """Return a stored trade row for the public tape."""
    return from_fields(TradePublic, row, at=from_micros(row.at_us))


def auction_row_public(row: Any) -> AuctionPublic:
    """Return a stored auction result as its response body."""
    return from_fields(AuctionPublic, row, at=from_micros(row.at_us))


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


def rate_change_public(change: RateChange) -> RateChangePublic:
    """Return an audited exchange-rate change as its response body."""
    return from_fields(
        RateChangePublic, change, old_rate_micro=change.old_rate, new_rate_micro=change.new_rate
    )


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
                q10=series.quantiles["q10"][i] if "q10" in series.quantiles else None,
                q50=series.quantiles["q50"][i],
                q90=series.quantiles["q90"][i],
                source=series.sources[i],
            )
            for i, ds in enumerate(series.ds)
        ],
    )
