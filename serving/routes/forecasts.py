"""Demand forecasts of instances, and the owners' user-defined forecasts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from serving.deps import (
    BEARER_SECURITY,
    ActInstance,
    CurrentAgent,
    InstancePath,
    ReadInstance,
    SessionDep,
    check_read,
)
from serving.errors import NotFound, ServiceUnavailable
from serving.forecasts import apply_user_forecast
from serving.render import forecast_public
from serving.routing import Access, GuardedRoute, access
from serving.schemas import (
    DailyUserForecast,
    ForecastBatchCreate,
    ForecastBatchPublic,
    ForecastPublic,
    ForecastStatusPublic,
    Horizon,
    UserForecastPublic,
    UserForecastSet,
    WeeklyUserForecast,
)
from serving.services import Services

router = APIRouter(tags=["forecasts"], route_class=GuardedRoute)

HorizonQuery = Annotated[Horizon, Query(description="hour (1 h), day (24 h) or week (168 h)")]


def _forecast(services: Services, instance_id: str, horizon: str) -> ForecastPublic | bytes | None:
    snapshot = services.forecasts.current
    if snapshot is None:
        if services.forecasts.loading:
            raise ServiceUnavailable(
                "the forecasts are still loading; retry in a few seconds",
                title="Loading",
                retry_after=2,
            )
        raise ServiceUnavailable(
            "no forecasts to serve: the predict flow has written none; run "
            "`creditx pipeline predict` (after `pipeline train`)"
        )
    series = snapshot.series.get((instance_id, horizon))
    if series is None:
        return None
    user = services.user_forecasts.forecast(instance_id)
    if user is not None:
        return forecast_public(snapshot, apply_user_forecast(series, user))
    rendered = snapshot.rendered.get((instance_id, horizon))
    if rendered is None:
        # rendering is pure, so a race only renders the same bytes twice
        rendered = forecast_public(snapshot, series).model_dump_json().encode()
        snapshot.rendered[(instance_id, horizon)] = rendered
    return rendered


@router.get(
    "/v1/instances/{instance_id}/forecast",
    response_model=ForecastPublic,
    summary="Read an instance's demand forecast",
    openapi_extra=BEARER_SECURITY,
)
@access(Access.READ)
async def get_forecast(
    request: Request, instance_id: InstancePath, horizon: HorizonQuery = "day"
) -> Response:
    """Return the instance's forecast over the horizon: point, quantiles, model version.

    Where the owner set a user-defined forecast, its values replace the learned ones
    (``source: user``).
    """
    # the busiest route: its GuardedRoute authorises it without the dependency graph,
    # which costs more than the rest of the request
    services: Services = request.app.state.services
    found = _forecast(services, instance_id, horizon)
    if found is None:
        raise NotFound(f"no {horizon} forecast for instance {instance_id!r}")
    body = found if isinstance(found, bytes) else found.model_dump_json().encode()
    return Response(body, media_type="application/json")


@router.post(
    "/v1/forecasts/batch",
    response_model=ForecastBatchPublic,
    summary="Read the forecasts of many instances",
)
async def batch_forecasts(
    batch: ForecastBatchCreate, services: SessionDep, caller: CurrentAgent
) -> ForecastBatchPublic:
    """Return the forecasts of up to 100 instances over one horizon.

    An agent may name only its own instance.
    """
    forecasts: list[ForecastPublic] = []
    missing: list[str] = []
    for instance_id in dict.fromkeys(batch.instance_ids):
        check_read(caller, instance_id)
    for instance_id in dict.fromkeys(batch.instance_ids):
        found = _forecast(services, instance_id, batch.horizon)
        if found is None:
            missing.append(instance_id)
        elif isinstance(found, bytes):
            forecasts.append(ForecastPublic.model_validate_json(found))
        else:
            forecasts.append(found)
    return ForecastBatchPublic(forecasts=forecasts, missing=missing)


@router.get(
    "/v1/forecasts/status",
    response_model=ForecastStatusPublic,
    summary="Which model the forecasts come from",
)
async def forecast_status(services: SessionDep, _caller: CurrentAgent) -> ForecastStatusPublic:
    """Return the served model version, when it was generated, and the champion's version."""
    return ForecastStatusPublic(**services.forecasts.status())


def _user_public(services: Services, instance_id: str) -> UserForecastPublic:
    stored = services.user_forecasts.get(instance_id)
    if stored is None:
        raise NotFound(f"instance {instance_id!r} has no user-defined forecast")
    document, updated_at, updated_by = stored
    model = DailyUserForecast if document["kind"] == "daily" else WeeklyUserForecast
    return UserForecastPublic(
        instance_id=instance_id,
        forecast=model.model_validate(document),
        updated_at=updated_at,
        updated_by=updated_by,
    )


@router.put(
    "/v1/instances/{instance_id}/user-forecast",
    response_model=UserForecastPublic,
    summary="Set the owner's forecast",
)
def set_user_forecast(
    instance_id: ActInstance, forecast: UserForecastSet, services: SessionDep
) -> UserForecastPublic:
    """Set the instance's own demand forecast (a daily or weekly profile), replacing any."""
    services.market.tiers.instance(instance_id)
    services.user_forecasts.set(instance_id, forecast.model_dump(mode="json"), actor=instance_id)
    return _user_public(services, instance_id)


@router.get(
    "/v1/instances/{instance_id}/user-forecast",
    response_model=UserForecastPublic,
    summary="Read the owner's forecast",
)
def get_user_forecast(instance_id: ReadInstance, services: SessionDep) -> UserForecastPublic:
    """Return the instance's user-defined forecast."""
    return _user_public(services, instance_id)


@router.delete(
    "/v1/instances/{instance_id}/user-forecast",
    status_code=204,
    summary="Clear the owner's forecast",
)
def clear_user_forecast(instance_id: ActInstance, services: SessionDep) -> Response:
    """Remove the instance's user-defined forecast; the learned one applies again."""
    if not services.user_forecasts.clear(instance_id):
        raise NotFound(f"instance {instance_id!r} has no user-defined forecast")
    return Response(status_code=204)
