"""Administrators issue and revoke bearer tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from serving.deps import AdminDep, SessionDep
from serving.errors import NotFound
from serving.routing import GuardedRoute
from serving.schemas import TokenCreate, TokenIssued, TokenPublic
from serving.tokens import TokenKind, TokenRecord

router = APIRouter(prefix="/v1/admin/tokens", tags=["tokens"], route_class=GuardedRoute)

TokenIdPath = Annotated[
    str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$", description="token id")
]


def _public(record: TokenRecord) -> TokenPublic:
    return TokenPublic(
        token_id=record.token_id,
        kind=record.kind.value,
        subject=record.subject,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


@router.post("", response_model=TokenIssued, status_code=201, summary="Issue a token")
def issue_token(request: TokenCreate, services: SessionDep, _admin: AdminDep) -> TokenIssued:
    """Issue a token for an instance's agent or an administrator; the secret is shown once."""
    if request.kind == "agent":
        services.market.tiers.instance(request.subject)
    issued = services.tokens.issue(TokenKind(request.kind), request.subject)
    return TokenIssued(**_public(issued.record).model_dump(), token=issued.token)


@router.get("", response_model=list[TokenPublic], summary="List tokens")
def list_tokens(services: SessionDep, _admin: AdminDep) -> list[TokenPublic]:
    """Return every token's record, without secrets."""
    return [_public(r) for r in services.tokens.list()]


@router.delete("/{token_id}", response_model=TokenPublic, summary="Revoke a token")
def revoke_token(token_id: TokenIdPath, services: SessionDep, _admin: AdminDep) -> TokenPublic:
    """Revoke a token; requests with it fail with 401 from now on."""
    record = services.tokens.revoke(token_id)
    if record is None:
        raise NotFound(f"no token with id {token_id!r}")
    return _public(record)
