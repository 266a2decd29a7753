"""Tiers, pools, exchange rates, and each tier's public market data."""

from __future__ import annotations

from fastapi import APIRouter, Query

from market.cem.tiers import format_rate
from market.venue.marketdata import depth
from serving.deps import CurrentAgent, Limit, Offset, SessionDep, TierPath
from serving.render import auction_row_public, tier_public, trade_row_public
from serving.routing import GuardedRoute
from serving.schemas import (
    AuctionPublic,
    DepthPublic,
    ExchangeRatePublic,
    LevelPublic,
    PoolPublic,
    TierPublic,
    TradePublic,
)

router = APIRouter(tags=["market"], route_class=GuardedRoute)


@router.get("/v1/tiers", response_model=list[TierPublic], summary="List the resource tiers")
def list_tiers(services: SessionDep, _caller: CurrentAgent) -> list[TierPublic]:
    """Return every tier: hardware class, baseline and exchange rate."""
    return [tier_public(t) for t in services.market.tiers.tiers()]


@router.get("/v1/tiers/{tier}", response_model=TierPublic, summary="Read one tier")
def get_tier(tier: TierPath, services: SessionDep, _caller: CurrentAgent) -> TierPublic:
    """Return one tier."""
    return tier_public(services.market.tiers.tier(tier))


@router.get("/v1/pools", response_model=list[PoolPublic], summary="List the tier credit pools")
def list_pools(services: SessionDep, _caller: CurrentAgent) -> list[PoolPublic]:
    """Return each tier's pool: available credits, capacity and headroom."""
    market = services.market
    return [
        PoolPublic(
            tier=p.tier,
            available=p.available,
            capacity=p.capacity,
            headroom=p.headroom,
            exchange_rate_micro=p.exchange_rate,
        )
        for p in market.tiers.pools(market.ledger)
    ]


@router.get(
    "/v1/exchange-rates", response_model=list[ExchangeRatePublic], summary="List exchange rates"
)
def list_exchange_rates(services: SessionDep, _caller: CurrentAgent) -> list[ExchangeRatePublic]:
    """Return each tier's exchange rate, exactly."""
    return [
        ExchangeRatePublic(
            tier=t.name,
            exchange_rate_micro=t.exchange_rate,
            exchange_rate=format_rate(t.exchange_rate),
        )
        for t in services.market.tiers.tiers()
    ]


@router.get("/v1/tiers/{tier}/depth", response_model=DepthPublic, summary="Read a book's depth")
def get_depth(
    tier: TierPath,
    services: SessionDep,
    _caller: CurrentAgent,
    levels: int = Query(default=10, ge=1, le=50, description="price levels per side"),
) -> DepthPublic:
    """Return the best ``levels`` price levels of each side of the tier's book."""
    market = services.market
    with market.lock:
        book_depth = depth(market.venue.book(tier), levels)
    return DepthPublic(
        tier=book_depth.tier,
        bids=[
            LevelPublic(price=x.price, quantity=x.quantity, orders=x.orders)
            for x in book_depth.bids
        ],
        asks=[
            LevelPublic(price=x.price, quantity=x.quantity, orders=x.orders)
            for x in book_depth.asks
        ],
    )


@router.get(
    "/v1/tiers/{tier}/trades", response_model=list[TradePublic], summary="Read a tier's trade tape"
)
def list_tier_trades(
    tier: TierPath,
    services: SessionDep,
    _caller: CurrentAgent,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[TradePublic]:
    """Return the tier's trades, newest first, without their counterparties."""
    services.market.venue.book(tier)
    rows = services.market.trade_rows(tier=tier, limit=limit, offset=offset)
    return [trade_row_public(r) for r in rows]


@router.get(
    "/v1/tiers/{tier}/auctions",
    response_model=list[AuctionPublic],
    summary="Read a tier's auction results",
)
def list_auctions(
    tier: TierPath,
    services: SessionDep,
    _caller: CurrentAgent,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[AuctionPublic]:
    """Return the tier's call-auction results, newest first."""
    services.market.venue.book(tier)
    return [
        auction_row_public(r)
        for r in services.market.auction_rows(tier, limit=limit, offset=offset)
    ]
