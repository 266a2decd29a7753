"""An instance's own balances and trades."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import Limit, Offset, ReadInstance, SessionDep
from serving.render import own_trade_row
from serving.routing import GuardedRoute
from serving.schemas import BalancesPublic, OwnTradePublic

router = APIRouter(tags=["instances"], route_class=GuardedRoute)


@router.get(
    "/v1/instances/{instance_id}/balances",
    response_model=BalancesPublic,
    summary="Read an instance's balances",
)
def get_balances(instance_id: ReadInstance, services: SessionDep) -> BalancesPublic:
    """Return the instance's credits and funds (an agent reads only its own)."""
    market = services.market
    credits, funds = market.balances(instance_id)
    return BalancesPublic(
        instance_id=instance_id,
        tier=market.tiers.instance(instance_id).tier,
        credits=credits,
        funds=funds,
    )


@router.get(
    "/v1/instances/{instance_id}/trades",
    response_model=list[OwnTradePublic],
    summary="List an instance's trades",
)
def list_own_trades(
    instance_id: ReadInstance, services: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> list[OwnTradePublic]:
    """Return the instance's trades, newest first."""
    services.market.tiers.instance(instance_id)
    rows = services.market.trade_rows(instance=instance_id, limit=limit, offset=offset)
    return [own_trade_row(r, instance_id) for r in rows]
