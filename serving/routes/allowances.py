"""Allowances out: what each instance may use after its last booked interval, one
instance at a time or as a feed a hypervisor controller follows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from serving.allowance_mirror import allowance_public
from serving.deps import BEARER_SECURITY, AdminDep, InstancePath, SessionDep
from serving.errors import NotFound
from serving.routing import Access, GuardedRoute, access
from serving.schemas import AllowanceFeedPublic, AllowancePublic
from serving.services import Services

router = APIRouter(tags=["allowances"], route_class=GuardedRoute)

#: The most allowances one page of the feed holds.
MAX_FEED_PAGE = 10_000


@router.get(
    "/v1/instances/{instance_id}/allowance",
    response_model=AllowancePublic,
    summary="Read what an instance may use next",
    openapi_extra=BEARER_SECURITY,
)
@access(Access.READ)
async def get_allowance(request: Request, instance_id: InstancePath) -> Response:
    """Return the instance's balance after its last booked interval and whether it is
    throttled to baseline (an agent reads only its own; 404 before its first interval)."""
    # a hypervisor reads this every interval for every instance: its GuardedRoute
    # authorises it without the dependency graph, and it answers from memory
    services: Services = request.app.state.services
    mirror = services.allowances
    if mirror.stale:
        await run_in_threadpool(mirror.catch_up)
    body = mirror.rendered(instance_id)
    if body is None:
        services.market.tiers.instance(instance_id)
        raise NotFound(f"instance {instance_id!r} has no booked interval yet")
    return Response(body, media_type="application/json")


@router.get(
    "/v1/admin/allowances",
    response_model=AllowanceFeedPublic,
    summary="Follow every instance's allowance",
)
def allowance_feed(
    services: SessionDep,
    _admin: AdminDep,
    since: Annotated[
        int, Query(ge=0, le=2**62, description="the cursor read last; 0 for everything")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_PAGE, description="page size")] = 1_000,
) -> AllowanceFeedPublic:
    """Return the allowances changed after cursor `since`, in cursor order.

    Every booking gives each instance it books a new cursor, higher than any before it
    and handed out in commit order: a follower that passes `next_cursor` back as
    `since` sees every change, each instance once per page in its latest version.
    """
    found = services.live.allowances(since=since, limit=limit)
    return AllowanceFeedPublic(
        allowances=[allowance_public(a) for a in found],
        next_cursor=found[-1].seq if found else since,
    )
