"""The hourly market round: the pools' offers, every agent, each tier's call auction and
the CEM's interval, run once per hour (the ``market-round`` flow calls it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from market.rounds import RoundOutcome, round_hour
from serving.deps import AdminDep, Limit, SessionDep
from serving.errors import Conflict, NotFound
from serving.forecasts import agent_forecasts
from serving.routing import GuardedRoute
from serving.schemas import RoundCreate, RoundPublic

router = APIRouter(prefix="/v1/admin/market", tags=["market rounds"], route_class=GuardedRoute)

RoundIdPath = Annotated[
    str,
    Path(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:00Z$",
        description="the round's hour, e.g. 2026-12-05T10:00Z",
    ),
]


def _public(outcome: RoundOutcome) -> RoundPublic:
    return RoundPublic(
        round_id=outcome.round_id,
        hour=outcome.hour,
        stage=outcome.stage,
        started_at=outcome.started_at,
        updated_at=outcome.updated_at,
        record=outcome.record,
    )


@router.post("/rounds", response_model=RoundPublic, summary="Run an hour's market round")
def run_round(
    services: SessionDep, _admin: AdminDep, body: RoundCreate | None = None
) -> RoundPublic:
    """Run the market round of an hour (the current one without `hour`), exactly once.

    A round already done answers with its record; one a crash interrupted is finished
    where it stopped. The agents read the served forecasts (user forecasts applied) and
    their owners' values; a round of a later hour than now is refused.
    """
    now = services.clock()
    hour = round_hour(body.hour if body is not None and body.hour is not None else now)
    if hour > round_hour(now):
        raise Conflict(f"the round of {hour.isoformat()} cannot run before its hour")
    forecasts = agent_forecasts(services.forecasts.current, services.user_forecasts.forecast)
    values = services.owner_values.values()
    with services.market.lock:
        outcome = services.market.rounds.run(hour, forecasts, values)
    return _public(outcome)


@router.get("/rounds", response_model=list[RoundPublic], summary="List the latest market rounds")
def list_rounds(services: SessionDep, _admin: AdminDep, limit: Limit = 24) -> list[RoundPublic]:
    """Return the latest rounds, newest first."""
    return [_public(o) for o in services.market.rounds.recent(limit)]


@router.get("/rounds/{round_id}", response_model=RoundPublic, summary="Read one market round")
def get_round(round_id: RoundIdPath, services: SessionDep, _admin: AdminDep) -> RoundPublic:
    """Return the round of one hour."""
    found = services.market.rounds.get(round_id)
    if found is None:
        raise NotFound(f"no market round {round_id!r}")
    return _public(found)
