"""Decision logs: why an agent placed, kept or withdrew its orders; why a rate moved or a
swap happened; and handing a manually set exchange rate back to the CEM automation.

An agent reads and records only its own instance's decisions; administrators read
every log and release manual rates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from market.cem.automation import CemPolicy, pinned_rates, release_manual_rate, releases_of
from market.decisions import DecisionQuery, DecisionRecord, SqlDecisionLog
from serving.deps import (
    ActInstance,
    AdminDep,
    Limit,
    Offset,
    ReadInstance,
    SessionDep,
    TierPath,
)
from serving.render import from_fields
from serving.routing import GuardedRoute
from serving.services import Services

router = APIRouter(tags=["decisions"], route_class=GuardedRoute)

Outcome = Annotated[
    str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z_]*$", examples=["orders"])
]
OutcomeQuery = Annotated[
    str | None,
    Query(max_length=40, pattern=r"^[a-z][a-z_]*$", description="only decisions with this outcome"),
]


class DecisionPublic(BaseModel):
    """A recorded decision of an agent or of the CEM automation, with its inputs."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "seq": 12,
                    "kind": "agent",
                    "subject": "vm-gold-1",
                    "at": "2026-11-24T15:00:00Z",
                    "outcome": "fallback",
                    "detail": {"reasons": ["fallback: no forecast for the instance"]},
                }
            ]
        },
    )

    seq: int
    kind: Literal["agent", "cem"]
    subject: str = Field(description="the instance of an agent's decision, the tier of the CEM's")
    at: datetime
    outcome: str
    detail: dict[str, Any]


class DecisionCreate(BaseModel):
    """A decision an instance's agent took, reported for the record."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"outcome": "rejected", "detail": {"error": "insufficient escrow", "key": "k-1"}}
            ]
        },
    )

    outcome: Outcome
    detail: dict[str, Any] = Field(default_factory=dict, max_length=64)


class ManualRatePublic(BaseModel):
    """A tier whose exchange rate an administrator set and the automation leaves alone."""

    model_config = ConfigDict(frozen=True)

    tier: str
    exchange_rate_micro: int


def _log(services: Services) -> SqlDecisionLog:
    return SqlDecisionLog(services.market.engine)


def _public(record: DecisionRecord) -> DecisionPublic:
    return from_fields(DecisionPublic, record, detail=dict(record.detail))


@router.get(
    "/v1/instances/{instance_id}/decisions",
    response_model=list[DecisionPublic],
    summary="Read an instance agent's decisions",
)
def list_agent_decisions(
    instance_id: ReadInstance,
    services: SessionDep,
    outcome: OutcomeQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[DecisionPublic]:
    """Return the decisions of the instance's agent, newest first, with their inputs."""
    services.market.tiers.instance(instance_id)
    query = DecisionQuery(
        kind="agent", subject=instance_id, outcome=outcome, limit=limit, offset=offset
    )
    return [_public(r) for r in _log(services).query(query)]


@router.post(
    "/v1/instances/{instance_id}/decisions",
    response_model=DecisionPublic,
    status_code=201,
    summary="Record an agent's decision",
)
def record_agent_decision(
    instance_id: ActInstance, decision: DecisionCreate, services: SessionDep
) -> DecisionPublic:
    """Record a decision the instance's own agent took (stamped with the service's clock)."""
    services.market.tiers.instance(instance_id)
    record = DecisionRecord(
        "agent", instance_id, services.clock(), decision.outcome, decision.detail
    )
    (stored,) = _log(services).record([record])
    return _public(stored)


@router.get(
    "/v1/admin/decisions",
    response_model=list[DecisionPublic],
    summary="Read the agents' and the CEM's decisions",
)
def list_decisions(
    services: SessionDep,
    _admin: AdminDep,
    kind: Literal["agent", "cem"] | None = Query(default=None, description="agent or cem"),
    subject: str | None = Query(default=None, max_length=100, description="instance or tier"),
    outcome: OutcomeQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[DecisionPublic]:
    """Return decisions of every agent and of the CEM automation, newest first."""
    query = DecisionQuery(kind=kind, subject=subject, outcome=outcome, limit=limit, offset=offset)
    return [_public(r) for r in _log(services).query(query)]


@router.get(
    "/v1/admin/cem/manual-rates",
    response_model=list[ManualRatePublic],
    summary="List the tiers whose rate is set by hand",
)
def list_manual_rates(services: SessionDep, _admin: AdminDep) -> list[ManualRatePublic]:
    """Return the tiers the automation leaves alone until an administrator releases them."""
    names = [t.name for t in services.market.tiers.tiers()]
    pins = pinned_rates(
        services.market.exchange.rate_changes(), releases_of(_log(services), names), CemPolicy()
    )
    return [ManualRatePublic(tier=t, exchange_rate_micro=r) for t, r in sorted(pins.items())]


@router.post(
    "/v1/admin/cem/manual-rates/{tier}/release",
    response_model=DecisionPublic,
    status_code=201,
    summary="Hand a tier's rate back to the automation",
)
def release_rate(tier: TierPath, services: SessionDep, admin: AdminDep) -> DecisionPublic:
    """Let the CEM automation adjust the tier's exchange rate again."""
    services.market.tiers.tier(tier)
    return _public(release_manual_rate(_log(services), tier, admin.subject, services.clock()))
