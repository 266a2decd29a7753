"""Liveness of the service."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import SessionDep
from serving.routing import GuardedRoute
from serving.schemas import HealthPublic

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/v1/health", response_model=HealthPublic, summary="Is the service up")
async def health(services: SessionDep) -> HealthPublic:
    """Return ``ok`` and whether forecasts are loaded; needs no token."""
    return HealthPublic(status="ok", forecasts_loaded=services.forecasts.current is not None)
