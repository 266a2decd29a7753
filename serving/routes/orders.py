"""An instance's orders: place (idempotent), list, read, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response

from market.venue.handling import OrderRequest
from market.venue.orders import TERMINAL_STATES, OrderState, Side, TimeInForce
from serving.deps import (
    BEARER_SECURITY,
    ActInstance,
    InstancePath,
    Limit,
    Offset,
    ReadInstance,
    SessionDep,
)
from serving.errors import Conflict, NotFound
from serving.market_service import request_fingerprint
from serving.render import order_row_public
from serving.routing import Access, GuardedRoute, access
from serving.schemas import GoodTillTimeOrder, OrderCreate, OrderPlaced, OrderPublic
from serving.services import Services

router = APIRouter(tags=["orders"], route_class=GuardedRoute)

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="a key of the client's choice; a retry with it returns the first response",
        examples=["order-7f3c2a"],
    ),
]
OrderIdPath = Annotated[
    str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$", description="order id")
]


@router.post(
    "/v1/instances/{instance_id}/orders",
    response_model=OrderPlaced,
    status_code=201,
    summary="Place an order",
    responses={200: {"model": OrderPlaced, "description": "a replay of the first response"}},
    openapi_extra=BEARER_SECURITY,
)
@access(Access.ACT)
async def place_order(
    request: Request,
    instance_id: InstancePath,
    order: OrderCreate,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Place a limit order for the caller's own instance, at most once per key.

    The order escrows what it may spend (funds of a bid, credits of an ask) and trades
    against the tier's book at once, or waits for the next call auction. A retry with
    the same ``Idempotency-Key`` and body returns the first response (with
    ``Idempotent-Replayed: true``); the same key with another body is refused with 409.
    """
    # a busy route: its GuardedRoute authorises it without the dependency graph
    services: Services = request.app.state.services
    services.market.tiers.instance(instance_id)
    order_request = OrderRequest(
        instance_id,
        Side(order.side),
        order.price,
        order.quantity,
        TimeInForce(order.time_in_force),
        order.expires_at if isinstance(order, GoodTillTimeOrder) else None,
    )
    outcome = await services.desk.place(
        order_request,
        auction=order.venue == "auction",
        scope=f"orders:{instance_id}",
        key=idempotency_key,
        fingerprint=request_fingerprint(order.model_dump(mode="json")),
    )
    return Response(
        outcome.body,
        status_code=200 if outcome.replayed else outcome.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true" if outcome.replayed else "false"},
    )


@router.get(
    "/v1/instances/{instance_id}/orders",
    response_model=list[OrderPublic],
    summary="List an instance's orders",
)
def list_orders(
    instance_id: ReadInstance,
    services: SessionDep,
    state: Literal["open", "partially_filled", "filled", "cancelled", "expired", "rejected"]
    | None = Query(default=None, description="only orders in this state"),
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[OrderPublic]:
    """Return the instance's orders, newest first."""
    services.market.tiers.instance(instance_id)
    rows = services.market.order_rows(instance_id, state=state, limit=limit, offset=offset)
    return [order_row_public(r) for r in rows]


def _own_order(services: SessionDep, instance_id: str, order_id: str) -> OrderPublic:
    row = services.market.order_row(order_id)
    if row is None or row.owner != instance_id:
        raise NotFound(f"instance {instance_id!r} has no order {order_id!r}", order_id=order_id)
    return order_row_public(row)


@router.get(
    "/v1/instances/{instance_id}/orders/{order_id}",
    response_model=OrderPublic,
    summary="Read one order",
)
def get_order(
    instance_id: ReadInstance, order_id: OrderIdPath, services: SessionDep
) -> OrderPublic:
    """Return one of the instance's orders."""
    return _own_order(services, instance_id, order_id)


@router.delete(
    "/v1/instances/{instance_id}/orders/{order_id}",
    response_model=OrderPublic,
    summary="Cancel an order",
)
def cancel_order(
    instance_id: ActInstance, order_id: OrderIdPath, services: SessionDep
) -> OrderPublic:
    """Cancel one of the caller's open orders and return its escrow; return the order.

    The answer names the state the order ended in: ``cancelled``, or ``expired`` if its
    good-till-time had passed before the cancel reached its book (the expiry wins, and
    the escrow comes back all the same). A finished order is refused with 409.
    """
    market = services.market
    with market.lock:
        current = _own_order(services, instance_id, order_id)
        if OrderState(current.state) in TERMINAL_STATES:
            raise Conflict(
                f"order {order_id!r} is {current.state} and cannot be cancelled",
                order_id=order_id,
                state=current.state,
            )
        market.venue.cancel(order_id)
        return _own_order(services, instance_id, order_id)
