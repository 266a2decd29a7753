"""Dependencies of the routes, as ``Annotated`` aliases.

``SessionDep`` gives a route the service's stores; ``CurrentAgent`` the caller of a
valid bearer token (an instance's agent or an administrator), after its rate limit;
``AdminDep`` an administrator only. ``ReadInstance`` and ``ActInstance`` resolve the
``instance_id`` of the path for a caller allowed to read it or to act for it. A
collector's token passes none of them: it may only post telemetry
(:func:`check_collect`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.errors import Forbidden, RateLimited, Unauthenticated
from serving.services import Services
from serving.tokens import Principal

#: The most items one page of a list holds.
MAX_PAGE_SIZE = 100

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="a token from `creditx tokens issue` or `POST /v1/admin/tokens`",
)


async def get_services(request: Request) -> Services:
    """Return the application's services."""
    services: Services = request.app.state.services
    return services


SessionDep = Annotated[Services, Depends(get_services)]


def authenticate(services: Services, token: str | None) -> Principal:
    """Return the caller of a valid bearer token, once its rate limit allows.

    Raises
    ------
    Unauthenticated
        Without a bearer token, or with an unknown or revoked one.
    RateLimited
        When the token spent its request budget.
    """
    if not token:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    principal = services.tokens.authenticate(token)
    if principal is None:
        raise Unauthenticated("the bearer token is unknown or revoked")
    wait = services.limiter.acquire(principal.token_id)
    if wait:
        raise RateLimited(wait)
    return principal


def bearer_token(request: Request) -> str | None:
    """Return the bearer token of a request's Authorization header, if it has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


#: What a route authenticated by hand declares, so the document names its scheme.
BEARER_SECURITY: dict[str, object] = {"security": [{"bearerToken": []}]}


_COLLECTOR_ONLY = "a collector's token may only post telemetry (POST /v1/telemetry)"


def check_token(principal: Principal) -> None:
    """Let through an instance's agent or an administrator, not a collector.

    Raises
    ------
    Forbidden
        For a telemetry collector.
    """
    if principal.is_collector:
        raise Forbidden(_COLLECTOR_ONLY)


def check_collect(principal: Principal) -> None:
    """Let only collectors and administrators post telemetry.

    Raises
    ------
    Forbidden
        For an instance's agent.
    """
    if not (principal.is_collector or principal.is_admin):
        raise Forbidden("telemetry is posted by a collector's or an administrator's token")


async def current_principal(
    request: Request,
    services: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Return the caller of a valid bearer token, once its rate limit allows (see
    :func:`authenticate`); the caller its route authorised already, if it did.

    Raises
    ------
    Forbidden
        For a collector's token, which only posts telemetry.
    """
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = authenticate(services, None if credentials is None else credentials.credentials)
    check_token(principal)
    return principal


CurrentAgent = Annotated[Principal, Depends(current_principal)]


def check_admin(principal: Principal) -> None:
    """Let only administrators through.

    Raises
    ------
    Forbidden
        For an instance's agent or a collector.
    """
    if principal.is_collector:
        raise Forbidden(_COLLECTOR_ONLY)
    if not principal.is_admin:
        raise Forbidden("this operation is for administrators; an agent's token may not use it")


async def require_admin(principal: CurrentAgent) -> Principal:
    """Return the caller if it is an administrator (see :func:`check_admin`)."""
    check_admin(principal)
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]

InstancePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="the instance id",
        examples=["vm-gold-1"],
    ),
]


def check_read(principal: Principal, instance_id: str) -> None:
    """Let an agent read only its own instance; administrators read every instance.

    Raises
    ------
    Forbidden
        For an agent asking about another instance, or a collector.
    """
    check_token(principal)
    if not principal.is_admin and principal.subject != instance_id:
        raise Forbidden(
            f"this token acts for instance {principal.subject!r} only",
            instance_id=instance_id,
        )


async def readable_instance(principal: CurrentAgent, instance_id: InstancePath) -> str:
    """Return the path's instance id if the caller may read it."""
    check_read(principal, instance_id)
    return instance_id


def check_act(principal: Principal, instance_id: str) -> None:
    """Let only an instance's own agent act for it.

    Raises
    ------
    Forbidden
        For another instance's agent, an administrator (who does not trade) or a
        collector.
    """
    check_token(principal)
    if principal.is_admin:
        raise Forbidden("administrators do not act for instances; use the instance's token")
    check_read(principal, instance_id)


async def actable_instance(principal: CurrentAgent, instance_id: InstancePath) -> str:
    """Return the path's instance id if the caller is that instance's agent."""
    check_act(principal, instance_id)
    return instance_id


TierPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="the tier name",
        examples=["gold"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]

ReadInstance = Annotated[str, Depends(readable_instance)]
ActInstance = Annotated[str, Depends(actable_instance)]
