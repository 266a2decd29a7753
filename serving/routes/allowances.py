"""Allowances out: what each instance may use after its last booked interval, one
instance at a time or as a feed a hypervisor controller follows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from market.cem.live import Allowance
from serving.deps import AdminDep, ReadInstance, SessionDep
from serving.errors import NotFound
from serving.routing import GuardedRoute
from serving.schemas import AllowanceFeedPublic, AllowancePublic

router = APIRouter(tags=["allowances"], route_class=GuardedRoute)

#: The most allowances one page of the feed holds.
MAX_FEED_PAGE = 10_000


def allowance_public(allowance: Allowance) -> AllowancePublic:
    """Return an allowance as its response body."""
    return AllowancePublic(
        instance_id=allowance.instance_id,
        tier=allowance.tier,
        interval_start=allowance.interval_start,
        next_interval_start=allowance.next_interval_start,
        balance=allowance.balance,
        vcpu_minutes=str(allowance.vcpu_minutes),
        throttled=allowance.throttled,
        last_throttled=allowance.last_throttled,
        earns_per_interval=allowance.earns_per_interval,
        pool_draw=allowance.pool_draw,
        cursor=allowance.seq,
        updated_at=allowance.updated_at,
    )


@router.get(
    "/v1/instances/{instance_id}/allowance",
    response_model=AllowancePublic,
    summary="Read what an instance may use next",
)
def get_allowance(instance_id: ReadInstance, services: SessionDep) -> AllowancePublic:
    """Return the instance's balance after its last booked interval and whether it is
    throttled to baseline (an agent reads only its own; 404 before its first interval)."""
    found = services.live.allowance(instance_id)
    if found is None:
        raise NotFound(f"instance {instance_id!r} has no booked interval yet")
    return allowance_public(found)


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
