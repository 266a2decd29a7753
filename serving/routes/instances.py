"""An instance's own balances, trades and owner value."""

from __future__ import annotations

from fastapi import APIRouter, Response

from serving.deps import ActInstance, Limit, Offset, ReadInstance, SessionDep
from serving.errors import NotFound
from serving.owner_values import OwnerValue
from serving.render import own_trade_row
from serving.routing import GuardedRoute
from serving.schemas import BalancesPublic, OwnerValuePublic, OwnerValueSet, OwnTradePublic

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


def _owner_value_public(stored: OwnerValue) -> OwnerValuePublic:
    return OwnerValuePublic(
        instance_id=stored.instance_id,
        value=stored.value,
        updated_at=stored.updated_at,
        updated_by=stored.updated_by,
    )


@router.put(
    "/v1/instances/{instance_id}/owner-value",
    response_model=OwnerValuePublic,
    summary="Set the owner's value of a throttled vCPU-minute",
)
def set_owner_value(
    instance_id: ActInstance, body: OwnerValueSet, services: SessionDep
) -> OwnerValuePublic:
    """Set what a throttled vCPU-minute costs the instance's owner, replacing any value.

    The instance's agent bids no more than its credits are worth at this value and asks
    no less than keeping them is worth.
    """
    services.market.tiers.instance(instance_id)
    return _owner_value_public(services.owner_values.set(instance_id, body.value, instance_id))


@router.get(
    "/v1/instances/{instance_id}/owner-value",
    response_model=OwnerValuePublic,
    summary="Read the owner's value",
)
def get_owner_value(instance_id: ReadInstance, services: SessionDep) -> OwnerValuePublic:
    """Return the instance's owner value (404 while its owner has set none)."""
    services.market.tiers.instance(instance_id)
    stored = services.owner_values.get(instance_id)
    if stored is None:
        raise NotFound(f"instance {instance_id!r} has no owner value; its agent's policy applies")
    return _owner_value_public(stored)


@router.delete(
    "/v1/instances/{instance_id}/owner-value",
    status_code=204,
    summary="Clear the owner's value",
)
def clear_owner_value(instance_id: ActInstance, services: SessionDep) -> Response:
    """Remove the instance's owner value; its agent's own policy applies again."""
    if not services.owner_values.clear(instance_id):
        raise NotFound(f"instance {instance_id!r} has no owner value")
    return Response(status_code=204)
